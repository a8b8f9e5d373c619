// Raw tensor operations (namespace sdpo::ops): validated, device-dispatched, NOT differentiable.
// Models and trainers use the differentiable versions in autograd/ops.h; these are the kernels
// those are built from (and what backward functions call).
//
// Conventions: dims may be negative (counted from the end); binary ops broadcast like NumPy;
// both operands of a binary op must have the same dtype, except 0-d tensors, which are cast.
// Every error names the op and the shapes/dtypes involved.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "tensor/op_list.h"
#include "tensor/tensor.h"

namespace sdpo::ops {

// --- views: share storage with the input ------------------------------------------------
Tensor View(const Tensor& x, Shape shape);  // one dim may be -1; needs compatible strides
Tensor Reshape(const Tensor& x, Shape shape);  // a view when possible, else a copy
Tensor Flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor Permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor Transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor Narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor Slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor Select(const Tensor& x, int64_t dim, int64_t index);  // removes the dim
Tensor Expand(const Tensor& x, const Shape& shape);          // broadcast without copying
Tensor Unsqueeze(const Tensor& x, int64_t dim);
Tensor Squeeze(const Tensor& x, int64_t dim);
std::vector<Tensor> Split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
std::vector<Tensor> Chunk(const Tensor& x, int64_t chunks, int64_t dim);

// --- copies and conversions ---------------------------------------------------------------
Tensor Contiguous(const Tensor& x);  // x itself when already contiguous
Tensor Clone(const Tensor& x);       // always a new contiguous tensor
// Copies src into dst (dst's shape; src broadcast to it; dtype converted). Writes through
// views of dst's storage. Returns dst.
const Tensor& CopyInto(const Tensor& dst, const Tensor& src);
Tensor Cast(const Tensor& x, DType dtype);  // x itself when already of that dtype
Tensor To(const Tensor& x, Device device);  // x itself when already there
void Fill(const Tensor& x, double value);

// --- elementwise ------------------------------------------------------------------------
// The op lists live in tensor/op_list.h (shared with the CUDA kernels' codes).
enum class BinaryOp { SDPO_BINARY_OPS(SDPO_OP_ENUMERATOR) };
enum class CompareOp { SDPO_COMPARE_OPS(SDPO_OP_ENUMERATOR) };
enum class UnaryOp { SDPO_UNARY_OPS(SDPO_OP_ENUMERATOR) };
inline constexpr int kNumBinaryOps = 0 SDPO_BINARY_OPS(SDPO_OP_COUNT_ONE);
inline constexpr int kNumCompareOps = 0 SDPO_COMPARE_OPS(SDPO_OP_COUNT_ONE);
inline constexpr int kNumUnaryOps = 0 SDPO_UNARY_OPS(SDPO_OP_COUNT_ONE);
const char* BinaryOpName(BinaryOp op);
const char* UnaryOpName(UnaryOp op);
const char* CompareOpName(CompareOp op);
Shape BroadcastShapes(const Shape& a, const Shape& b, const char* op);

Tensor Binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor Compare(CompareOp op, const Tensor& a, const Tensor& b);  // bool result
Tensor Where(const Tensor& condition, const Tensor& a, const Tensor& b);
Tensor Unary(UnaryOp op, const Tensor& x);
Tensor Clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);
Tensor ScalarLike(double value, const Tensor& like);  // 0-d tensor, like's dtype and device

inline Tensor Add(const Tensor& a, const Tensor& b) { return Binary(BinaryOp::kAdd, a, b); }
inline Tensor Sub(const Tensor& a, const Tensor& b) { return Binary(BinaryOp::kSub, a, b); }
inline Tensor Mul(const Tensor& a, const Tensor& b) { return Binary(BinaryOp::kMul, a, b); }
inline Tensor Div(const Tensor& a, const Tensor& b) { return Binary(BinaryOp::kDiv, a, b); }
inline Tensor Pow(const Tensor& a, const Tensor& b) { return Binary(BinaryOp::kPow, a, b); }
inline Tensor Maximum(const Tensor& a, const Tensor& b) { return Binary(BinaryOp::kMaximum, a, b); }
inline Tensor Minimum(const Tensor& a, const Tensor& b) { return Binary(BinaryOp::kMinimum, a, b); }
inline Tensor AddScalar(const Tensor& a, double s) { return Add(a, ScalarLike(s, a)); }
inline Tensor MulScalar(const Tensor& a, double s) { return Mul(a, ScalarLike(s, a)); }
inline Tensor PowScalar(const Tensor& a, double s) { return Pow(a, ScalarLike(s, a)); }
inline Tensor Neg(const Tensor& x) { return Unary(UnaryOp::kNeg, x); }
inline Tensor Exp(const Tensor& x) { return Unary(UnaryOp::kExp, x); }
inline Tensor Log(const Tensor& x) { return Unary(UnaryOp::kLog, x); }
inline Tensor Sqrt(const Tensor& x) { return Unary(UnaryOp::kSqrt, x); }
inline Tensor Square(const Tensor& x) { return Unary(UnaryOp::kSquare, x); }

