// bf16 x bf16 -> f32 GEMM on the CPU through oneDNN's matmul primitive (f32 accumulation, the
// result never rounded to bf16): the CPU's AMX / avx512_bf16 units, as PyTorch runs bf16 matmuls.
// Debian's OpenBLAS has no sbgemm. cpu::Gemm calls it for bf16 operands with an f32 output
// (ops::Matmul(a, b, kF32)) and falls back to converting the operands to f32 for OpenBLAS's
// sgemm (the same products, another summation order) when it returns false.
#pragma once

#include "tensor/tensor.h"

namespace sdpo::cpu {

// out [B, M, N] f32 contiguous = op(a) op(b) for a [Ba, M, K] ([Ba, K, M] when ta) and b
// [Bb, K, N] ([Bb, N, K] when tb), both bf16 and contiguous, Ba and Bb either B or 1. Runs on
// NumThreads() OpenMP threads; primitives are cached by shape and thread count. Returns false,
// doing nothing, when oneDNN has no optimised bf16 matmul for this CPU (no AVX-512: the
// primitive cannot be created, or only oneDNN's reference loop can), said once on stderr, or when
// disabled.
bool DnnlGemmBf16(const Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb);

// Whether DnnlGemmBf16 may use oneDNN (default true). False forces the converting sgemm path:
// for tests and benchmarks that compare the two.
void SetDnnlGemmEnabled(bool enabled);

// True when a bf16 matmul primitive can be created on this CPU (tries one small shape).
bool DnnlGemmAvailable();

}  // namespace sdpo::cpu
