#include "models/schedules.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "tensor/error.h"

namespace sdpo {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// torch.linspace(start, end, steps) in float64: the first half counts up from start, the second
// half down from end (so both ends are exact).
std::vector<double> TorchLinspace(double start, double end, int steps) {
  std::vector<double> out(steps);
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  const double step = (end - start) / (steps - 1);
  const int halfway = steps / 2;
  for (int i = 0; i < steps; ++i) {
    out[i] = i < halfway ? start + step * i : end - step * (steps - 1 - i);
  }
  return out;
}

// numpy.linspace(start, stop, num): start + i * step, last element exactly stop.
std::vector<double> NumpyLinspace(double start, double stop, int num) {
  std::vector<double> out(num);
  if (num == 1) {
    out[0] = start;
    return out;
  }
  const double step = (stop - start) / (num - 1);
  for (int i = 0; i < num; ++i) out[i] = start + i * step;
  out[num - 1] = stop;
  return out;
}

struct Pair {
  double xt, pred;
};
Pair operator*(double k, Pair p) { return {k * p.xt, k * p.pred}; }
Pair operator-(Pair a, Pair b) { return {a.xt - b.xt, a.pred - b.pred}; }

// x0 and eps expressed as linear maps of (x_t, prediction of type `from`).
void X0AndEps(const TimePoint& tp, PredictionType from, Pair* x0, Pair* eps) {
  const double a = tp.alpha, s = tp.sigma;
  switch (from) {
    case PredictionType::kEpsilon:
      *eps = {0.0, 1.0};
      *x0 = {1.0 / a, -s / a};
      return;
    case PredictionType::kX0:
      *x0 = {0.0, 1.0};
      *eps = {1.0 / s, -a / s};
      return;
    case PredictionType::kV:
      if (tp.family == ScheduleFamily::kFlow) {
        *x0 = {1.0, -s};  // x0 = x_t - sigma v
        *eps = {1.0, a};  // eps = x_t + (1 - sigma) v
      } else {
        *x0 = {a, -s};  // x0 = alpha x_t - sigma v   (alpha^2 + sigma^2 = 1)
        *eps = {s, a};  // eps = sigma x_t + alpha v
      }
      return;
  }
  SDPO_FAIL("unknown PredictionType ", static_cast<int>(from));
}

}  // namespace

const char* ScheduleFamilyName(ScheduleFamily family) {
  switch (family) {
    case ScheduleFamily::kFlow:
      return "flow";
    case ScheduleFamily::kDdpm:
      return "ddpm";
  }
  return "unknown";
}

ScheduleFamily ParseScheduleFamily(const std::string& name) {
  if (name == "flow") return ScheduleFamily::kFlow;
  if (name == "ddpm") return ScheduleFamily::kDdpm;
  SDPO_FAIL("unknown schedule family '", name, "' (expected flow | ddpm)");
}

const char* PredictionTypeName(PredictionType type) {
  switch (type) {
    case PredictionType::kEpsilon:
      return "epsilon";
    case PredictionType::kX0:
      return "x0";
    case PredictionType::kV:
      return "v";
  }
  return "unknown";
}

PredictionType ParsePredictionType(const std::string& name) {
  if (name == "epsilon" || name == "eps") return PredictionType::kEpsilon;
  if (name == "x0" || name == "sample") return PredictionType::kX0;
  if (name == "v" || name == "v_prediction" || name == "velocity") return PredictionType::kV;
  SDPO_FAIL("unknown prediction type '", name, "' (expected epsilon | x0 | v)");
}

double TimePoint::Snr() const { return sigma == 0.0 ? kInf : (alpha * alpha) / (sigma * sigma); }

double TimePoint::SnrPrev() const {
  return sigma_prev == 0.0 ? kInf : (alpha_prev * alpha_prev) / (sigma_prev * sigma_prev);
}

TargetMap NoisingMap(const TimePoint& tp) { return {tp.alpha, tp.sigma}; }

TargetMap TargetOf(const TimePoint& tp, PredictionType type) {
  switch (type) {
    case PredictionType::kEpsilon:
      return {0.0, 1.0};
    case PredictionType::kX0:
      return {1.0, 0.0};
    case PredictionType::kV:
      if (tp.family == ScheduleFamily::kFlow) return {-1.0, 1.0};
      return {-tp.sigma, tp.alpha};
  }
  SDPO_FAIL("unknown PredictionType ", static_cast<int>(type));
}

