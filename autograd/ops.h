// The differentiable tensor API (namespace sdpo). Each function runs the raw op from
// tensor/ops.h and, when grad mode is on and an input requires grad, records a graph node with
// its backward. Comparisons, argmax and random numbers are not differentiable and live only in
// sdpo::ops.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "tensor/ops.h"

namespace sdpo {

// views and layout
Tensor view(const Tensor& x, const Shape& shape);
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);
Tensor contiguous(const Tensor& x);
Tensor clone(const Tensor& x);
Tensor cast(const Tensor& x, DType dtype);
Tensor to(const Tensor& x, Device device);

// elementwise (NumPy broadcasting)
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor pow(const Tensor& a, double exponent);
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor gelu(const Tensor& x);       // exact (erf)
Tensor gelu_tanh(const Tensor& x);  // tanh approximation
Tensor square(const Tensor& x);
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);

// reductions (dims empty = all)
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, int64_t correction = 1,
           bool keepdim = false);
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// linear algebra, joining, indexing
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);

// fused ops, one node each with a hand-written backward
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
// LayerNorm without affine, then AdaLN modulation LN(x) * (1 + scale) + shift in one op
// (ops::LayerNormModulate): shift/scale [B, 1, D] or [B, D] of x's dtype.
Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, double eps);
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);
// q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv]; additive mask (not differentiated).
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask = Tensor(),
                 std::optional<double> scale = std::nullopt);
// x [..., L, H, D]; cos/sin [L, D/2] (constants).
Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout);

// Activation recompute: runs fn on inputs without keeping its intermediate tensors; during
// backward fn runs again with grad enabled and its graph is walked. `params` lists the
// trainable tensors fn uses (they receive their gradients as usual). fn must be deterministic.
Tensor checkpoint(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                  const std::vector<Tensor>& inputs, const std::vector<Tensor>& params = {});

}  // namespace sdpo
