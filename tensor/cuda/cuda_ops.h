// Tensor-level CUDA entry points beyond tensor/kernels.h: fused GEMM epilogues, the fused
// LayerNorm + AdaLN modulation, a forced attention path, fused multi-tensor AdamW, allocator
// statistics. Used by tests and benchmarks now, and by autograd nodes once the Kernels
// interface grows these operations (see docs/gpu.md).
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/cuda/allocator.h"
#include "tensor/ops.h"

namespace sdpo::cuda {

// GEMM numerics for f32 inputs: TF32 tensor cores (opt-in; also SDPO_ALLOW_TF32=1) or full f32.
void SetAllowTF32(bool allow);
bool AllowTF32();

enum class Epilogue { kNone, kBias, kBiasGeluTanh };
// out [B, M, N] = op(a) op(b) (+ bias[N]) (then tanh-GELU), with the layouts of
// Kernels::Gemm. bias: contiguous [N] of out's dtype, or undefined for kNone.
void GemmEx(const Tensor& out, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
            const Tensor& bias, Epilogue epilogue);

// Attention with a chosen path: 0 auto (cuDNN fused attention when eligible and working, else
// our kernels), 1 simple (CUDA cores), 2 tensor cores (bf16/f16, D = Dv in {64, 128}; throws
// otherwise), 3 cuDNN fused attention (bf16/f16, no mask, D = Dv in {64, 128}; throws when cuDNN is
// unavailable: see CudnnAttentionAvailable in tensor/cuda/cudnn_attention.h). Arguments as
// ops::Attention (q/k/v [B, H, L, D]).
ops::AttentionResult AttentionWithPath(const Tensor& q, const Tensor& k, const Tensor& v,
                                       const Tensor& mask, double scale, int path);
ops::AttentionGrads AttentionBackwardWithPath(const Tensor& dout, const Tensor& q,
                                              const Tensor& k, const Tensor& v,
                                              const Tensor& mask, double scale, const Tensor& out,
                                              const Tensor& lse, int path);

// Which Conv3d path the backend takes (ops::Conv3d, ops::Conv2d on CUDA tensors): 0 auto (cuDNN
// when available and the operands suit it, else our implicit-GEMM kernel), 1 our kernel always,
// 2 cuDNN always (throws when unavailable). The default is 0, or 1 when the environment has
// SDPO_CUDNN_CONV=0. Process-wide.
void SetConv3dPath(int path);
int Conv3dPath();

// One fused AdamW step (torch.optim.AdamW semantics) over many tensors. param, exp_avg and
// exp_avg_sq are f32 CUDA tensors (contiguous, updated in place); grad is f32/bf16/f16 of the
// same shape; param_copy (optional) receives the new parameter in its own dtype (e.g. bf16
// model weights next to f32 master weights).
struct AdamWParam {
  Tensor param, grad, exp_avg, exp_avg_sq, param_copy;
};
struct AdamWOptions {
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  double grad_scale = 1.0;
};
void FusedAdamW(const std::vector<AdamWParam>& params, const AdamWOptions& options,
                int64_t step);

}  // namespace sdpo::cuda
