// Attention per (batch, head). The forward splits each head's queries into blocks and runs the
// (head, block) pairs in parallel, each on one thread with its own [block, Lk] scores (Eigen
// products): no [Lq, Lk] buffer and no thread sync per head, and the split does not depend on the
// thread count, so neither do the results. The backward loops over heads with threaded products.
#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/cpu/cpu_kernels.h"
#include "tensor/ops.h"
#include "tensor/thread_pool.h"

namespace sdpo::cpu {
namespace {

template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows [row0, row0 + rows) of one head's scores s [rows, lk] (already q k^T) -> probabilities in
// place: scale, add the mask rows of (b, h), softmax each row. Writes each row's log-sum-exp to
// lse[i] when lse != nullptr.
template <typename T>
void RowsToProbabilities(T* s, int64_t row0, int64_t rows, int64_t lk, double scale,
                         const Tensor& mask, int64_t b, int64_t h, float* lse) {
  const T* mbase = nullptr;
  int64_t ms2 = 0, ms3 = 0;
  if (mask.defined()) {
    mbase = static_cast<const T*>(mask.raw_data()) + b * mask.stride(0) + h * mask.stride(1);
    ms2 = mask.stride(2);
    ms3 = mask.stride(3);
  }
  for (int64_t i = 0; i < rows; ++i) {
    T* row = s + i * lk;
    const T* mrow = mbase ? mbase + (row0 + i) * ms2 : nullptr;
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < lk; ++j) {
      T v = row[j] * static_cast<T>(scale);
      if (mrow) v += mrow[j * ms3];
      row[j] = v;
      mx = std::max(mx, v);
    }
    if (std::isinf(mx) && mx < 0) {  // every key masked: output 0, lse = -inf
      for (int64_t j = 0; j < lk; ++j) row[j] = 0;
      if (lse) lse[i] = -std::numeric_limits<float>::infinity();
      continue;
    }
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> r(row, lk);
    r = (r - mx).exp();  // vectorised exp
    const T sum = r.sum();
    r *= T(1) / sum;
    if (lse) lse[i] = static_cast<float>(mx + std::log(sum));
  }
}

// Whole-head version for the backward: rows split over the thread pool.
template <typename T>
void ScoresToProbabilities(T* s, int64_t lq, int64_t lk, double scale, const Tensor& mask,
                           int64_t b, int64_t h) {
  ParallelFor(lq, std::max<int64_t>(1, 16384 / std::max<int64_t>(lk, 1)),
              [&](int64_t r0, int64_t r1) {
                RowsToProbabilities(s + r0 * lk, r0, r1 - r0, lk, scale, mask, b, h, nullptr);
              });
}

// Query rows per forward work item: the block's scores stay within about 256 KiB (L2), at least
// 16 rows so that the products keep their shape.
int64_t QueryBlockRows(int64_t lq, int64_t lk, size_t element_size) {
  const int64_t fit = static_cast<int64_t>(262144 / (element_size * std::max<int64_t>(lk, 1)));
  return std::min(lq, std::max<int64_t>(16, fit / 8 * 8));
}

template <typename T>
ops::AttentionResult AttentionTyped(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& mask, double scale) {
  const int64_t B = q.size(0), H = q.size(1), lq = q.size(2), lk = k.size(2), d = q.size(3),
                dv = v.size(3);
  Tensor out = Tensor::Empty({B, H, lq, dv}, q.dtype());
  Tensor lse = Tensor::Empty({B, H, lq}, kF32);
  const T* pq = static_cast<const T*>(q.raw_data());
  const T* pk = static_cast<const T*>(k.raw_data());
  const T* pv = static_cast<const T*>(v.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  float* plse = lse.data<float>();
  const int64_t block = QueryBlockRows(lq, lk, sizeof(T));
  const int64_t blocks_per_head = (lq + block - 1) / block;
  ParallelFor(B * H * blocks_per_head, 1, [&](int64_t w0, int64_t w1) {
    // Scratch from the tensor allocator (64-byte aligned): Eigen's vectorised row sums start
    // their packets at an alignment boundary, so a buffer whose alignment varied between calls
    // would make results differ in the last bit from run to run.
    Tensor scratch = Tensor::Empty({block, lk}, q.dtype());
    T* s = static_cast<T*>(scratch.raw_data());
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t bh = w / blocks_per_head, row0 = (w % blocks_per_head) * block;
      const int64_t rows = std::min(block, lq - row0);
      Eigen::Map<RowMajor<T>> scores(s, rows, lk);
      Eigen::Map<const RowMajor<T>> qm(pq + (bh * lq + row0) * d, rows, d);
      Eigen::Map<const RowMajor<T>> km(pk + bh * lk * d, lk, d);
      Eigen::Map<const RowMajor<T>> vm(pv + bh * lk * dv, lk, dv);
      Eigen::Map<RowMajor<T>> om(po + (bh * lq + row0) * dv, rows, dv);
      scores.noalias() = qm * km.transpose();
      RowsToProbabilities(s, row0, rows, lk, scale, mask, bh / H, bh % H, plse + bh * lq + row0);
      om.noalias() = scores * vm;
    }
  });
  return {out, lse};
}

template <typename T>
ops::AttentionGrads AttentionBackwardTyped(const Tensor& dout, const Tensor& q, const Tensor& k,
                                           const Tensor& v, const Tensor& mask, double scale,
                                           const Tensor& out) {
  const int64_t B = q.size(0), H = q.size(1), lq = q.size(2), lk = k.size(2), d = q.size(3),
                dv = v.size(3);
  Tensor dq = Tensor::Empty(q.shape(), q.dtype());
  Tensor dk = Tensor::Empty(k.shape(), k.dtype());
  Tensor dvt = Tensor::Empty(v.shape(), v.dtype());
  const T* pq = static_cast<const T*>(q.raw_data());
  const T* pk = static_cast<const T*>(k.raw_data());
  const T* pv = static_cast<const T*>(v.raw_data());
  const T* pdo = static_cast<const T*>(dout.raw_data());
  const T* po = static_cast<const T*>(out.raw_data());
  Tensor scratch = Tensor::Empty({2, lq, lk}, q.dtype());  // aligned: see AttentionTyped
  T* p = static_cast<T*>(scratch.raw_data());
  T* dp = p + lq * lk;
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const T* qb = pq + bh * lq * d;
    const T* kb = pk + bh * lk * d;
    const T* dob = pdo + bh * lq * dv;
    const T* ob = po + bh * lq * dv;
    // Recompute the probabilities exactly as the forward did.
    MatMulRowMajor<T>(false, true, lq, lk, d, qb, kb, p);
    ScoresToProbabilities(p, lq, lk, scale, mask, bh / H, bh % H);
    MatMulRowMajor<T>(true, false, lk, dv, lq, p, dob,
                      static_cast<T*>(dvt.raw_data()) + bh * lk * dv);
    MatMulRowMajor<T>(false, true, lq, lk, dv, dob, pv + bh * lk * dv, dp);
    // dS = P * (dP - rowsum(dO * O)) * scale
    ParallelFor(
        lq, std::max<int64_t>(1, 16384 / std::max<int64_t>(lk, 1)), [&](int64_t r0, int64_t r1) {
          for (int64_t i = r0; i < r1; ++i) {
            T delta = 0;
            for (int64_t j = 0; j < dv; ++j) delta += dob[i * dv + j] * ob[i * dv + j];
            for (int64_t j = 0; j < lk; ++j) {
              dp[i * lk + j] = p[i * lk + j] * (dp[i * lk + j] - delta) * static_cast<T>(scale);
            }
          }
        });
    MatMulRowMajor<T>(false, false, lq, d, lk, dp, kb,
                      static_cast<T*>(dq.raw_data()) + bh * lq * d);
    MatMulRowMajor<T>(true, false, lk, d, lq, dp, qb, static_cast<T*>(dk.raw_data()) + bh * lk * d);
  }
  return {dq, dk, dvt};
}