// --- reductions -------------------------------------------------------------------------
// dims empty = all dims. Float inputs accumulate in double (f64) or float with pairwise/Kahan-free
// blocked sums (f32); bf16/f16 accumulate in f32.
Tensor Sum(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor Mean(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor Max(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor ArgMax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64 result
// Variance with `correction` (0 = biased, 1 = unbiased).
Tensor Var(const Tensor& x, std::vector<int64_t> dims = {}, int64_t correction = 1,
           bool keepdim = false);
// Sums a broadcast result back to `shape` (the reverse of broadcasting; for backward).
Tensor SumToShape(const Tensor& x, const Shape& shape);

Tensor Softmax(const Tensor& x, int64_t dim);
Tensor LogSoftmax(const Tensor& x, int64_t dim);

// --- linear algebra -----------------------------------------------------------------------
// a [..., M, K] x b [..., K, N] -> [..., M, N] with broadcast batch dims; transposed views
// (e.g. Transpose(w, 0, 1)) are used without copying. 1-D operands are not accepted.
Tensor Matmul(const Tensor& a, const Tensor& b);
// The same with the result in `out_dtype`: a's dtype, or f32 for bf16 a and b (products of the
// bf16 values accumulated in f32 and returned unrounded; on the CPU through oneDNN's bf16 matmul,
// tensor/cpu/dnnl_gemm.h). How a model runs its projections with bf16 inputs (docs/text.md).
Tensor Matmul(const Tensor& a, const Tensor& b, DType out_dtype);

// --- joining and indexing -----------------------------------------------------------------
Tensor Concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor Stack(const std::vector<Tensor>& xs, int64_t dim);
Tensor IndexSelect(const Tensor& x, int64_t dim, const Tensor& index);  // index: i64/i32 1-D
// out = zeros(shape); out.index_select(dim, index) += src (repeated indices accumulate).
Tensor IndexAdd(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src);
Tensor Gather(const Tensor& x, int64_t dim, const Tensor& index);  // index same rank as x
Tensor ScatterAdd(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src);

// --- fused normalisation, attention, rotary -----------------------------------------------
// Normalise over the last dim. Statistics in f32 (f64 for f64 inputs).
struct NormResult {
  Tensor out;
  Tensor mean;  // [rows] (layer norm only)
  Tensor rstd;  // [rows]
};
NormResult LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
struct NormGrads {
  Tensor dx, dweight, dbias;
};
NormGrads LayerNormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                            const Tensor& mean, const Tensor& rstd, bool need_bias_grad);
// LayerNorm without affine over the last dim of x [B, ..., D] followed by AdaLN modulation:
// out = LN(x) * (1 + scale[b]) + shift[b], shift and scale [B, 1, D] or [B, D] of x's dtype;
// computed in f32 (f64 for f64) and rounded once to x's dtype.
NormResult LayerNormModulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                             double eps);
struct NormModulateGrads {
  Tensor dx, dshift, dscale;  // dshift, dscale [B, D]
};
NormModulateGrads LayerNormModulateBackward(const Tensor& dy, const Tensor& x, const Tensor& scale,
                                            const Tensor& mean, const Tensor& rstd);
NormResult RmsNorm(const Tensor& x, const Tensor& weight, double eps);
NormGrads RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                          const Tensor& rstd);

// Scaled dot-product attention: q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv];
// optional additive mask broadcastable to [B, H, Lq, Lk]; scale defaults to 1/sqrt(D).
struct AttentionResult {
  Tensor out;  // [B, H, Lq, Dv]
  Tensor lse;  // [B, H, Lq] f32 log-sum-exp of the scaled, masked scores
};
AttentionResult Attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                          std::optional<double> scale);
struct AttentionGrads {
  Tensor dq, dk, dv;
};
AttentionGrads AttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                 const Tensor& v, const Tensor& mask, std::optional<double> scale,
                                 const Tensor& out, const Tensor& lse);

// Rotary embedding on x [..., L, H, D] with angles given as cos/sin [L, D/2].
// kInterleaved rotates pairs (x[2j], x[2j+1]); kHalfSplit rotates (x[j], x[j + D/2]).
enum class RopeLayout { kInterleaved, kHalfSplit };
Tensor Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeLayout layout,
            bool inverse = false);  // inverse rotates by -theta (the backward)

