// Attention (per (batch, head) with Eigen products; the L x L scores live only per head and per
// thread) and rotary embedding.
#include <Eigen/Core>
#include <cmath>
#include <limits>

#include "tensor/cpu/cpu_kernels.h"
#include "tensor/ops.h"
#include "tensor/thread_pool.h"

namespace sdpo::cpu {
namespace {

template <typename T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using CMap = Eigen::Map<const Mat<T>>;
template <typename T>
using MMap = Eigen::Map<Mat<T>>;

// Adds the (possibly broadcast) mask slice for (b, h) to scores [lq, lk].
template <typename T>
void AddMask(Mat<T>& s, const Tensor& mask, int64_t b, int64_t h) {
  if (!mask.defined()) return;
  const T* base = static_cast<const T*>(mask.raw_data()) + b * mask.stride(0) + h * mask.stride(1);
  const int64_t s2 = mask.stride(2), s3 = mask.stride(3);
  for (int64_t i = 0; i < s.rows(); ++i)
    for (int64_t j = 0; j < s.cols(); ++j) s(i, j) += base[i * s2 + j * s3];
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
  float* pl = lse.data<float>();
  ParallelFor(B * H, 1, [&](int64_t begin, int64_t end) {
    Mat<T> s(lq, lk);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      CMap<T> qm(pq + bh * lq * d, lq, d), km(pk + bh * lk * d, lk, d), vm(pv + bh * lk * dv, lk, dv);
      s.noalias() = (qm * km.transpose()) * static_cast<T>(scale);
      AddMask(s, mask, b, h);
      for (int64_t i = 0; i < lq; ++i) {
        T mx = s.row(i).maxCoeff();
        if (std::isinf(mx) && mx < 0) {  // every key masked: output 0, lse = -inf
          s.row(i).setZero();
          pl[bh * lq + i] = -std::numeric_limits<float>::infinity();
          continue;
        }
        s.row(i) = (s.row(i).array() - mx).exp();
        T sum = s.row(i).sum();
        s.row(i) /= sum;
        pl[bh * lq + i] = static_cast<float>(mx + std::log(sum));
      }
      MMap<T>(po + bh * lq * dv, lq, dv).noalias() = s * vm;
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
  ParallelFor(B * H, 1, [&](int64_t begin, int64_t end) {
    Mat<T> p(lq, lk), dp(lq, lk);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      CMap<T> qm(pq + bh * lq * d, lq, d), km(pk + bh * lk * d, lk, d), vm(pv + bh * lk * dv, lk, dv);
      CMap<T> dom(pdo + bh * lq * dv, lq, dv), om(po + bh * lq * dv, lq, dv);
      // Recompute the probabilities (in the working precision, like the forward).
      p.noalias() = (qm * km.transpose()) * static_cast<T>(scale);
      AddMask(p, mask, b, h);
      for (int64_t i = 0; i < lq; ++i) {
        T mx = p.row(i).maxCoeff();
        if (std::isinf(mx) && mx < 0) {
          p.row(i).setZero();
          continue;
        }
        p.row(i) = (p.row(i).array() - mx).exp();
        p.row(i) /= p.row(i).sum();
      }
      MMap<T>(static_cast<T*>(dvt.raw_data()) + bh * lk * dv, lk, dv).noalias() = p.transpose() * dom;
      dp.noalias() = dom * vm.transpose();
      Eigen::Matrix<T, Eigen::Dynamic, 1> delta = (dom.array() * om.array()).rowwise().sum();
      dp = (p.array() * (dp.array().colwise() - delta.array())).matrix() * static_cast<T>(scale);
      MMap<T>(static_cast<T*>(dq.raw_data()) + bh * lq * d, lq, d).noalias() = dp * km;
      MMap<T>(static_cast<T*>(dk.raw_data()) + bh * lk * d, lk, d).noalias() = dp.transpose() * qm;
    }
  });
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
  ops::AttentionResult r = AttentionTyped<float>(F32(q), F32(k), F32(v), mask.defined() ? ops::Cast(mask, kF32) : mask, scale);
  r.out = ops::Cast(r.out, q.dtype());
  return r;
}

ops::AttentionGrads AttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                      const Tensor& v, const Tensor& mask, double scale,
                                      const Tensor& out, const Tensor&) {
  if (q.dtype() == kF64) return AttentionBackwardTyped<double>(dout, q, k, v, mask, scale, out);
  if (q.dtype() == kF32) return AttentionBackwardTyped<float>(dout, q, k, v, mask, scale, out);
  ops::AttentionGrads g = AttentionBackwardTyped<float>(
      F32(dout), F32(q), F32(k), F32(v), mask.defined() ? ops::Cast(mask, kF32) : mask, scale, F32(out));
  return {ops::Cast(g.dq, q.dtype()), ops::Cast(g.dk, q.dtype()), ops::Cast(g.dv, q.dtype())};
}

Tensor Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout,
            bool inverse) {
  if (x.dtype() == kF64) return RopeTyped<double>(x, cos, sin, layout, inverse);
  if (x.dtype() == kF32) return RopeTyped<float>(x, cos, sin, layout, inverse);
  return ops::Cast(RopeTyped<float>(F32(x), F32(cos), F32(sin), layout, inverse), x.dtype());
}

}  // namespace sdpo::cpu