LinearMap ConvertPrediction(const TimePoint& tp, PredictionType from, PredictionType to) {
  if (from == to) return {0.0, 1.0};
  Pair x0, eps;
  X0AndEps(tp, from, &x0, &eps);
  Pair out{};
  switch (to) {
    case PredictionType::kEpsilon:
      out = eps;
      break;
    case PredictionType::kX0:
      out = x0;
      break;
    case PredictionType::kV:
      out = tp.family == ScheduleFamily::kFlow ? eps - x0 : tp.alpha * eps - tp.sigma * x0;
      break;
  }
  return {out.xt, out.pred};
}

double ErrorScale(const TimePoint& tp, PredictionType from, PredictionType to) {
  if (from == to) return 1.0;
  const double c = ConvertPrediction(tp, from, to).pred;
  return c * c;
}

Posterior ForwardPosterior(const TimePoint& tp) {
  SDPO_CHECK(tp.sigma > 0.0, "ForwardPosterior: the point t must be noisy (sigma ", tp.sigma, ")");
  const double at = tp.alpha, st2 = tp.sigma * tp.sigma;
  const double as = tp.alpha_prev, ss2 = tp.sigma_prev * tp.sigma_prev;
  SDPO_CHECK(as > 0.0, "ForwardPosterior: previous point has alpha_prev = ", as);
  const double a_ts = at / as;                   // transition x_t | x_s scale
  const double s2_ts = st2 - a_ts * a_ts * ss2;  // transition variance
  Posterior p;
  p.xt = a_ts * ss2 / st2;
  p.x0 = as * s2_ts / st2;
  p.variance = s2_ts * ss2 / st2;
  return p;
}

// ---------------------------------------------------------------------------------------------

double FlowShiftSigma(double sigma, double shift) {
  return shift * sigma / (1.0 + (shift - 1.0) * sigma);
}

double FlowUnshiftSigma(double shifted_sigma, double shift) {
  return shifted_sigma / (shift - (shift - 1.0) * shifted_sigma);
}

DdpmScheduleConfig DdpmScheduleConfig::CogVideoX2B() {
  DdpmScheduleConfig c;
  c.snr_shift_scale = 3.0;
  c.rescale_zero_terminal_snr = true;
  return c;
}

DdpmScheduleConfig DdpmScheduleConfig::CogVideoX5B() {
  DdpmScheduleConfig c;
  c.snr_shift_scale = 1.0;
  c.rescale_zero_terminal_snr = true;
  return c;
}

std::vector<double> DdpmBetas(const DdpmScheduleConfig& config) {
  SDPO_CHECK(config.num_steps >= 2, "DDPM schedule needs num_steps >= 2, got ", config.num_steps);
  SDPO_CHECK(config.beta_start > 0.0 && config.beta_end > 0.0 && config.beta_start < 1.0 &&
                 config.beta_end < 1.0,
             "DDPM betas must lie in (0, 1): beta_start ", config.beta_start, ", beta_end ",
             config.beta_end);
  switch (config.beta_schedule) {
    case BetaSchedule::kScaledLinear: {
      std::vector<double> b =
          TorchLinspace(std::sqrt(config.beta_start), std::sqrt(config.beta_end), config.num_steps);
      for (double& x : b) x = x * x;
      return b;
    }
    case BetaSchedule::kLinear:
      return TorchLinspace(config.beta_start, config.beta_end, config.num_steps);
  }
  SDPO_FAIL("unknown BetaSchedule ", static_cast<int>(config.beta_schedule));
}

NoiseSchedule NoiseSchedule::Flow(const FlowScheduleConfig& config) {
  SDPO_CHECK(config.num_steps >= 2, "flow schedule needs num_steps >= 2, got ", config.num_steps);
  SDPO_CHECK(config.shift > 0.0 && std::isfinite(config.shift), "flow shift must be > 0, got ",
             config.shift);
  SDPO_CHECK(config.prev_stride >= 1 && config.prev_stride < config.num_steps,
             "flow prev_stride must be in [1, num_steps), got ", config.prev_stride);
  NoiseSchedule s;
  s.family_ = ScheduleFamily::kFlow;
  s.flow_ = config;
  const int n = config.num_steps;
  s.flow_sigmas_.resize(n);
  s.alpha_.resize(n);
  s.sigma_.resize(n);
  s.timestep_.resize(n);
  for (int i = 0; i < n; ++i) {
    const double sig = FlowShiftSigma(static_cast<double>(i + 1) / n, config.shift);
    s.flow_sigmas_[i] = sig;
    s.alpha_[i] = 1.0 - sig;
    s.sigma_[i] = sig;
    s.timestep_[i] = 1000.0 * sig;
  }
  return s;
}

