#include "nn/modulation.h"

namespace sdpo::nn {

Tensor Modulate(const Tensor& x, const Tensor& shift, const Tensor& scale) {
  DType dt = PromoteDTypes(PromoteDTypes(x.dtype(), shift.dtype()), scale.dtype());
  return add(mul(cast(x, dt), add(cast(scale, dt), 1.0)), cast(shift, dt));
}

Tensor GatedResidual(const Tensor& residual, const Tensor& y, const Tensor& gate) {
  DType dt = PromoteDTypes(PromoteDTypes(residual.dtype(), y.dtype()), gate.dtype());
  return add(cast(residual, dt), mul(cast(y, dt), cast(gate, dt)));
}

Tensor ModulatedLayerNorm(const Tensor& x, const Tensor& shift, const Tensor& scale, double eps,
                          const Tensor& weight, const Tensor& bias) {
  if (!weight.defined() && !bias.defined() && LowPrecision(x.dtype()) &&
      shift.dtype() == x.dtype() && scale.dtype() == x.dtype()) {
    // Low-precision compute: one fused op, statistics and modulation in f32, one rounding.
    return layer_norm_modulate(x, shift, scale, eps);
  }
  DType nd = NormDType(PromoteDTypes(PromoteDTypes(x.dtype(), shift.dtype()), scale.dtype()));
  Tensor w = weight.defined() ? cast(weight, nd) : Tensor();
  Tensor b = bias.defined() ? cast(bias, nd) : Tensor();
  return Modulate(layer_norm(cast(x, nd), w, b, eps), shift, scale);
}

}  // namespace sdpo::nn
