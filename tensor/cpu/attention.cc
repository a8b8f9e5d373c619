// Attention per (batch, head): the products go through MatMulRowMajor (OpenBLAS, threaded), the
// row-wise softmax work through the thread pool. Only one head's L x L scores exist at a time.
#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/cpu/cpu_kernels.h"
#include "tensor/ops.h"
#include "tensor/thread_pool.h"

namespace sdpo::cpu {
namespace {

// Scores s [lq, lk] (already q k^T) -> probabilities in place: scale, add the mask slice for
// (b, h), softmax each row. Returns per-row log-sum-exp when lse != nullptr.
template <typename T>
void ScoresToProbabilities(T* s, int64_t lq, int64_t lk, double scale, const Tensor& mask,
                           int64_t b, int64_t h, float* lse) {
  const T* mbase = nullptr;
  int64_t ms2 = 0, ms3 = 0;
  if (mask.defined()) {
    mbase = static_cast<const T*>(mask.raw_data()) + b * mask.stride(0) + h * mask.stride(1);
    ms2 = mask.stride(2);
    ms3 = mask.stride(3);
  }
  ParallelFor(lq, std::max<int64_t>(1, 16384 / std::max<int64_t>(lk, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      T* row = s + i * lk;
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < lk; ++j) {
        T v = row[j] * static_cast<T>(scale);
        if (mbase) v += mbase[i * ms2 + j * ms3];
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
  });
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
  // Scratch from the tensor allocator (64-byte aligned): Eigen's vectorised row sums start
  // their packets at an alignment boundary, so a buffer whose alignment varied between calls
  // would make results differ in the last bit from run to run.
  Tensor scratch = Tensor::Empty({lq, lk}, q.dtype());
  T* s = static_cast<T*>(scratch.raw_data());
  for (int64_t bh = 0; bh < B * H; ++bh) {
    MatMulRowMajor<T>(false, true, lq, lk, d, pq + bh * lq * d, pk + bh * lk * d, s);
    ScoresToProbabilities(s, lq, lk, scale, mask, bh / H, bh % H, lse.data<float>() + bh * lq);
    MatMulRowMajor<T>(false, false, lq, dv, lk, s, pv + bh * lk * dv, po + bh * lq * dv);
  }
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
    ScoresToProbabilities(p, lq, lk, scale, mask, bh / H, bh % H, nullptr);
    MatMulRowMajor<T>(true, false, lk, dv, lq, p, dob,
                      static_cast<T*>(dvt.raw_data()) + bh * lk * dv);
    MatMulRowMajor<T>(false, true, lq, lk, dv, dob, pv + bh * lk * dv, dp);
    // dS = P * (dP - rowsum(dO * O)) * scale
    ParallelFor(lq, std::max<int64_t>(1, 16384 / std::max<int64_t>(lk, 1)),
                [&](int64_t r0, int64_t r1) {
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
    MatMulRowMajor<T>(true, false, lk, d, lq, dp, qb,
                      static_cast<T*>(dk.raw_data()) + bh * lk * d);
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
  ops::AttentionGrads g = AttentionBackwardTyped<float>(
      F32(dout), F32(q), F32(k), F32(v), mask.defined() ? ops::Cast(mask, kF32) : mask, scale,
      F32(out));
  return {ops::Cast(g.dq, q.dtype()), ops::Cast(g.dk, q.dtype()), ops::Cast(g.dv, q.dtype())};
}

Tensor Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout,
            bool inverse) {
  if (x.dtype() == kF64) return RopeTyped<double>(x, cos, sin, layout, inverse);
  if (x.dtype() == kF32) return RopeTyped<float>(x, cos, sin, layout, inverse);
  return ops::Cast(RopeTyped<float>(F32(x), F32(cos), F32(sin), layout, inverse), x.dtype());
}

}  // namespace sdpo::cpu