NoiseSchedule NoiseSchedule::Ddpm(const DdpmScheduleConfig& config) {
  SDPO_CHECK(config.snr_shift_scale > 0.0 && std::isfinite(config.snr_shift_scale),
             "DDPM snr_shift_scale must be > 0, got ", config.snr_shift_scale);
  SDPO_CHECK(config.prev_stride >= 1 && config.prev_stride < config.num_steps,
             "DDPM prev_stride must be in [1, num_steps), got ", config.prev_stride);
  NoiseSchedule s;
  s.family_ = ScheduleFamily::kDdpm;
  s.ddpm_ = config;
  const std::vector<double> betas = DdpmBetas(config);
  const int n = config.num_steps;
  std::vector<double> ab(n);
  double prod = 1.0;
  for (int i = 0; i < n; ++i) {
    prod *= 1.0 - betas[i];
    ab[i] = prod;
  }
  // SD3-style SNR shift (CogVideoX applies it unconditionally; scale 1 leaves abar unchanged).
  const double k = config.snr_shift_scale;
  for (double& x : ab) x = x / (k + (1.0 - k) * x);
  if (config.rescale_zero_terminal_snr) {
    const double r0 = std::sqrt(ab.front());
    const double rt = std::sqrt(ab.back());
    for (double& x : ab) {
      const double r = (std::sqrt(x) - rt) * (r0 / (r0 - rt));
      x = r * r;
    }
  }
  s.alphas_cumprod_ = ab;
  s.alpha_.resize(n);
  s.sigma_.resize(n);
  s.timestep_.resize(n);
  for (int i = 0; i < n; ++i) {
    s.alpha_[i] = std::sqrt(ab[i]);
    s.sigma_[i] = std::sqrt(1.0 - ab[i]);
    s.timestep_[i] = i;
  }
  const double final_ab = config.set_alpha_to_one ? 1.0 : ab.front();
  s.final_alpha_ = std::sqrt(final_ab);
  s.final_sigma_ = std::sqrt(1.0 - final_ab);
  return s;
}

double NoiseSchedule::max_timestep() const {
  return family_ == ScheduleFamily::kFlow ? 1000.0 : static_cast<double>(num_steps());
}

TimePoint NoiseSchedule::At(int index) const {
  SDPO_CHECK(index >= 0 && index < num_steps(), "schedule index ", index, " outside [0, ",
             num_steps(), ") of the ", ScheduleFamilyName(family_), " schedule");
  TimePoint tp;
  tp.family = family_;
  tp.index = index;
  tp.timestep = timestep_[index];
  tp.alpha = alpha_[index];
  tp.sigma = sigma_[index];
  if (family_ == ScheduleFamily::kFlow) {
    const int j = index + 1 - flow_.prev_stride;  // unshifted grid position of the previous point
    if (j <= 0) {
      tp.alpha_prev = 1.0;
      tp.sigma_prev = 0.0;
    } else {
      const double sp = FlowShiftSigma(static_cast<double>(j) / num_steps(), flow_.shift);
      tp.alpha_prev = 1.0 - sp;
      tp.sigma_prev = sp;
    }
  } else {
    const int p = index - ddpm_.prev_stride;
    if (p < 0) {
      tp.alpha_prev = final_alpha_;
      tp.sigma_prev = final_sigma_;
    } else {
      tp.alpha_prev = alpha_[p];
      tp.sigma_prev = sigma_[p];
    }
  }
  return tp;
}

TimePoint NoiseSchedule::AtFlowSigma(double sigma) const {
  SDPO_CHECK(family_ == ScheduleFamily::kFlow, "AtFlowSigma needs a flow schedule, this one is ",
             ScheduleFamilyName(family_));
  SDPO_CHECK(sigma > 0.0 && sigma <= 1.0, "flow sigma must lie in (0, 1], got ", sigma);
  TimePoint tp;
  tp.family = family_;
  tp.index = -1;
  tp.timestep = 1000.0 * sigma;
  tp.alpha = 1.0 - sigma;
  tp.sigma = sigma;
  const double u_prev =
      FlowUnshiftSigma(sigma, flow_.shift) - static_cast<double>(flow_.prev_stride) / num_steps();
  if (u_prev <= 0.0) {
    tp.alpha_prev = 1.0;
    tp.sigma_prev = 0.0;
  } else {
    const double sp = FlowShiftSigma(u_prev, flow_.shift);
    tp.alpha_prev = 1.0 - sp;
    tp.sigma_prev = sp;
  }
  return tp;
}

const std::vector<double>& NoiseSchedule::alphas_cumprod() const {
  SDPO_CHECK(family_ == ScheduleFamily::kDdpm, "alphas_cumprod() needs a DDPM schedule");
  return alphas_cumprod_;
}

