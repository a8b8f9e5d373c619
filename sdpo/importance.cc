#include "sdpo/importance.h"

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

}  // namespace sdpo
