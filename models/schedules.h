// Noise schedules of the two model families sdpo trains, as pure double-precision math.
//
// Both families are Gaussian paths x_t = alpha_t x0 + sigma_t eps:
//   flow matching (Wan2.1):   alpha = 1 - s, sigma = s (s in [0, 1]), target v = eps - x0,
//                             model timestep = 1000 s, shifted grid s' = k s / (1 + (k - 1) s).
//   DDPM (CogVideoX):         alpha = sqrt(abar_t), sigma = sqrt(1 - abar_t), target eps or
//                             v = alpha eps - sigma x0 (diffusers convention), timestep = index t.
//
// The training grid of both families is indexed so that index 0 is the LEAST noisy point and
// index num_steps - 1 the noisiest (DDPM convention; for flow this is DiffSynth's grid reversed).
// The "previous" point of index i is the less noisy point i - prev_stride; before index 0 (or
// whenever i - prev_stride < 0) the previous point is clean data (alpha 1, sigma 0) and the
// posterior q(x_prev | x_t, x0) degenerates (SNR_prev = +inf).
//
// See docs/objectives.md for the derivations.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sdpo {

enum class ScheduleFamily { kFlow, kDdpm };
const char* ScheduleFamilyName(ScheduleFamily family);  // "flow" | "ddpm"
ScheduleFamily ParseScheduleFamily(const std::string& name);

// What a network output (or a training target) means.
//   kEpsilon: the noise eps.      kX0: the clean sample x0.
//   kV:       velocity; flow: v = eps - x0; DDPM: v = alpha eps - sigma x0.
enum class PredictionType { kEpsilon, kX0, kV };
const char* PredictionTypeName(PredictionType type);  // "epsilon" | "x0" | "v"
PredictionType ParsePredictionType(const std::string& name);

// One point of a schedule, as the objectives and the importance weights need it.
struct TimePoint {
  ScheduleFamily family = ScheduleFamily::kDdpm;
  int index = -1;         // training-grid index (0 = least noisy), -1 for an off-grid flow point
  double timestep = 0.0;  // value fed to the model: DDPM index t; flow 1000 * sigma
  double alpha = 1.0;     // x_t = alpha * x0 + sigma * eps
  double sigma = 0.0;
  double alpha_prev = 1.0;  // the previous, less noisy point s of the reverse step t -> s
  double sigma_prev = 0.0;  // (alpha_prev, sigma_prev) = (1, 0) means clean data

  // alpha^2 / sigma^2; +inf where sigma == 0.
  double Snr() const;
  double SnrPrev() const;
  // True when the previous point is clean data: the reverse step's posterior is a point mass and
  // the per-step KL (hence -log w) is infinite for any nonzero x0 error.
  bool PrevIsClean() const { return sigma_prev == 0.0; }
};

// out = xt * x_t + pred * prediction (element-wise); coefficients may be +-inf where a
// conversion is undefined (e.g. x0 from eps at alpha = 0).
struct LinearMap {
  double xt = 0.0;
  double pred = 0.0;
  double Apply(double x_t, double prediction) const { return xt * x_t + pred * prediction; }
};

// value = x0 * x0_value + eps * eps_value (element-wise).
struct TargetMap {
  double x0 = 0.0;
  double eps = 0.0;
  double Apply(double x0_value, double eps_value) const { return x0 * x0_value + eps * eps_value; }
};

// x_t from (x0, eps): alpha, sigma of the point.
TargetMap NoisingMap(const TimePoint& tp);
// The training target of a prediction type at a point.
TargetMap TargetOf(const TimePoint& tp, PredictionType type);
// Converts a prediction of type `from` into the equivalent prediction of type `to`.
LinearMap ConvertPrediction(const TimePoint& tp, PredictionType from, PredictionType to);
// Ratio of squared errors: |to_target - to_pred|^2 = ErrorScale * |from_target - from_pred|^2,
// exact because conversions share the x_t coefficient. May be 0 or +inf at the ends.
double ErrorScale(const TimePoint& tp, PredictionType from, PredictionType to);

// Forward posterior q(x_prev | x_t, x0) = N(xt * x_t + x0 * x0, variance I) of the reverse step.
struct Posterior {
  double xt = 0.0;
  double x0 = 0.0;
  double variance = 0.0;
};
Posterior ForwardPosterior(const TimePoint& tp);

// ---------------------------------------------------------------------------------------------
// Flow matching.

// s' = shift * s / (1 + (shift - 1) * s) and its inverse.
double FlowShiftSigma(double sigma, double shift);
double FlowUnshiftSigma(double shifted_sigma, double shift);

struct FlowScheduleConfig {
  int num_steps = 1000;  // training grid: sigma_i = shift((i + 1) / num_steps), i = 0..N-1
  double shift = 5.0;    // Wan2.1 training shift (DiffSynth recipe, research models.md 2.6)
  int prev_stride = 1;   // previous point: one (or more) unshifted grid steps less noise

  static FlowScheduleConfig Wan21() { return FlowScheduleConfig{}; }
};

// ---------------------------------------------------------------------------------------------
// DDPM.

enum class BetaSchedule { kScaledLinear, kLinear };

struct DdpmScheduleConfig {
  int num_steps = 1000;
  double beta_start = 0.00085;
  double beta_end = 0.012;
  BetaSchedule beta_schedule = BetaSchedule::kScaledLinear;
  // SD3-style SNR shift of CogVideoX: abar <- abar / (s + (1 - s) abar); 1 = none.
  double snr_shift_scale = 1.0;
  // Zero-terminal-SNR rescale of sqrt(abar) (after the shift), as in the CogVideoX scheduler.
  bool rescale_zero_terminal_snr = false;
  // The point before index 0: clean data (abar = 1) when true, else abar_0 (diffusers).
  bool set_alpha_to_one = true;
  int prev_stride = 1;