const std::vector<double>& NoiseSchedule::flow_sigmas() const {
  SDPO_CHECK(family_ == ScheduleFamily::kFlow, "flow_sigmas() needs a flow schedule");
  return flow_sigmas_;
}

std::string NoiseSchedule::Describe() const {
  if (family_ == ScheduleFamily::kFlow) {
    return absl::StrCat("flow(steps=", flow_.num_steps, ", shift=", flow_.shift,
                        ", prev_stride=", flow_.prev_stride, ")");
  }
  return absl::StrCat(
      "ddpm(steps=", ddpm_.num_steps,
      ", betas=", ddpm_.beta_schedule == BetaSchedule::kScaledLinear ? "scaled_linear" : "linear",
      " ", ddpm_.beta_start, "..", ddpm_.beta_end, ", snr_shift=", ddpm_.snr_shift_scale,
      ", ztsnr=", ddpm_.rescale_zero_terminal_snr ? "yes" : "no",
      ", prev_stride=", ddpm_.prev_stride, ")");
}

// ---------------------------------------------------------------------------------------------

std::vector<double> WanUniPcSigmas(int steps, double shift, double sigma_max) {
  SDPO_CHECK(steps >= 1, "WanUniPcSigmas: steps must be >= 1, got ", steps);
  std::vector<double> lin = NumpyLinspace(sigma_max, 0.0, steps + 1);
  std::vector<double> out(steps + 1);
  for (int i = 0; i < steps; ++i) out[i] = FlowShiftSigma(lin[i], shift);
  out[steps] = 0.0;
  return out;
}

std::vector<int64_t> WanUniPcTimesteps(int steps, double shift, double sigma_max) {
  const std::vector<double> sig = WanUniPcSigmas(steps, shift, sigma_max);
  std::vector<int64_t> out(steps);
  for (int i = 0; i < steps; ++i) out[i] = static_cast<int64_t>(sig[i] * 1000.0);
  return out;
}

std::vector<double> WanDpmppSigmas(int steps, double shift) {
  SDPO_CHECK(steps >= 1, "WanDpmppSigmas: steps must be >= 1, got ", steps);
  std::vector<double> lin = NumpyLinspace(1.0, 0.0, steps + 1);
  std::vector<double> out(steps);
  for (int i = 0; i < steps; ++i) out[i] = FlowShiftSigma(lin[i], shift);
  return out;
}

std::vector<int64_t> DdpmTrailingTimesteps(int steps, int num_train_steps) {
  SDPO_CHECK(steps >= 1 && steps <= num_train_steps, "DdpmTrailingTimesteps: steps ", steps,
             " outside [1, ", num_train_steps, "]");
  const double ratio = static_cast<double>(num_train_steps) / steps;
  std::vector<int64_t> out(steps);
  for (int k = 0; k < steps; ++k) {
    // numpy.round is round-half-to-even, as nearbyint in the default rounding mode.
    out[k] = static_cast<int64_t>(std::nearbyint(num_train_steps - k * ratio)) - 1;
  }
  return out;
}

std::vector<int64_t> DdpmTrailingPrevTimesteps(int steps, int num_train_steps) {
  std::vector<int64_t> t = DdpmTrailingTimesteps(steps, num_train_steps);
  for (int64_t& x : t) x -= num_train_steps / steps;
  return t;
}

// ---------------------------------------------------------------------------------------------

const char* TimestepSamplingName(TimestepSampling sampling) {
  switch (sampling) {
    case TimestepSampling::kUniformGrid:
      return "uniform_grid";
    case TimestepSampling::kUniformSigma:
      return "uniform_sigma";
    case TimestepSampling::kLogitNormal:
      return "logit_normal";
  }
  return "unknown";
}

TimestepSampling ParseTimestepSampling(const std::string& name) {
  if (name == "uniform_grid" || name == "grid") return TimestepSampling::kUniformGrid;
  if (name == "uniform_sigma" || name == "uniform") return TimestepSampling::kUniformSigma;
  if (name == "logit_normal") return TimestepSampling::kLogitNormal;
  SDPO_FAIL("unknown timestep sampling '", name,
            "' (expected uniform_grid | uniform_sigma | logit_normal)");
}

double NormalCdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

double NormalQuantile(double p) {
  SDPO_CHECK(!std::isnan(p), "NormalQuantile of NaN");
  if (p <= 0.0) return -kInf;
  if (p >= 1.0) return kInf;
  // Bisection on the monotone CDF: 200 halvings of [-40, 40] reach the double resolution.
  double lo = -40.0, hi = 40.0;
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (mid == lo || mid == hi) break;
    if (NormalCdf(mid) < p) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return 0.5 * (lo + hi);
}

