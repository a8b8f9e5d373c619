// LayerNorm / RMSNorm forward and backward over rows [rows, D]. Statistics in double.
#include <Eigen/Core>
#include <cmath>

#include "tensor/cpu/cpu_kernels.h"
#include "tensor/ops.h"
#include "tensor/thread_pool.h"

namespace sdpo::cpu {
namespace {

// The data of an optional parameter, which the caller has made contiguous and of type T (a
// temporary contiguous copy made here would be freed before the pointer is used).
template <typename T>
const T* OptPtr(const Tensor& t) {
  if (!t.defined()) return nullptr;
  SDPO_CHECK(t.is_contiguous(), "norm parameter ", t.str(), " must be contiguous");
  return t.data<T>();
}

// Sums per-thread partial column sums (deterministic order over chunk index).
struct ColumnSums {
  ColumnSums(int chunks, int64_t d) : parts(chunks, std::vector<double>(d, 0.0)) {}
  std::vector<std::vector<double>> parts;
  std::vector<double> Total() const {
    std::vector<double> t(parts[0].size(), 0.0);
    for (const auto& p : parts)
      for (size_t i = 0; i < t.size(); ++i) t[i] += p[i];
    return t;
  }
};

template <typename T>
Tensor VectorToTensor(const std::vector<double>& v, DType dtype) {
  return Tensor::FromVector(v, {static_cast<int64_t>(v.size())}, dtype);
}

// Runs fn(chunk, begin, end) over row chunks with a fixed chunking (independent of threads).
template <typename Fn>
int ForRowChunks(int64_t rows, Fn fn) {
  const int64_t chunk = 64;
  int64_t chunks = (rows + chunk - 1) / chunk;
  ParallelFor(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) fn(static_cast<int>(c), c * chunk, std::min(rows, (c + 1) * chunk));
  });
  return static_cast<int>(chunks);
}

template <typename T>
ops::NormResult LayerNormTyped(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               double eps) {
  const int64_t rows = x.size(0), d = x.size(1);
  Tensor out = Tensor::Empty(x.shape(), x.dtype());
  DType stat = x.dtype() == kF64 ? kF64 : kF32;
  Tensor mean = Tensor::Empty({rows}, stat), rstd = Tensor::Empty({rows}, stat);
  const T* px = static_cast<const T*>(x.raw_data());
  const T* w = OptPtr<T>(weight);
  const T* b = OptPtr<T>(bias);
  T* po = static_cast<T*>(out.raw_data());
  ForRowChunks(rows, [&](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      // Vectorised row statistics in the working precision (two passes, Eigen's tree sums).
      Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> xr(px + r * d, d);
      Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> yr(po + r * d, d);
      const T mu_t = xr.sum() / static_cast<T>(d);
      const T var_t = (xr - mu_t).square().sum() / static_cast<T>(d);
      const double mu = mu_t;
      const double rs = 1.0 / std::sqrt(static_cast<double>(var_t) + eps);
      yr = (xr - mu_t) * static_cast<T>(rs);
      if (w) yr *= Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(w, d);
      if (b) yr += Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(b, d);
      if (stat == kF64) {
        mean.data<double>()[r] = mu;
        rstd.data<double>()[r] = rs;
      } else {
        mean.data<float>()[r] = static_cast<float>(mu);
        rstd.data<float>()[r] = static_cast<float>(rs);
      }
    }
  });
  return {out, mean, rstd};
}

