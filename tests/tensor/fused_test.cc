// Fused forward ops against naive loops: layer norm (with / without affine), RMS norm,
// scaled dot-product attention (with and without masks, including a fully masked row), and
// rotary embeddings in both layouts (inverse(rope(x)) == x).
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"
#include "tests/tensor/test_util.h"

namespace sdpo {
namespace {

using sdpo::testing::AllClose;
using sdpo::testing::BitEqual;
using sdpo::testing::BroadcastIndex;
using sdpo::testing::ErrorMessage;
using sdpo::testing::RandomTensor;
using sdpo::testing::RelL2;
using sdpo::testing::ScopedNumThreads;
using sdpo::testing::Unravel;
using ::testing::HasSubstr;

constexpr double kInf = std::numeric_limits<double>::infinity();

double TolFor(DType dtype) {
  return dtype == kF64 ? 1e-12 : dtype == kF32 ? 2e-5 : dtype == kBF16 ? 2e-2 : 4e-3;
}

// ------------------------------------------------------------------------- norms

struct NormRef {
  std::vector<double> out, mean, rstd;
};

NormRef NaiveNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, bool rms) {
  const int64_t d = x.size(-1), rows = x.numel() / d;
  std::vector<double> xv = x.ToVector();
  std::vector<double> w = weight.defined() ? weight.ToVector() : std::vector<double>(d, 1.0);
  std::vector<double> b = bias.defined() ? bias.ToVector() : std::vector<double>(d, 0.0);
  NormRef r;
  r.out.resize(xv.size());
  for (int64_t row = 0; row < rows; ++row) {
    const double* p = xv.data() + row * d;
    double mu = 0, ss = 0;
    if (!rms) {
      for (int64_t i = 0; i < d; ++i) mu += p[i];
      mu /= d;
    }
    for (int64_t i = 0; i < d; ++i) ss += (p[i] - mu) * (p[i] - mu);
    double rstd = 1 / std::sqrt(ss / d + eps);
    for (int64_t i = 0; i < d; ++i) r.out[row * d + i] = (p[i] - mu) * rstd * w[i] + b[i];
    r.mean.push_back(mu);
    r.rstd.push_back(rstd);
  }
  return r;
}

TEST(LayerNorm, WithAndWithoutAffineMatchesNaiveLoop) {
  for (DType dtype : {kF64, kF32, kBF16, kF16}) {
    // 3 * 70 = 210 rows (several row chunks), D = 33; the input is a strided view whose
    // values are offset by 50 (the two-pass variance must not cancel catastrophically).
    Tensor x = ops::AddScalar(ops::Transpose(RandomTensor({70, 3, 33}, 1, dtype), 0, 1),
                              dtype == kF64 || dtype == kF32 ? 50.0 : 0.0);
    Tensor w = RandomTensor({33}, 2, dtype);
    Tensor b = RandomTensor({33}, 3, dtype);
    for (int affine = 0; affine < 3; ++affine) {  // none, weight only, weight and bias
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " affine ", affine));
      Tensor wt = affine >= 1 ? w : Tensor();
      Tensor bt = affine >= 2 ? b : Tensor();
      ops::NormResult r = ops::LayerNorm(x, wt, bt, 1e-5);
      NormRef ref = NaiveNorm(x, wt, bt, 1e-5, /*rms=*/false);
      EXPECT_EQ(r.out.shape(), x.shape());
      EXPECT_EQ(r.out.dtype(), dtype);
      EXPECT_EQ(r.mean.shape(), Shape({210}));
      EXPECT_EQ(r.rstd.shape(), Shape({210}));
      DType stat = dtype == kF64 ? kF64 : kF32;
      EXPECT_EQ(r.mean.dtype(), stat);
      EXPECT_EQ(r.rstd.dtype(), stat);
      double tol = TolFor(dtype);
      EXPECT_TRUE(AllClose(r.out, ref.out, tol, tol));
      EXPECT_TRUE(AllClose(r.mean, ref.mean, dtype == kF64 ? 1e-14 : 1e-6, 1e-6));
      EXPECT_TRUE(AllClose(r.rstd, ref.rstd, dtype == kF64 ? 1e-12 : 1e-5, 0));
    }
  }
}