template <typename T>
Tensor RopeTyped(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout,
                 bool inverse) {
  const int64_t n = x.size(0), l = x.size(1), h = x.size(2), d = x.size(3), half = d / 2;
  Tensor out = Tensor::Empty(x.shape(), x.dtype());
  const T* px = static_cast<const T*>(x.raw_data());
  const T* pc = static_cast<const T*>(cos.raw_data());
  const T* ps = static_cast<const T*>(sin.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  const T sign = inverse ? T(-1) : T(1);
  ParallelFor(n * l, std::max<int64_t>(1, 4096 / (h * d)), [&](int64_t begin, int64_t end) {
    for (int64_t nl = begin; nl < end; ++nl) {
      const int64_t pos = nl % l;
      const T* c = pc + pos * half;
      const T* s = ps + pos * half;
      for (int64_t hh = 0; hh < h; ++hh) {
        const T* xi = px + (nl * h + hh) * d;
        T* yo = po + (nl * h + hh) * d;
        for (int64_t j = 0; j < half; ++j) {
          const int64_t i0 = layout == ops::RopeLayout::kInterleaved ? 2 * j : j;
          const int64_t i1 = layout == ops::RopeLayout::kInterleaved ? 2 * j + 1 : j + half;
          const T a = xi[i0], b = xi[i1], cj = c[j], sj = sign * s[j];
          yo[i0] = a * cj - b * sj;
          yo[i1] = a * sj + b * cj;
        }
      }
    }
  });
  return out;
}

Tensor F32(const Tensor& t) { return t.defined() ? ops::Contiguous(ops::Cast(t, kF32)) : t; }

}  // namespace

ops::AttentionResult Attention(const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& mask, double scale) {
  if (q.dtype() == kF64) return AttentionTyped<double>(q, k, v, mask, scale);
  if (q.dtype() == kF32) return AttentionTyped<float>(q, k, v, mask, scale);
  ops::AttentionResult r = AttentionTyped<float>(
      F32(q), F32(k), F32(v), mask.defined() ? ops::Cast(mask, kF32) : mask, scale);
  r.out = ops::Cast(r.out, q.dtype());
  return r;
}

ops::AttentionGrads AttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                      const Tensor& v, const Tensor& mask, double scale,
                                      const Tensor& out, const Tensor&) {
  if (q.dtype() == kF64) return AttentionBackwardTyped<double>(dout, q, k, v, mask, scale, out);
  if (q.dtype() == kF32) return AttentionBackwardTyped<float>(dout, q, k, v, mask, scale, out);
  ops::AttentionGrads g =
      AttentionBackwardTyped<float>(F32(dout), F32(q), F32(k), F32(v),
                                    mask.defined() ? ops::Cast(mask, kF32) : mask, scale, F32(out));
  return {ops::Cast(g.dq, q.dtype()), ops::Cast(g.dk, q.dtype()), ops::Cast(g.dv, q.dtype())};
}

Tensor Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout,
            bool inverse) {
  if (x.dtype() == kF64) return RopeTyped<double>(x, cos, sin, layout, inverse);
  if (x.dtype() == kF32) return RopeTyped<float>(x, cos, sin, layout, inverse);
  return ops::Cast(RopeTyped<float>(F32(x), F32(cos), F32(sin), layout, inverse), x.dtype());
}

}  // namespace sdpo::cpu
