// CPU kernels (the oracle). Each function implements the Kernels method of the same name;
// argument layouts are documented in tensor/kernels.h.
#pragma once

#include "tensor/kernels.h"

namespace sdpo::cpu {

void Fill(const Tensor& out, double value);
void Copy(const Tensor& dst, const Tensor& src);
void Unary(ops::UnaryOp op, const Tensor& out, const Tensor& x);
void Binary(ops::BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b);
void Compare(ops::CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b);
void Where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b);
void Clamp(const Tensor& out, const Tensor& x, double lo, double hi);
void ReduceRows(ReduceKind kind, const Tensor& out, const Tensor& x, int64_t correction);
void ReduceMiddle(ReduceKind kind, const Tensor& out, const Tensor& x);
void SoftmaxRows(const Tensor& out, const Tensor& x, bool log);
void Gemm(const Tensor& out, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b);
ops::NormResult LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
ops::NormGrads LayerNormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                 const Tensor& mean, const Tensor& rstd, bool need_bias_grad);
ops::NormResult LayerNormModulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                  int64_t rows_per_batch, double eps);
ops::NormModulateGrads LayerNormModulateBackward(const Tensor& dy, const Tensor& x,
                                                 const Tensor& scale, const Tensor& mean,
                                                 const Tensor& rstd, int64_t rows_per_batch);
ops::NormResult RmsNorm(const Tensor& x, const Tensor& weight, double eps);
ops::NormGrads RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                               const Tensor& rstd);
ops::AttentionResult Attention(const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& mask, double scale);
ops::AttentionGrads AttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                      const Tensor& v, const Tensor& mask, double scale,
                                      const Tensor& out, const Tensor& lse);
Tensor Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout,
            bool inverse);
void IndexRows(const Tensor& out, const Tensor& x, const Tensor& index);
void IndexAddRows(const Tensor& out, const Tensor& index, const Tensor& src);
void Gather(const Tensor& out, const Tensor& x, const Tensor& index);
void ScatterAdd(const Tensor& out, const Tensor& index, const Tensor& src);
void Conv3d(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
            const Tensor& bias, const ops::Conv3dOptions& options);
void ChannelRmsNorm(const Tensor& out, const Tensor& x, const Tensor& gamma, double eps, bool silu);
void GroupNorm(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
               int64_t groups, double eps, bool silu);
void Philox(const Tensor& out, uint64_t seed, uint64_t offset, bool normal);

// c[m, n] = op(a) op(b) for row-major float/double buffers; a is [m, k] ([k, m] when ta), b is
// [k, n] ([n, k] when tb). OpenBLAS outside a parallel region, Eigen inside one.
template <typename T>
void MatMulRowMajor(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                    T* c);

// c = a b + beta c for row-major float/double buffers with leading dimensions: a [m, k], b [k, n],
// c [m, n]. OpenBLAS on the calling thread only (it sets OpenBLAS to one thread), for kernels
// that split their work into tiles over the pool and run one product per tile and thread.
template <typename T>
void GemmOnCallingThread(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                         int64_t ldb, T beta, T* c, int64_t ldc);

}  // namespace sdpo::cpu