TEST(LayerNorm, StridedParametersAndLastDimAndEps) {
  for (DType dtype : {kF64, kF32}) {
    Tensor x = ops::Transpose(RandomTensor({3, 17, 5}, 4, dtype), 1, 2);  // last dim strided
    Tensor w = ops::Slice(RandomTensor({34}, 5, dtype), 0, 0, 34, 2);     // strided weight
    Tensor b = ops::Slice(RandomTensor({17, 2}, 6, dtype), 1, 1, 2);      // [17, 1]...
    b = ops::Select(b, 1, 0);                                             // [17] stride 2
    ops::NormResult r = ops::LayerNorm(x, w, b, 0.5);
    NormRef ref = NaiveNorm(x, w, b, 0.5, false);
    EXPECT_TRUE(AllClose(r.out, ref.out, TolFor(dtype), TolFor(dtype))) << DTypeName(dtype);
    // A constant row normalises to the bias (variance 0 + eps).
    Tensor c = Tensor::Full({2, 17}, 3, dtype);
    EXPECT_TRUE(
        AllClose(ops::LayerNorm(c, w, b, 1e-5).out, ops::Expand(b, {2, 17}).ToVector(), 0, 1e-6));
  }
}

TEST(RmsNorm, WithAndWithoutWeightMatchesNaiveLoop) {
  for (DType dtype : {kF64, kF32, kBF16, kF16}) {
    Tensor x = ops::Transpose(RandomTensor({65, 2, 48}, 7, dtype), 0, 1);  // [2, 65, 48]
    Tensor w = RandomTensor({48}, 8, dtype);
    for (bool weighted : {false, true}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " weighted ", weighted));
      Tensor wt = weighted ? w : Tensor();
      ops::NormResult r = ops::RmsNorm(x, wt, 1e-6);
      NormRef ref = NaiveNorm(x, wt, Tensor(), 1e-6, /*rms=*/true);
      EXPECT_EQ(r.out.shape(), x.shape());
      EXPECT_EQ(r.out.dtype(), dtype);
      EXPECT_FALSE(r.mean.defined());
      EXPECT_EQ(r.rstd.shape(), Shape({130}));
      double tol = TolFor(dtype);
      EXPECT_TRUE(AllClose(r.out, ref.out, tol, tol));
      EXPECT_TRUE(AllClose(r.rstd, ref.rstd, dtype == kF64 ? 1e-12 : 1e-5, 0));
    }
  }
  // Strided f64 weight.
  Tensor x = RandomTensor({4, 6}, 9, kF64);
  Tensor w = ops::Slice(RandomTensor({12}, 10, kF64), 0, 1, 12, 2);
  EXPECT_TRUE(AllClose(ops::RmsNorm(x, w, 1e-6).out, NaiveNorm(x, w, Tensor(), 1e-6, true).out,
                       1e-13, 1e-14));
}

TEST(Norms, OneDInputAndThreadCountIndependence) {
  Tensor v = RandomTensor({10}, 11, kF64);
  EXPECT_TRUE(AllClose(ops::LayerNorm(v, Tensor(), Tensor(), 1e-5).out,
                       NaiveNorm(v, Tensor(), Tensor(), 1e-5, false).out, 1e-12, 1e-12));
  Tensor x = RandomTensor({300, 40}, 12);
  Tensor w = RandomTensor({40}, 13), b = RandomTensor({40}, 14);
  ops::NormResult ref_ln, ref_rms;
  {
    ScopedNumThreads threads(1);
    ref_ln = ops::LayerNorm(x, w, b, 1e-5);
    ref_rms = ops::RmsNorm(x, w, 1e-5);
  }
  for (int n : {2, 3}) {
    ScopedNumThreads threads(n);
    EXPECT_TRUE(BitEqual(ops::LayerNorm(x, w, b, 1e-5).out, ref_ln.out));
    EXPECT_TRUE(BitEqual(ops::RmsNorm(x, w, 1e-5).out, ref_rms.out));
  }
}

// ------------------------------------------------------------------------- attention

struct AttnRef {
  std::vector<double> out, lse;
};

