// Closed-form step-wise importance weights w(t) = p_theta(x_prev | x_t) / q(x_prev | x_t, x0).
//
// The policy's reverse kernel is the posterior-matching Gaussian p_theta = q(. | x_t, x0_hat)
// (DDPM ancestral sampler; its flow analogue for Wan). Averaged over x_prev ~ q,
//   E[log w] = -KL(q || p_theta) = -1/2 (SNR_prev - SNR_t) |x0 - x0_hat|^2,
// and the same number in the eps / v parameterisations through exact error rescaling. The
// per-sample MSE the DPO loss already computes therefore gives log w with no extra model call.
//
// Normalisation knob: log w_bar = -D_eff * k(t) * mse, with mse the per-element mean error.
//   D_eff = 1 : per-element (geometric-mean) weight (default);
//   D_eff = D : the whole-sample weight (D latent elements);
//   D_eff = D / frames, or calibrated with CalibrateEffectiveElements.
// The weights are constants for the optimiser (stop-gradient): nothing here has a backward.
#pragma once

#include <vector>

#include "models/schedules.h"

namespace sdpo {

// Per-element KL coefficient in x0-form, k_x0 = (SNR_prev - SNR_t) / 2 (+inf when the previous
// point is clean data).
double KlCoefficientX0(const TimePoint& tp);
// Per-element KL coefficient for errors measured in `type`: KL / D = k * mse_type.
// k_eps = (SNR_prev / SNR_t - 1) / 2, k_v = k_x0 * sigma^2 (flow and DDPM alike).
double KlCoefficient(const TimePoint& tp, PredictionType type);

// Closed-form expectation of the normalised log importance weight of one sample whose policy
// prediction has per-element mean squared error `policy_mse` in parameterisation `error_type`:
// -effective_elements * KlCoefficient * mse. Returns 0 for a zero error and -inf for a nonzero
// error at a degenerate step (previous point clean). Throws on negative / non-finite input.
double LogImportanceWeight(const TimePoint& tp, PredictionType error_type, double policy_mse,
                           double effective_elements = 1.0);

// D_eff such that a sample with per-element error `typical_mse` (in `error_type`) at the point
// `boundary` has weight exactly `tau`: the paper's calibration ("low weight up to t ~ 63 at
// tau = 0.9"). Requires 0 < tau < 1 and a finite positive KL at `boundary`.
double CalibrateEffectiveElements(const TimePoint& boundary, PredictionType error_type,
                                  double typical_mse, double tau);

// ---------------------------------------------------------------------------------------------
// Readings that can exceed one (docs/objectives.md section 3, "Weight sources").

// (i) The log weight at the drawn x_prev = mu_q + sqrt(var) z instead of its expectation:
//   log w_bar = -D_eff [ k mse - sqrt(2 k_x0) m noise_dot ],
// with noise_dot = mean over the D elements of z * (pred - target) (errors in `error_type`) and
// m the x0-coefficient of the prediction (x0_hat - x0 = m (pred - target)). Its mean over z is
// LogImportanceWeight. A degenerate step (previous point clean) gives -inf for a nonzero error.
double SampledLogImportanceWeight(const TimePoint& tp, PredictionType error_type, double policy_mse,
                                  double noise_dot, double effective_elements = 1.0);

// (ii) log [p_theta(x_prev | x_t) / p_gen(x_prev | x_t)] averaged over x_prev ~ q(. | x_t, x0):
// KL(q || p_gen) - KL(q || p_theta) = D_eff k (generator_mse - policy_mse), positive when the
// policy fits the pair better than the policy that generated it. At a degenerate step the two
// point masses carry no usable ratio: 0 for equal errors, -inf otherwise (masked / clipped low).
double GeneratorLogRatio(const TimePoint& tp, PredictionType error_type, double policy_mse,
                         double generator_mse, double effective_elements = 1.0);

// (iii) A timestep-only curve from a measured error profile: equal-width buckets of
// [0, max_timestep] with the mean per-element error of each bucket; on every training-grid point
//   log w(t) = -D_eff k(t) mse(bucket(t)) - log Z,  Z = mean over the grid of exp(-D_eff k mse),
// so that E_t[w(t)] = 1 under the uniform grid sampler: mid-schedule steps get w > 1, the ends
// w < 1. Buckets without a measurement take the nearest measured one.
class TimestepWeightCurve {
 public:
  TimestepWeightCurve() = default;
  // bucket_mse[b]: mean error of bucket b (NaN: not measured). Throws when none is measured or a
  // value is negative / +inf.
  static TimestepWeightCurve FromErrorProfile(const NoiseSchedule& schedule,
                                              PredictionType error_type,
                                              const std::vector<double>& bucket_mse,
                                              double max_timestep, double effective_elements);
  double LogWeight(const TimePoint& tp) const;
  // The normalised log weight of each bucket (mean of log w over its grid points).
  const std::vector<double>& bucket_log_weights() const { return bucket_log_weight_; }
  const std::vector<double>& bucket_mse() const { return bucket_mse_; }
  double log_normaliser() const { return log_z_; }
  bool empty() const { return bucket_mse_.empty(); }

 private:
  int BucketOf(double timestep) const;
  PredictionType error_type_ = PredictionType::kV;
  double max_timestep_ = 1000.0, effective_elements_ = 1.0, log_z_ = 0.0;
  std::vector<double> bucket_mse_, bucket_log_weight_;
};

}  // namespace sdpo
