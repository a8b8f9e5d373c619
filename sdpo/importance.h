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

}  // namespace sdpo