  static DdpmScheduleConfig CogVideoX2B();  // snr shift 3.0, ZTSNR
  static DdpmScheduleConfig CogVideoX5B();  // snr shift 1.0, ZTSNR
};

// A discrete training schedule of either family.
class NoiseSchedule {
 public:
  static NoiseSchedule Flow(const FlowScheduleConfig& config);
  static NoiseSchedule Ddpm(const DdpmScheduleConfig& config);

  ScheduleFamily family() const { return family_; }
  int num_steps() const { return static_cast<int>(alpha_.size()); }
  // Largest model timestep value (1000 for flow, num_steps for DDPM): the bucket range.
  double max_timestep() const;

  // Grid point i in [0, num_steps).
  TimePoint At(int index) const;
  // Flow only: an off-grid point at sigma in (0, 1]; its previous point is prev_stride unshifted
  // grid steps less noisy: shift(unshift(sigma) - prev_stride / num_steps), clamped at 0.
  TimePoint AtFlowSigma(double sigma) const;

  // DDPM only: alphas_cumprod (abar_t) as the scheduler holds it.
  const std::vector<double>& alphas_cumprod() const;
  // Flow only: the (shifted) grid sigmas, index 0 least noisy.
  const std::vector<double>& flow_sigmas() const;

  const FlowScheduleConfig& flow_config() const { return flow_; }
  const DdpmScheduleConfig& ddpm_config() const { return ddpm_; }
  std::string Describe() const;

 private:
  NoiseSchedule() = default;
  ScheduleFamily family_ = ScheduleFamily::kDdpm;
  FlowScheduleConfig flow_;
  DdpmScheduleConfig ddpm_;
  std::vector<double> alpha_, sigma_, timestep_;
  std::vector<double> alphas_cumprod_;  // DDPM
  std::vector<double> flow_sigmas_;     // flow
  double final_alpha_ = 1.0;            // DDPM: alpha of the point before index 0
  double final_sigma_ = 0.0;
};

// DDPM betas (before any shift / rescale), float64 like the CogVideoX scheduler.
std::vector<double> DdpmBetas(const DdpmScheduleConfig& config);

// ---------------------------------------------------------------------------------------------
// Inference grids (for samplers and for the "inference-grid" reading of the previous step).

// Wan2.1 official UniPC grid: shift(linspace(sigma_max, 0, steps + 1)[:-1]) then a terminal 0;
// sigma_max defaults to float32(0.999) as the official scheduler holds it. Returns steps + 1.
std::vector<double> WanUniPcSigmas(int steps, double shift,
                                   double sigma_max = static_cast<double>(0.999f));
// int64(1000 * sigma) (truncated) of the first `steps` UniPC sigmas.
std::vector<int64_t> WanUniPcTimesteps(int steps, double shift,
                                       double sigma_max = static_cast<double>(0.999f));
// Wan2.1 dpm++ grid: shift(linspace(1, 0, steps + 1)[:steps]).
std::vector<double> WanDpmppSigmas(int steps, double shift);
// CogVideoX "trailing" timesteps: round(arange(T, 0, -T / steps)) - 1, noisiest first.
std::vector<int64_t> DdpmTrailingTimesteps(int steps, int num_train_steps = 1000);
// The previous timestep the DDIM/DPM step uses: t - T / steps (integer division; may be -1).
std::vector<int64_t> DdpmTrailingPrevTimesteps(int steps, int num_train_steps = 1000);

// ---------------------------------------------------------------------------------------------
// Training timestep sampling. Deterministic transforms of one uniform number u in [0, 1), so the
// trainer's counter-based RNG decides the draw; the same t is used for winner and loser.

enum class TimestepSampling {
  kUniformGrid,   // uniform index of the training grid (DDPM: t ~ U{0..T-1}; flow: shifted grid)
  kUniformSigma,  // flow: sigma = shift(u'), u' ~ U(0, 1] (continuous)
  kLogitNormal,   // flow: sigma = shift(sigmoid(mean + std * z)), z ~ N(0, 1) (continuous)
};
const char* TimestepSamplingName(TimestepSampling sampling);
TimestepSampling ParseTimestepSampling(const std::string& name);

struct TimestepSamplerConfig {
  TimestepSampling sampling = TimestepSampling::kUniformGrid;
  double logit_mean = 0.0;
  double logit_std = 1.0;
  // Allowed model-timestep range, inclusive (DPO-C&M reading C1, "timestep-range clipping").
  // The default is the whole schedule.
  double min_timestep = 0.0;
  double max_timestep = 1000.0;
};

class TimestepSampler {
 public:
  TimestepSampler(const NoiseSchedule& schedule, const TimestepSamplerConfig& config);
  // u in [0, 1).
  TimePoint Sample(double u) const;
  const TimestepSamplerConfig& config() const { return config_; }

 private:
  NoiseSchedule schedule_;
  TimestepSamplerConfig config_;
  int first_index_ = 0;  // kUniformGrid: allowed indices [first_index_, first_index_ + count_)
  int count_ = 0;
  double u_lo_ = 0.0, u_hi_ = 1.0;  // continuous: unshifted sigma range
};

// Standard normal CDF and its inverse (for the truncated logit-normal draw).
double NormalCdf(double z);
double NormalQuantile(double p);

}  // namespace sdpo