// --- convolution and resampling (forward only; tensor/conv_ops.cc) --------------------------
// Zero-padded 3-D convolution (PyTorch Conv3d, groups 1, dilation 1):
// x [B, Cin, T, H, W], weight [Cout, Cin, kt, kh, kw], bias [Cout] or undefined, all of one
// floating dtype and device -> [B, Cout, To, Ho, Wo] with To = (Th + T + pad_t - kt) / stride_t + 1
// (Th: history frames, pad_t: both t paddings) and likewise for H and W.
struct Conv3dOptions {
  std::array<int64_t, 3> stride = {1, 1, 1};  // (t, h, w)
  // Zero padding (t_before, t_after, h_before, h_after, w_before, w_after): asymmetric allowed.
  std::array<int64_t, 6> padding = {0, 0, 0, 0, 0, 0};
  // Optional frames [B, Cin, Th, H, W] that precede x in time (a causal convolution's cache):
  // the convolution runs over concat(history, x) along T without making that copy; t_before
  // padding comes before the history.
  Tensor history;
  // Convolve UpsampleNearest2x(x) (H and W doubled; history must then be undefined and the
  // spatial strides 1) without materialising it on the CPU.
  bool upsample_input = false;
};
Tensor Conv3d(const Tensor& x, const Tensor& weight, const Tensor& bias,
              const Conv3dOptions& options = {});
// 2-D convolution: x [B, Cin, H, W], weight [Cout, Cin, kh, kw]; stride (h, w); zero padding
// (top, bottom, left, right).
Tensor Conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
              std::array<int64_t, 2> stride = {1, 1},
              std::array<int64_t, 4> padding = {0, 0, 0, 0});
// Nearest-neighbour 2x upsampling of the last two dims (every value repeated 2x2; equals
// PyTorch's 'nearest' and 'nearest-exact' for factor 2).
Tensor UpsampleNearest2x(const Tensor& x);
// Constant padding of the trailing pads.size() dims: pads[i] = (before, after) for dim
// x.dim() - pads.size() + i (outermost first; note PyTorch's F.pad lists the last dim first).
Tensor Pad(const Tensor& x, const std::vector<std::array<int64_t, 2>>& pads, double value = 0);
// RMS normalisation over the channel dim 1 of x [B, C, ...], as PyTorch's
// F.normalize(x, dim=1) * sqrt(C) * gamma: x / max(||x||_2, eps) * sqrt(C) * gamma[c] per
// position (no mean subtraction; eps bounds the norm). gamma holds C values (any shape, e.g.
// [C, 1, 1, 1]). With silu the result goes through SiLU in the same pass. Statistics in f32
// (f64 for f64); the output has x's dtype.
Tensor ChannelRmsNorm(const Tensor& x, const Tensor& gamma, double eps, bool silu = false);
// Group normalisation of x [B, C, ...] (PyTorch F.group_norm): the C channels form `groups`
// groups of C / groups; each (batch item, group) is normalised over its channels and all trailing
// positions with the biased variance, (x - mean) / sqrt(var + eps), then scaled by weight[c] and
// shifted by bias[c] (each [C] or undefined: no affine). With silu the result goes through SiLU
// in the same pass. Statistics accumulate in f64; the affine step runs in f32 (f64 for f64); the
// output has x's dtype.
Tensor GroupNorm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                 double eps, bool silu = false);

// --- in place (forward-only code: a tensor that autograd saved must not be overwritten) ----------
// x contiguous: x = ChannelRmsNorm(x, gamma, eps, silu), the same values. Returns x.
const Tensor& ChannelRmsNormInPlace(const Tensor& x, const Tensor& gamma, double eps,
                                    bool silu = false);
// x contiguous: x = GroupNorm(x, groups, weight, bias, eps, silu), the same values. Returns x.
const Tensor& GroupNormInPlace(const Tensor& x, int64_t groups, const Tensor& weight,
                               const Tensor& bias, double eps, bool silu = false);
// dst contiguous: dst = dst + src (src broadcast to dst's shape, dst's dtype). Returns dst.
const Tensor& AddInPlace(const Tensor& dst, const Tensor& src);
// x contiguous: x = Clamp(x, min, max). Returns x.
const Tensor& ClampInPlace(const Tensor& x, double min, double max);

// --- random numbers -----------------------------------------------------------------------
// Counter-based (Philox4x32-10): element i of the result is a function of (seed, offset + i)
// only, on every device and for every thread count.
Tensor RandomNormal(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype = kF32,
                    Device device = Device::CPU());
Tensor RandomUniform(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype = kF32,
                     Device device = Device::CPU());  // [0, 1)

}  // namespace sdpo::ops