TimestepSampler::TimestepSampler(const NoiseSchedule& schedule, const TimestepSamplerConfig& config)
    : schedule_(schedule), config_(config) {
  SDPO_CHECK(config.min_timestep <= config.max_timestep, "timestep range [", config.min_timestep,
             ", ", config.max_timestep, "] is empty");
  if (config.sampling == TimestepSampling::kUniformGrid) {
    int first = -1, last = -1;
    for (int i = 0; i < schedule.num_steps(); ++i) {
      const double t = schedule.At(i).timestep;
      if (t >= config.min_timestep && t <= config.max_timestep) {
        if (first < 0) first = i;
        last = i;
      }
    }
    SDPO_CHECK(first >= 0, "no grid timestep of ", schedule.Describe(), " lies in [",
               config.min_timestep, ", ", config.max_timestep, "]");
    first_index_ = first;
    count_ = last - first + 1;
    return;
  }
  SDPO_CHECK(schedule.family() == ScheduleFamily::kFlow, "timestep sampling '",
             TimestepSamplingName(config.sampling),
             "' is continuous in sigma and needs a flow schedule; use uniform_grid for ",
             schedule.Describe());
  SDPO_CHECK(config.sampling == TimestepSampling::kUniformSigma ||
                 config.sampling == TimestepSampling::kLogitNormal,
             "unknown timestep sampling ", static_cast<int>(config.sampling));
  SDPO_CHECK(config.logit_std > 0.0, "logit_std must be > 0, got ", config.logit_std);
  const double shift = schedule.flow_config().shift;
  const double s_lo = std::clamp(config.min_timestep / 1000.0, 0.0, 1.0);
  const double s_hi = std::clamp(config.max_timestep / 1000.0, 0.0, 1.0);
  SDPO_CHECK(s_hi > 0.0, "flow timestep range [", config.min_timestep, ", ", config.max_timestep,
             "] holds no sigma in (0, 1]");
  u_lo_ = FlowUnshiftSigma(s_lo, shift);
  u_hi_ = FlowUnshiftSigma(s_hi, shift);
  if (config.sampling == TimestepSampling::kLogitNormal) {
    const double z_lo = u_lo_ <= 0.0 ? -kInf : std::log(u_lo_ / (1.0 - u_lo_));
    const double z_hi = u_hi_ >= 1.0 ? kInf : std::log(u_hi_ / (1.0 - u_hi_));
    const double mass = NormalCdf((z_hi - config.logit_mean) / config.logit_std) -
                        NormalCdf((z_lo - config.logit_mean) / config.logit_std);
    SDPO_CHECK(mass > 1e-12, "the logit-normal(", config.logit_mean, ", ", config.logit_std,
               ") sampler puts no mass on the timestep range [", config.min_timestep, ", ",
               config.max_timestep, "]");
  }
}

TimePoint TimestepSampler::Sample(double u) const {
  SDPO_CHECK(u >= 0.0 && u < 1.0, "TimestepSampler::Sample needs u in [0, 1), got ", u);
  if (config_.sampling == TimestepSampling::kUniformGrid) {
    const int k = std::min(count_ - 1, static_cast<int>(u * count_));
    return schedule_.At(first_index_ + k);
  }
  double us;  // unshifted sigma in (u_lo, u_hi]
  if (config_.sampling == TimestepSampling::kUniformSigma) {
    us = u_hi_ - u * (u_hi_ - u_lo_);
  } else {
    const double m = config_.logit_mean, sd = config_.logit_std;
    const double z_lo = u_lo_ <= 0.0 ? -kInf : std::log(u_lo_ / (1.0 - u_lo_));
    const double z_hi = u_hi_ >= 1.0 ? kInf : std::log(u_hi_ / (1.0 - u_hi_));
    const double p_lo = NormalCdf((z_lo - m) / sd), p_hi = NormalCdf((z_hi - m) / sd);
    // Draw from the top so that u = 0 maps to the upper end (never to sigma = 0).
    const double z = m + sd * NormalQuantile(p_hi - u * (p_hi - p_lo));
    us = 1.0 / (1.0 + std::exp(-z));
    us = std::clamp(us, u_lo_, u_hi_);
  }
  if (us <= 0.0) us = std::min(u_hi_, 1e-12);
  return schedule_.AtFlowSigma(FlowShiftSigma(us, schedule_.flow_config().shift));
}

}  // namespace sdpo