template <typename T>
ops::NormGrads LayerNormBackwardTyped(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                      const Tensor& mean, const Tensor& rstd, bool need_bias) {
  const int64_t rows = x.size(0), d = x.size(1);
  Tensor dx = Tensor::Empty(x.shape(), x.dtype());
  std::vector<double> mu = ops::Cast(mean, kF64).ToVector();  // small: one value per row
  std::vector<double> rs = ops::Cast(rstd, kF64).ToVector();
  const T* px = static_cast<const T*>(x.raw_data());
  const T* pdy = static_cast<const T*>(dy.raw_data());
  const T* w = OptPtr<T>(weight);
  T* pdx = static_cast<T*>(dx.raw_data());
  int64_t chunks = (rows + 63) / 64;
  ColumnSums dw(static_cast<int>(std::max<int64_t>(chunks, 1)), d);
  ColumnSums db(static_cast<int>(std::max<int64_t>(chunks, 1)), d);
  ForRowChunks(rows, [&](int c, int64_t r0, int64_t r1) {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    Arr dwc = Arr::Zero(d), dbc = Arr::Zero(d), xhat(d), g(d);
    for (int64_t r = r0; r < r1; ++r) {
      Eigen::Map<const Arr> xr(px + r * d, d), gr(pdy + r * d, d);
      const T m = static_cast<T>(mu[r]), s = static_cast<T>(rs[r]);
      xhat = (xr - m) * s;
      if (w) {
        g = gr * Eigen::Map<const Arr>(w, d);
      } else {
        g = gr;
      }
      const T mean_g = g.sum() / static_cast<T>(d);
      const T mean_gx = (g * xhat).sum() / static_cast<T>(d);
      dwc += gr * xhat;
      dbc += gr;
      Eigen::Map<Arr>(pdx + r * d, d) = s * (g - mean_g - xhat * mean_gx);
    }
    for (int64_t i = 0; i < d; ++i) {
      dw.parts[c][i] = dwc[i];
      db.parts[c][i] = dbc[i];
    }
  });
  ops::NormGrads grads;
  grads.dx = dx;
  if (weight.defined()) grads.dweight = VectorToTensor<T>(dw.Total(), x.dtype());
  if (need_bias) grads.dbias = VectorToTensor<T>(db.Total(), x.dtype());
  return grads;
}

template <typename T>
ops::NormResult RmsNormTyped(const Tensor& x, const Tensor& weight, double eps) {
  const int64_t rows = x.size(0), d = x.size(1);
  Tensor out = Tensor::Empty(x.shape(), x.dtype());
  DType stat = x.dtype() == kF64 ? kF64 : kF32;
  Tensor rstd = Tensor::Empty({rows}, stat);
  const T* px = static_cast<const T*>(x.raw_data());
  const T* w = OptPtr<T>(weight);
  T* po = static_cast<T*>(out.raw_data());
  ForRowChunks(rows, [&](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* row = px + r * d;
      double ss = 0;
      for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(row[i]) * row[i];
      double rs = 1.0 / std::sqrt(ss / d + eps);
      for (int64_t i = 0; i < d; ++i) {
        double y = row[i] * rs;
        if (w) y *= w[i];
        po[r * d + i] = static_cast<T>(y);
      }
      if (stat == kF64) {
        rstd.data<double>()[r] = rs;
      } else {
        rstd.data<float>()[r] = static_cast<float>(rs);
      }
    }
  });
  return {out, Tensor(), rstd};
}

template <typename T>
ops::NormGrads RmsNormBackwardTyped(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                    const Tensor& rstd) {
  const int64_t rows = x.size(0), d = x.size(1);
  Tensor dx = Tensor::Empty(x.shape(), x.dtype());
  std::vector<double> rs = ops::Cast(rstd, kF64).ToVector();
  const T* px = static_cast<const T*>(x.raw_data());
  const T* pdy = static_cast<const T*>(dy.raw_data());
  const T* w = OptPtr<T>(weight);
  T* pdx = static_cast<T*>(dx.raw_data());
  int64_t chunks = std::max<int64_t>((rows + 63) / 64, 1);
  ColumnSums dw(static_cast<int>(chunks), d);
  ForRowChunks(rows, [&](int c, int64_t r0, int64_t r1) {
    std::vector<double>& dwc = dw.parts[c];
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = px + r * d;
      const T* gr = pdy + r * d;
      double sum_gx = 0;
      for (int64_t i = 0; i < d; ++i) {
        double xhat = xr[i] * rs[r];
        double g = w ? gr[i] * static_cast<double>(w[i]) : gr[i];
        sum_gx += g * xhat;
        dwc[i] += gr[i] * xhat;
      }
      sum_gx /= d;
      for (int64_t i = 0; i < d; ++i) {
        double xhat = xr[i] * rs[r];
        double g = w ? gr[i] * static_cast<double>(w[i]) : gr[i];
        pdx[r * d + i] = static_cast<T>(rs[r] * (g - xhat * sum_gx));
      }
    }
  });
  ops::NormGrads grads;
  grads.dx = dx;
  if (weight.defined()) grads.dweight = VectorToTensor<T>(dw.Total(), x.dtype());
  return grads;
}

// bf16/f16 run in f32 and are cast back; parameters are made contiguous f32 / f64.
Tensor F32(const Tensor& t) { return t.defined() ? ops::Contiguous(ops::Cast(t, kF32)) : t; }
Tensor F64(const Tensor& t) { return t.defined() ? ops::Contiguous(ops::Cast(t, kF64)) : t; }
Tensor Back(const Tensor& t, DType dtype) { return t.defined() ? ops::Cast(t, dtype) : t; }

}  // namespace

