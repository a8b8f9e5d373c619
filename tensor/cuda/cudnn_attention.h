// Scaled dot-product attention through cuDNN's fused flash-attention engines (cuDNN 9 backend
// graph API), for bf16/f16 q/k/v [B, H, L, D] with D = Dv in {64, 128} and no mask.
//
// libcudnn.so.9 is loaded at run time (dlopen), so binaries link no cuDNN and keep running where
// it is absent: the backend then uses its own kernels (tensor/cuda/attention.cu). Execution plans
// are cached per (device, direction, dtype, shape); one cudnnHandle per device; every call runs on
// the backend's current stream with workspace from the caching allocator.
//
// Semantics as Kernels::Attention: out = softmax(scale * q k^T) v, lse [B, H, Lq] f32 = natural-log
// log-sum-exp of the scaled scores (cuDNN's softmax "stats" = max + log(sum(exp(s - max)))).
//
// Under SDPO_CUDA_EMULATE (or without CUDA) this compiles to a stub that reports "unavailable".
// SDPO_CUDNN_ATTENTION=0 disables the path (it then reports unavailable too).
#pragma once

#include <string>

#include "tensor/tensor.h"

namespace sdpo::cuda {

// Whether the cuDNN path can run at all in this process (library loaded, cuDNN >= 9, a GPU, not
// disabled); otherwise *reason (when given) says why.
bool CudnnAttentionAvailable(std::string* reason = nullptr);

// Whether the operands are of the kind the cuDNN path handles (dtype, no mask, D = Dv in {64, 128},
// contiguous, 16-byte aligned, same CUDA device, non-empty).
bool CudnnAttentionEligible(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                            std::string* why = nullptr);

// Forced path: throws sdpo::Error (naming the failing cuDNN step and status) when unavailable,
// ineligible or when cuDNN fails. q, k, v, out, lse contiguous; out [B, H, Lq, D], lse [B, H, Lq] f32.
void CudnnAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                           const Tensor& out, const Tensor& lse);
// dout, q, k, v, out contiguous of q's dtype; lse [B, H, Lq] f32; dq, dk, dv preallocated.
void CudnnAttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& out, const Tensor& lse, double scale, const Tensor& dq,
                            const Tensor& dk, const Tensor& dv);

// Auto path: true when cuDNN computed the result; false (nothing to undo: the caller computes
// everything again) when unavailable, ineligible or failing. The first failure caused by a cuDNN
// error prints one line on stderr per process; a shape whose plan fails is not tried again.
bool TryCudnnAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& mask, double scale, const Tensor& out,
                              const Tensor& lse);
bool TryCudnnAttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& mask, const Tensor& out,
                               const Tensor& lse, double scale, const Tensor& dq,
                               const Tensor& dk, const Tensor& dv);

}  // namespace sdpo::cuda
