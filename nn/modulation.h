// AdaLN modulation helpers (DiT-style shift / scale / gate). Shapes broadcast like NumPy, e.g.
// x [B, L, D] with shift/scale/gate [B, 1, D] or [D]. Mixed dtypes are promoted to the widest
// operand (so a bf16 branch added to an f32 residual stream stays f32, as in Wan).
#pragma once

#include "nn/layers.h"

namespace sdpo::nn {

// x * (1 + scale) + shift.
Tensor Modulate(const Tensor& x, const Tensor& shift, const Tensor& scale);

// residual + y * gate.
Tensor GatedResidual(const Tensor& residual, const Tensor& y, const Tensor& gate);

// Modulate(LayerNorm(x), shift, scale): the norm (optionally affine) in f32 (f64 for f64),
// then the modulation in the widest dtype of x, shift and scale (f32 at least). Without affine
// and with x, shift, scale all bf16 (or all f16): the fused layer_norm_modulate, whose result is
// x's dtype (the same f32 math, rounded once).
Tensor ModulatedLayerNorm(const Tensor& x, const Tensor& shift, const Tensor& scale, double eps,
                          const Tensor& weight = Tensor(), const Tensor& bias = Tensor());

}  // namespace sdpo::nn