ops::NormResult LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  if (x.dtype() == kF64) return LayerNormTyped<double>(F64(x), F64(weight), F64(bias), eps);
  ops::NormResult r = LayerNormTyped<float>(F32(x), F32(weight), F32(bias), eps);
  r.out = Back(r.out, x.dtype());
  return r;
}

ops::NormGrads LayerNormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                 const Tensor& mean, const Tensor& rstd, bool need_bias_grad) {
  if (x.dtype() == kF64) {
    return LayerNormBackwardTyped<double>(F64(dy), F64(x), F64(weight), mean, rstd,
                                          need_bias_grad);
  }
  ops::NormGrads g =
      LayerNormBackwardTyped<float>(F32(dy), F32(x), F32(weight), mean, rstd, need_bias_grad);
  return {Back(g.dx, x.dtype()), Back(g.dweight, x.dtype()), Back(g.dbias, x.dtype())};
}

// The oracle of the fused LayerNorm + AdaLN modulation: LayerNorm in the compute type, then
// y * (1 + scale) + shift in the compute type (as nn::Modulate composes it), rounded once.
ops::NormResult LayerNormModulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                  int64_t rows_per_batch, double eps) {
  const DType c = x.dtype() == kF64 ? kF64 : kF32;
  const int64_t rows = x.size(0), d = x.size(1), batches = shift.size(0);
  ops::NormResult r = c == kF64 ? LayerNormTyped<double>(F64(x), Tensor(), Tensor(), eps)
                                : LayerNormTyped<float>(F32(x), Tensor(), Tensor(), eps);
  Tensor y = ops::View(r.out, {batches, rows_per_batch, d});
  Tensor sc = ops::Reshape(ops::Cast(scale, c), {batches, 1, d});
  Tensor sh = ops::Reshape(ops::Cast(shift, c), {batches, 1, d});
  r.out = ops::View(ops::Cast(ops::Add(ops::Mul(y, ops::AddScalar(sc, 1.0)), sh), x.dtype()),
                    {rows, d});
  return r;
}

ops::NormModulateGrads LayerNormModulateBackward(const Tensor& dy, const Tensor& x,
                                                 const Tensor& scale, const Tensor& mean,
                                                 const Tensor& rstd, int64_t rows_per_batch) {
  const DType c = x.dtype() == kF64 ? kF64 : kF32;
  const int64_t rows = x.size(0), d = x.size(1), batches = scale.size(0);
  const Tensor xc = c == kF64 ? F64(x) : F32(x);
  const Shape b3 = {batches, rows_per_batch, d};
  Tensor g = ops::View(ops::Contiguous(ops::Cast(dy, c)), b3);
  Tensor xn = ops::View(ops::Mul(ops::Sub(xc, ops::Reshape(ops::Cast(mean, c), {rows, 1})),
                                 ops::Reshape(ops::Cast(rstd, c), {rows, 1})),
                        b3);
  Tensor dshift = ops::Sum(g, {1}), dscale = ops::Sum(ops::Mul(g, xn), {1});
  Tensor dy_norm = ops::View(
      ops::Mul(g, ops::AddScalar(ops::Reshape(ops::Cast(scale, c), {batches, 1, d}), 1.0)),
      {rows, d});
  ops::NormGrads n =
      c == kF64
          ? LayerNormBackwardTyped<double>(dy_norm, xc, Tensor(), mean, rstd, false)
          : LayerNormBackwardTyped<float>(dy_norm, xc, Tensor(), mean, rstd, false);
  return {ops::Cast(n.dx, x.dtype()), ops::Cast(dshift, x.dtype()),
          ops::Cast(dscale, x.dtype())};
}

ops::NormResult RmsNorm(const Tensor& x, const Tensor& weight, double eps) {
  if (x.dtype() == kF64) return RmsNormTyped<double>(F64(x), F64(weight), eps);
  ops::NormResult r = RmsNormTyped<float>(F32(x), F32(weight), eps);
  r.out = Back(r.out, x.dtype());
  return r;
}

ops::NormGrads RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                               const Tensor& rstd) {
  if (x.dtype() == kF64) return RmsNormBackwardTyped<double>(F64(dy), F64(x), F64(weight), rstd);
  ops::NormGrads g = RmsNormBackwardTyped<float>(F32(dy), F32(x), F32(weight), rstd);
  return {Back(g.dx, x.dtype()), Back(g.dweight, x.dtype()), Tensor()};
}

}  // namespace sdpo::cpu