AttnRef NaiveAttention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                       double scale) {
  const int64_t B = q.size(0), H = q.size(1), lq = q.size(2), lk = k.size(2), d = q.size(3),
                dv = v.size(3);
  std::vector<double> qv = q.ToVector(), kv = k.ToVector(), vv = v.ToVector();
  std::vector<double> mv = mask.defined() ? mask.ToVector() : std::vector<double>();
  AttnRef r;
  r.out.assign(B * H * lq * dv, 0.0);
  r.lse.assign(B * H * lq, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < lq; ++i) {
        std::vector<double> s(lk);
        double mx = -kInf;
        for (int64_t j = 0; j < lk; ++j) {
          double dot = 0;
          for (int64_t c = 0; c < d; ++c) {
            dot += qv[((b * H + h) * lq + i) * d + c] * kv[((b * H + h) * lk + j) * d + c];
          }
          s[j] = dot * scale;
          if (mask.defined()) s[j] += mv[BroadcastIndex({b, h, i, j}, mask.shape())];
          mx = std::max(mx, s[j]);
        }
        int64_t row = (b * H + h) * lq + i;
        if (mx == -kInf) {  // every key masked: output 0, lse -inf
          r.lse[row] = -kInf;
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < lk; ++j) sum += std::exp(s[j] - mx);
        r.lse[row] = mx + std::log(sum);
        for (int64_t j = 0; j < lk; ++j) {
          double p = std::exp(s[j] - mx) / sum;
          for (int64_t c = 0; c < dv; ++c) {
            r.out[row * dv + c] += p * vv[((b * H + h) * lk + j) * dv + c];
          }
        }
      }
  return r;
}

// q/k/v as [B, L, H, D] tensors transposed to [B, H, L, D] (the model's layout: strided).
Tensor Bhld(int64_t b, int64_t h, int64_t l, int64_t d, uint64_t seed, DType dtype) {
  return ops::Transpose(RandomTensor({b, l, h, d}, seed, dtype), 1, 2);
}

TEST(Attention, NoMaskMatchesNaiveLoop) {
  struct Case {
    int64_t b, h, lq, lk, d, dv;
  };
  for (const Case& c : {Case{1, 1, 1, 1, 1, 1}, Case{2, 3, 5, 5, 8, 8}, Case{1, 2, 17, 9, 16, 4},
                        Case{2, 1, 3, 65, 7, 11}}) {
    for (DType dtype : {kF64, kF32, kBF16}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " ", c.b, "x", c.h, " lq ", c.lq, " lk ", c.lk,
                                " d ", c.d, " dv ", c.dv));
      Tensor q = Bhld(c.b, c.h, c.lq, c.d, 1, dtype);
      Tensor k = Bhld(c.b, c.h, c.lk, c.d, 2, dtype);
      Tensor v = Bhld(c.b, c.h, c.lk, c.dv, 3, dtype);
      for (std::optional<double> scale : {std::optional<double>(), std::optional<double>(0.3)}) {
        ops::AttentionResult r = ops::Attention(q, k, v, Tensor(), scale);
        AttnRef ref = NaiveAttention(q, k, v, Tensor(), scale.value_or(1 / std::sqrt(c.d)));
        EXPECT_EQ(r.out.shape(), Shape({c.b, c.h, c.lq, c.dv}));
        EXPECT_EQ(r.out.dtype(), dtype);
        EXPECT_EQ(r.lse.shape(), Shape({c.b, c.h, c.lq}));
        EXPECT_EQ(r.lse.dtype(), kF32);
        double tol = TolFor(dtype);
        EXPECT_TRUE(AllClose(r.out, ref.out, tol, tol));
        EXPECT_TRUE(AllClose(r.lse, ref.lse, std::max(tol, 1e-6), std::max(tol, 1e-6)));
      }
    }
  }
}

