// The per-device kernel interface behind tensor/ops.h. ops.cc validates arguments, computes
// output shapes, allocates outputs and lays inputs out as each kernel documents; a device
// backend only computes. The CPU implementation is the oracle (tensor/cpu/); the CUDA backend
// registers its own (tensor/cuda/).
#pragma once

#include "tensor/ops.h"

namespace sdpo {

enum class ReduceKind { SDPO_REDUCE_KINDS(SDPO_OP_ENUMERATOR) };
inline constexpr int kNumReduceKinds = 0 SDPO_REDUCE_KINDS(SDPO_OP_COUNT_ONE);

class Kernels {
 public:
  virtual ~Kernels() = default;
  virtual void Fill(const Tensor& out, double value) = 0;
  // dst and src have the same shape, any strides, any dtypes (converted), same device.
  virtual void Copy(const Tensor& dst, const Tensor& src) = 0;
  // out is contiguous; inputs have out's shape (broadcast dims have stride 0) and, for
  // Unary/Binary, out's dtype. Compare writes bool; Where's condition is bool.
  virtual void Unary(ops::UnaryOp op, const Tensor& out, const Tensor& x) = 0;
  virtual void Binary(ops::BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) = 0;
  virtual void Compare(ops::CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b) = 0;
  virtual void Where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) = 0;
  virtual void Clamp(const Tensor& out, const Tensor& x, double lo, double hi) = 0;
  // x is contiguous [rows, cols]; out is [rows] (i64 for kArgMax, else x's dtype).
  virtual void ReduceRows(ReduceKind kind, const Tensor& out, const Tensor& x,
                          int64_t correction) = 0;
  // x is contiguous [outer, rows, cols] of a floating dtype; out [outer, cols] (x's dtype) holds
  // the sum (kSum) or mean (kMean) over rows: a reduction over middle or leading dims without
  // moving them last first.
  virtual void ReduceMiddle(ReduceKind kind, const Tensor& out, const Tensor& x) = 0;
  virtual void SoftmaxRows(const Tensor& out, const Tensor& x, bool log) = 0;  // [rows, cols]
  // out [B, M, N] contiguous = op(a) op(b); a is [Ba, M, K] ([Ba, K, M] when trans_a), b is
  // [Bb, K, N] ([Bb, N, K] when trans_b), both contiguous, Ba and Bb either B or 1.
  virtual void Gemm(const Tensor& out, const Tensor& a, bool trans_a, const Tensor& b,
                    bool trans_b) = 0;
  // x contiguous [rows, D]; weight/bias [D] or undefined.
  virtual ops::NormResult LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                    double eps) = 0;
  virtual ops::NormGrads LayerNormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                           const Tensor& mean, const Tensor& rstd,
                                           bool need_bias_grad) = 0;
  // x contiguous [rows, D]; shift/scale contiguous [rows / rows_per_batch, D] of x's dtype.
  virtual ops::NormResult LayerNormModulate(const Tensor& x, const Tensor& shift,
                                            const Tensor& scale, int64_t rows_per_batch,
                                            double eps) = 0;
  virtual ops::NormModulateGrads LayerNormModulateBackward(const Tensor& dy, const Tensor& x,
                                                           const Tensor& scale,
                                                           const Tensor& mean,
                                                           const Tensor& rstd,
                                                           int64_t rows_per_batch) = 0;
  virtual ops::NormResult RmsNorm(const Tensor& x, const Tensor& weight, double eps) = 0;
  virtual ops::NormGrads RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                         const Tensor& rstd) = 0;
  // q/k/v contiguous [B, H, L, D]; mask undefined or expanded to [B, H, Lq, Lk] (any strides).
  virtual ops::AttentionResult Attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                         const Tensor& mask, double scale) = 0;
  virtual ops::AttentionGrads AttentionBackward(const Tensor& dout, const Tensor& q,
                                                const Tensor& k, const Tensor& v,
                                                const Tensor& mask, double scale,
                                                const Tensor& out, const Tensor& lse) = 0;
  // x contiguous [N, L, H, D]; cos/sin contiguous [L, D/2] of x's dtype.
  virtual Tensor Rope(const Tensor& x, const Tensor& cos, const Tensor& sin,
                      ops::RopeLayout layout, bool inverse) = 0;
  // out contiguous [rows(index), inner]: out[i] = x[index[i]] for x [n, inner].
  virtual void IndexRows(const Tensor& out, const Tensor& x, const Tensor& index) = 0;
  // out [n, inner] += src[i] at row index[i] (accumulating repeats).
  virtual void IndexAddRows(const Tensor& out, const Tensor& index, const Tensor& src) = 0;
  // Gather / scatter-add along dim 1 of [outer, n, inner] views (contiguous).
  virtual void Gather(const Tensor& out, const Tensor& x, const Tensor& index) = 0;
  virtual void ScatterAdd(const Tensor& out, const Tensor& index, const Tensor& src) = 0;
  virtual void Philox(const Tensor& out, uint64_t seed, uint64_t offset, bool normal) = 0;
  // out [B, Cout, To, Ho, Wo] contiguous = Conv3d(concat(history, x)) as ops::Conv3d documents:
  // x [B, Cin, T, H, W] contiguous; history undefined or [B, Cin, Th, H, W] contiguous; weight
  // [Cout, Cin, kt, kh, kw] and bias [Cout] (or undefined) contiguous of x's dtype. Output frame
  // o at tap dt reads frame o * stride_t - pad_t_before + dt of concat(history, x); positions
  // outside the input read zero. Devices without a kernel report it.
  virtual void Conv3d(const Tensor& out, const Tensor& x, const Tensor& history,
                      const Tensor& weight, const Tensor& bias, const ops::Conv3dOptions& options) {
    SDPO_FAIL("conv3d: no kernel on ", out.device().str());
  }
  // out, x contiguous [outer, C, inner]; gamma contiguous [C] in the statistics dtype (f64 for
  // f64 x, else f32); see ops::ChannelRmsNorm.
  virtual void ChannelRmsNorm(const Tensor& out, const Tensor& x, const Tensor& gamma, double eps,
                              bool silu) {
    SDPO_FAIL("channel_rms_norm: no kernel on ", out.device().str());
  }
  // out, x contiguous [B, C, inner]; weight and bias contiguous [C] in the statistics dtype (f64
  // for f64 x, else f32) or undefined; groups divides C; see ops::GroupNorm. out may be x: the
  // CPU and CUDA kernels take every statistic before they write (ops::GroupNormInPlace).
  virtual void GroupNorm(const Tensor& out, const Tensor& x, const Tensor& weight,
                         const Tensor& bias, int64_t groups, double eps, bool silu) {
    SDPO_FAIL("group_norm: no kernel on ", out.device().str());
  }
  // One AdamW step (torch.optim.AdamW) of a contiguous f32 parameter with f32 moments and
  // gradient, in one pass, if the device has a fused kernel for it: returns false (nothing done)
  // otherwise, and the caller composes the update from tensor ops.
  struct AdamWStep {
    double lr, beta1, beta2, eps, weight_decay;
    int64_t step;  // >= 1, this parameter's update count including this one
  };
  virtual bool FusedAdamW(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                          const Tensor& exp_avg_sq, const AdamWStep& h) {
    return false;
  }
};

Kernels& CpuKernels();
void RegisterCudaKernels(Kernels* kernels);
Kernels& KernelsFor(Device device);  // throws a clear error when no backend exists

}  // namespace sdpo
