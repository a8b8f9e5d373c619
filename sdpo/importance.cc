#include "sdpo/importance.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tensor/error.h"

namespace sdpo {
namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

double KlCoefficientX0(const TimePoint& tp) {
  SDPO_CHECK(tp.sigma > 0.0, "importance weight at a clean point (sigma = 0, timestep ",
             tp.timestep, ")");
  if (tp.PrevIsClean()) return kInf;
  const double k = 0.5 * (tp.SnrPrev() - tp.Snr());
  SDPO_CHECK(k >= 0.0, "previous point of timestep ", tp.timestep,
             " is noisier than the point itself (SNR_prev ", tp.SnrPrev(), " < SNR_t ", tp.Snr(),
             ")");
  return k;
}

double KlCoefficient(const TimePoint& tp, PredictionType type) {
  const double k = KlCoefficientX0(tp);
  if (k == 0.0) return 0.0;  // q(x_prev | x_t, x0) ignores x0: p_theta = q whatever x0_hat is
  return k * ErrorScale(tp, type, PredictionType::kX0);
}

double LogImportanceWeight(const TimePoint& tp, PredictionType error_type, double policy_mse,
                           double effective_elements) {
  SDPO_CHECK(std::isfinite(policy_mse) && policy_mse >= 0.0,
             "importance weight: the policy error must be finite and >= 0, got ", policy_mse,
             " at timestep ", tp.timestep);
  SDPO_CHECK(std::isfinite(effective_elements) && effective_elements > 0.0,
             "importance weight: effective_elements must be finite and > 0, got ",
             effective_elements);
  if (policy_mse == 0.0) return 0.0;
  const double k = KlCoefficient(tp, error_type);
  if (k == 0.0) return 0.0;
  return -effective_elements * k * policy_mse;
}

double CalibrateEffectiveElements(const TimePoint& boundary, PredictionType error_type,
                                  double typical_mse, double tau) {
  SDPO_CHECK(tau > 0.0 && tau < 1.0, "calibration needs tau in (0, 1), got ", tau);
  SDPO_CHECK(std::isfinite(typical_mse) && typical_mse > 0.0,
             "calibration needs a finite positive typical error, got ", typical_mse);
  const double k = KlCoefficient(boundary, error_type);
  SDPO_CHECK(std::isfinite(k) && k > 0.0, "calibration point (timestep ", boundary.timestep,
             ") has KL coefficient ", k, "; pick a point inside the schedule");
  return -std::log(tau) / (k * typical_mse);
}

double SampledLogImportanceWeight(const TimePoint& tp, PredictionType error_type, double policy_mse,
                                  double noise_dot, double effective_elements) {
  SDPO_CHECK(std::isfinite(noise_dot),
             "sampled importance weight: the noise projection must be "
             "finite, got ",
             noise_dot, " at timestep ", tp.timestep);
  // The expectation (also checks policy_mse and effective_elements).
  const double expected = LogImportanceWeight(tp, error_type, policy_mse, effective_elements);
  if (policy_mse == 0.0 || expected == 0.0 || !std::isfinite(expected)) return expected;
  const double k_x0 = KlCoefficientX0(tp);
  const double m = ConvertPrediction(tp, error_type, PredictionType::kX0).pred;
  const double fluctuation = effective_elements * std::sqrt(2.0 * k_x0) * m * noise_dot;
  if (!std::isfinite(fluctuation)) return -kInf;  // x0 undefined from this error: no information
  return expected + fluctuation;
}

double GeneratorLogRatio(const TimePoint& tp, PredictionType error_type, double policy_mse,
                         double generator_mse, double effective_elements) {
  for (double e : {policy_mse, generator_mse}) {
    SDPO_CHECK(std::isfinite(e) && e >= 0.0,
               "generator ratio: errors must be finite and >= 0, "
               "got policy ",
               policy_mse, ", generator ", generator_mse, " at timestep ", tp.timestep);
  }
  SDPO_CHECK(std::isfinite(effective_elements) && effective_elements > 0.0,
             "generator ratio: effective_elements must be finite and > 0, got ",
             effective_elements);
  if (policy_mse == generator_mse) return 0.0;
  const double k = KlCoefficient(tp, error_type);
  if (k == 0.0) return 0.0;
  if (!std::isfinite(k)) return -kInf;
  return effective_elements * k * (generator_mse - policy_mse);
}

int TimestepWeightCurve::BucketOf(double timestep) const {
  const int n = static_cast<int>(bucket_mse_.size());
  const int b = static_cast<int>(std::floor(timestep / max_timestep_ * n));
  return std::clamp(b, 0, n - 1);
}

TimestepWeightCurve TimestepWeightCurve::FromErrorProfile(const NoiseSchedule& schedule,
                                                          PredictionType error_type,
                                                          const std::vector<double>& bucket_mse,
                                                          double max_timestep,
                                                          double effective_elements) {
  SDPO_CHECK(!bucket_mse.empty() && bucket_mse.size() <= 100000,
             "timestep weight curve: need 1 to 100000 buckets, got ", bucket_mse.size());
  SDPO_CHECK(std::isfinite(max_timestep) && max_timestep > 0.0,
             "timestep weight curve: max_timestep must be finite and > 0, got ", max_timestep);
  TimestepWeightCurve c;
  c.error_type_ = error_type;
  c.max_timestep_ = max_timestep;
  c.effective_elements_ = effective_elements;
  const int n = static_cast<int>(bucket_mse.size());
  std::vector<int> measured;
  for (int b = 0; b < n; ++b) {
    const double e = bucket_mse[b];
    if (std::isnan(e)) continue;
    SDPO_CHECK(std::isfinite(e) && e >= 0.0, "timestep weight curve: bucket ", b, " has error ", e,
               " (expected a finite mean squared error >= 0, or NaN for unmeasured)");
    measured.push_back(b);
  }
  SDPO_CHECK(!measured.empty(), "timestep weight curve: no bucket of the ", n,
             " has a measured error");
  c.bucket_mse_.resize(n);
  for (int b = 0; b < n; ++b) {
    int nearest = measured.front();
    for (int m : measured) {
      if (std::abs(m - b) < std::abs(nearest - b)) nearest = m;
    }
    c.bucket_mse_[b] = bucket_mse[nearest];
  }
  // Normalise over the training grid (what the uniform grid sampler draws).
  std::vector<double> sum_log(n, 0.0);
  std::vector<int> count(n, 0);
  double z = 0.0;
  int points = 0;
  for (int i = 0; i < schedule.num_steps(); ++i) {
    const TimePoint tp = schedule.At(i);
    const int b = c.BucketOf(tp.timestep);
    const double lw = LogImportanceWeight(tp, error_type, c.bucket_mse_[b], effective_elements);
    z += std::exp(lw);
    ++points;
    sum_log[b] += lw;
    ++count[b];
  }
  SDPO_CHECK(points > 0 && z > 0.0, "timestep weight curve: every grid point has weight 0 (",
             points, " points)");
  c.log_z_ = std::log(z / points);
  c.bucket_log_weight_.assign(n, std::numeric_limits<double>::quiet_NaN());
  for (int b = 0; b < n; ++b) {
    if (count[b] > 0) c.bucket_log_weight_[b] = sum_log[b] / count[b] - c.log_z_;
  }
  return c;
}

double TimestepWeightCurve::LogWeight(const TimePoint& tp) const {
  SDPO_CHECK(!bucket_mse_.empty(), "timestep weight curve: used before FromErrorProfile");
  return LogImportanceWeight(tp, error_type_, bucket_mse_[BucketOf(tp.timestep)],
                             effective_elements_) -
         log_z_;
}

}  // namespace sdpo