TEST(Attention, BroadcastMasksAndAFullyMaskedRow) {
  const int64_t B = 2, H = 3, lq = 4, lk = 6, d = 8;
  for (DType dtype : {kF64, kF32, kBF16}) {
    Tensor q = Bhld(B, H, lq, d, 4, dtype), k = Bhld(B, H, lk, d, 5, dtype),
           v = Bhld(B, H, lk, d, 6, dtype);
    // Causal-style [Lq, Lk] mask with row 2 fully masked.
    std::vector<double> m2(lq * lk);
    for (int64_t i = 0; i < lq; ++i)
      for (int64_t j = 0; j < lk; ++j) m2[i * lk + j] = (j > i + 2 || i == 2) ? -kInf : 0.0;
    Tensor causal = Tensor::FromVector(m2, {lq, lk}, dtype);
    // Key padding [B, 1, 1, Lk]: batch 1 ignores the last two keys.
    std::vector<double> pad(B * lk, 0.0);
    pad[lk + 4] = pad[lk + 5] = -kInf;
    Tensor key_pad = Tensor::FromVector(pad, {B, 1, 1, lk}, dtype);
    // A finite additive bias per head [1, H, Lq, Lk] and a full [B, H, Lq, Lk] one.
    Tensor bias = RandomTensor({1, H, lq, lk}, 7, dtype);
    Tensor full = RandomTensor({B, H, lq, lk}, 8, dtype);
    for (const Tensor& mask : {causal, key_pad, bias, full}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " mask ", mask.str()));
      ops::AttentionResult r = ops::Attention(q, k, v, mask, std::nullopt);
      AttnRef ref = NaiveAttention(q, k, v, mask, 1 / std::sqrt(static_cast<double>(d)));
      double tol = TolFor(dtype);
      EXPECT_TRUE(AllClose(r.out, ref.out, tol, tol));
      EXPECT_TRUE(AllClose(r.lse, ref.lse, std::max(tol, 1e-6), std::max(tol, 1e-6)));
    }
    // The fully masked row: output exactly 0, lse -inf, and no NaN anywhere.
    ops::AttentionResult r = ops::Attention(q, k, v, causal, std::nullopt);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        EXPECT_EQ(r.lse.at({b, h, 2}), -kInf);
        for (int64_t c = 0; c < d; ++c) EXPECT_EQ(r.out.at({b, h, 2, c}), 0);
      }
    for (double x : r.out.ToVector()) EXPECT_FALSE(std::isnan(x));
    // A mask of f32 on f64 / bf16 inputs is cast (the mask is additive, any float dtype).
    Tensor m32 = ops::Cast(bias, kF32);
    EXPECT_TRUE(AllClose(ops::Attention(q, k, v, m32, std::nullopt).out,
                         ops::Attention(q, k, v, ops::Cast(m32, dtype), std::nullopt).out, 1e-6,
                         1e-6));
  }
}

TEST(Attention, ThreadCountIndependence) {
  Tensor q = Bhld(2, 3, 33, 16, 1, kF32), k = Bhld(2, 3, 40, 16, 2, kF32),
         v = Bhld(2, 3, 40, 8, 3, kF32);
  ops::AttentionResult ref;
  {
    ScopedNumThreads threads(1);
    ref = ops::Attention(q, k, v, Tensor(), std::nullopt);
  }
  for (int n : {2, 4}) {
    ScopedNumThreads threads(n);
    ops::AttentionResult r = ops::Attention(q, k, v, Tensor(), std::nullopt);
    EXPECT_TRUE(BitEqual(r.out, ref.out));
    EXPECT_TRUE(BitEqual(r.lse, ref.lse));
  }
}

// ------------------------------------------------------------------------- rope

// cos/sin [L, D/2] for angle(l, j) = l * 10000^(-2j / D).
void RopeTables(int64_t l, int64_t d, DType dtype, Tensor* cos, Tensor* sin) {
  std::vector<double> c(l * d / 2), s(l * d / 2);
  for (int64_t p = 0; p < l; ++p)
    for (int64_t j = 0; j < d / 2; ++j) {
      double angle = p * std::pow(10000.0, -2.0 * j / d);
      c[p * d / 2 + j] = std::cos(angle);
      s[p * d / 2 + j] = std::sin(angle);
    }
  *cos = Tensor::FromVector(c, {l, d / 2}, dtype);
  *sin = Tensor::FromVector(s, {l, d / 2}, dtype);
}

std::vector<double> NaiveRope(const Tensor& x, const Tensor& cos, const Tensor& sin,
                              ops::RopeLayout layout, bool inverse) {
  const int64_t l = x.size(-3), h = x.size(-2), d = x.size(-1), half = d / 2;
  std::vector<double> xv = x.ToVector(), cv = cos.ToVector(), sv = sin.ToVector();
  std::vector<double> out(xv.size());
  for (int64_t base = 0; base < x.numel(); base += d) {
    int64_t pos = (base / (h * d)) % l;
    for (int64_t j = 0; j < half; ++j) {
      int64_t i0 = layout == ops::RopeLayout::kInterleaved ? 2 * j : j;
      int64_t i1 = layout == ops::RopeLayout::kInterleaved ? 2 * j + 1 : j + half;
      double c = cv[pos * half + j], s = sv[pos * half + j] * (inverse ? -1 : 1);
      double a = xv[base + i0], b = xv[base + i1];
      out[base + i0] = a * c - b * s;
      out[base + i1] = a * s + b * c;
    }
  }
  return out;
}

TEST(Rope, BothLayoutsMatchNaiveLoopAndInverseIsIdentity) {
  const ops::RopeLayout layouts[] = {ops::RopeLayout::kInterleaved, ops::RopeLayout::kHalfSplit};
  for (DType dtype : {kF64, kF32, kBF16}) {
    for (const Shape& shape : {Shape{7, 3, 8}, Shape{2, 5, 4, 16}, Shape{2, 2, 3, 1, 2}}) {
      const int64_t l = shape[shape.size() - 3], d = shape.back();
      Tensor cos, sin;
      RopeTables(l, d, dtype, &cos, &sin);
      // A strided x: the same values stored with the first two dims swapped.
      Shape swapped = shape;
      std::swap(swapped[0], swapped[1]);
      Tensor x = ops::Transpose(RandomTensor(swapped, 1, dtype), 0, 1);
      for (ops::RopeLayout layout : layouts) {
        SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " ", ShapeStr(shape), " layout ",
                                  static_cast<int>(layout)));
        double tol = TolFor(dtype);
        for (bool inverse : {false, true}) {
          Tensor y = ops::Rope(x, cos, sin, layout, inverse);
          EXPECT_EQ(y.shape(), shape);
          EXPECT_EQ(y.dtype(), dtype);
          EXPECT_TRUE(AllClose(y, NaiveRope(x, cos, sin, layout, inverse), tol, tol));
        }
        Tensor back = ops::Rope(ops::Rope(x, cos, sin, layout), cos, sin, layout, true);
        EXPECT_TRUE(AllClose(back, x, tol * 2, tol * 2));
        if (dtype == kF64) {
          EXPECT_LT(RelL2(back, x), 1e-14);
        }
        // Rotation preserves the norm of every pair.
        EXPECT_NEAR(ops::Sum(ops::Square(ops::Cast(ops::Rope(x, cos, sin, layout), kF64))).item(),
                    ops::Sum(ops::Square(ops::Cast(x, kF64))).item(),
                    dtype == kBF16 ? 0.05 * x.numel() : 1e-5 * x.numel());
      }
    }
  }
}

TEST(Rope, HalfSplitEqualsInterleavedOnPermutedFeatures) {
  // Interleaving the two halves [x0..x(h-1) | xh..x(2h-1)] -> (x0, xh, x1, xh+1, ...) turns the
  // half-split rotation into the interleaved one.
  const int64_t l = 6, h = 2, d = 10;
  Tensor cos, sin;
  RopeTables(l, d, kF64, &cos, &sin);
  Tensor x = RandomTensor({l, h, d}, 2, kF64);
  Tensor halves = ops::View(x, {l, h, 2, d / 2});
  Tensor inter = ops::Reshape(ops::Transpose(halves, 2, 3), {l, h, d});
  Tensor a = ops::Rope(x, cos, sin, ops::RopeLayout::kHalfSplit);
  Tensor b = ops::Rope(inter, cos, sin, ops::RopeLayout::kInterleaved);
  Tensor b_back = ops::Reshape(ops::Transpose(ops::View(b, {l, h, d / 2, 2}), 2, 3), {l, h, d});
  EXPECT_TRUE(AllClose(a, b_back, 0, 0));
  // Position 0 (angle 0) is the identity.
  EXPECT_TRUE(AllClose(ops::Select(a, 0, 0), ops::Select(x, 0, 0), 0, 0));
}

}  // namespace
}  // namespace sdpo
