// Convolution, nearest upsampling, padding and the channel RMS norm against direct f64 loops on
// awkward shapes (odd sizes, stride 2, asymmetric padding, one-frame clips, cached history,
// several row tiles). Tolerances are the rounding bounds of each computation: a sum of K products
// in precision u is within K*u/(1-K*u) * sum|products| of the exact value (Higham, eq. 3.5), plus
// one rounding of the output to its dtype.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tensor/ops.h"
#include "tests/tensor/test_util.h"

namespace sdpo {
namespace {

using testing::ErrorMessage;
using testing::RandomTensor;

struct Reference {
  std::vector<double> value;  // the exact (f64) convolution
  std::vector<double> bound;  // sum of |products| (and |bias|) per output element
  Shape shape;
};

// Direct convolution of concat(history, x) in f64, with the zero padding of `o`.
Reference NaiveConv3d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                      const ops::Conv3dOptions& o) {
  Tensor input = o.history.defined() ? ops::Concat({o.history, x}, 2) : x;
  const std::vector<double> in = input.ToVector(), w = weight.ToVector();
  const std::vector<double> bv = bias.defined() ? bias.ToVector() : std::vector<double>();
  const int64_t B = input.size(0), ci = input.size(1), T = input.size(2), H = input.size(3),
                W = input.size(4);
  const int64_t co = weight.size(0), kt = weight.size(2), kh = weight.size(3), kw = weight.size(4);
  const auto& p = o.padding;
  const auto& s = o.stride;
  const int64_t to = (T + p[0] + p[1] - kt) / s[0] + 1, ho = (H + p[2] + p[3] - kh) / s[1] + 1,
                wo = (W + p[4] + p[5] - kw) / s[2] + 1;
  Reference r;
  r.shape = {B, co, to, ho, wo};
  r.value.assign(NumElements(r.shape), 0.0);
  r.bound.assign(NumElements(r.shape), 0.0);
  int64_t idx = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < co; ++c)
      for (int64_t t = 0; t < to; ++t)
        for (int64_t y = 0; y < ho; ++y)
          for (int64_t xo = 0; xo < wo; ++xo, ++idx) {
            double sum = bv.empty() ? 0.0 : bv[c], abs = bv.empty() ? 0.0 : std::fabs(bv[c]);
            for (int64_t k = 0; k < ci; ++k)
              for (int64_t dt = 0; dt < kt; ++dt)
                for (int64_t dy = 0; dy < kh; ++dy)
                  for (int64_t dx = 0; dx < kw; ++dx) {
                    const int64_t it = t * s[0] - p[0] + dt, iy = y * s[1] - p[2] + dy,
                                  ix = xo * s[2] - p[4] + dx;
                    if (it < 0 || it >= T || iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                    const double a = in[(((b * ci + k) * T + it) * H + iy) * W + ix];
                    const double ww = w[(((c * ci + k) * kt + dt) * kh + dy) * kw + dx];
                    sum += a * ww;
                    abs += std::fabs(a * ww);
                  }
            r.value[idx] = sum;
            r.bound[idx] = abs;
          }
  return r;
}

double UnitRoundoff(DType dtype) {
  switch (dtype) {
    case DType::kF64:
      return std::ldexp(1.0, -53);
    case DType::kF32:
      return std::ldexp(1.0, -24);
    case DType::kBF16:
      return std::ldexp(1.0, -8);
    default:
      return std::ldexp(1.0, -11);  // f16
  }
}

// Every element within the accumulation bound (in the compute precision: f32 for bf16/f16) of
// the exact value, plus one rounding to the output dtype.
void ExpectWithinBound(const Tensor& out, const Reference& ref, int64_t k_terms) {
  ASSERT_EQ(out.shape(), ref.shape);
  const DType compute = out.dtype() == kF64 ? kF64 : kF32;
  const double u = UnitRoundoff(compute), gamma = (k_terms + 1) * u / (1 - (k_terms + 1) * u);
  const double u_out = out.dtype() == compute ? 0.0 : UnitRoundoff(out.dtype());
  const std::vector<double> got = out.ToVector();
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol =
        gamma * ref.bound[i] + u_out * std::fabs(ref.value[i]) * (1 + gamma) + 1e-300;
    if (std::fabs(got[i] - ref.value[i]) > tol) {
      if (bad++ < 5) {
        ADD_FAILURE() << "element " << i << ": " << got[i] << " vs exact " << ref.value[i]
                      << " (tolerance " << tol << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0) << "of " << got.size() << " elements in " << out.str();
}

struct ConvCase {
  const char* name;
  Shape x, weight;
  std::array<int64_t, 3> stride;
  std::array<int64_t, 6> padding;
  int64_t history_frames;
};

class Conv3dTest : public ::testing::TestWithParam<DType> {};

TEST_P(Conv3dTest, MatchesDirectLoopsOnAwkwardShapes) {
  const DType dtype = GetParam();
  const ConvCase cases[] = {
      {"causal 3x3x3, odd sizes, batch 2",
       {2, 3, 3, 7, 5},
       {5, 3, 3, 3, 3},
       {1, 1, 1},
       {2, 0, 1, 1, 1, 1},
       0},
      {"causal, one-frame clip",
       {1, 4, 1, 5, 6},
       {3, 4, 3, 3, 3},
       {1, 1, 1},
       {2, 0, 1, 1, 1, 1},
       0},
      {"causal with a 2-frame history",
       {1, 3, 2, 5, 4},
       {4, 3, 3, 3, 3},
       {1, 1, 1},
       {0, 0, 1, 1, 1, 1},
       2},
      {"causal with a 1-frame history and 1 padded frame",
       {2, 3, 1, 4, 5},
       {2, 3, 3, 3, 3},
       {1, 1, 1},
       {1, 0, 1, 1, 1, 1},
       1},
      {"pointwise 1x1x1, batch 2",
       {2, 5, 3, 3, 7},
       {6, 5, 1, 1, 1},
       {1, 1, 1},
       {0, 0, 0, 0, 0, 0},
       0},
      {"time conv (3,1,1) stride 2",
       {1, 4, 7, 3, 5},
       {4, 4, 3, 1, 1},
       {2, 1, 1},
       {0, 0, 0, 0, 0, 0},
       0},
      {"time conv (3,1,1) causal, 1-frame history",
       {1, 3, 2, 3, 3},
       {6, 3, 3, 1, 1},
       {1, 1, 1},
       {1, 0, 0, 0, 0, 0},
       1},
      {"spatial 3x3 stride 2, right/bottom pad 1, odd",
       {1, 3, 2, 9, 7},
       {4, 3, 1, 3, 3},
       {1, 2, 2},
       {0, 0, 0, 1, 0, 1},
       0},
      {"spatial 3x3 stride 2, even",
       {1, 2, 1, 8, 6},
       {3, 2, 1, 3, 3},
       {1, 2, 2},
       {0, 0, 0, 1, 0, 1},
       0},
      {"mixed strides and asymmetric padding",
       {1, 2, 5, 6, 7},
       {3, 2, 2, 3, 2},
       {2, 1, 3},
       {1, 2, 0, 2, 3, 1},
       0},
  };
  uint64_t seed = 100;
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(c.name);
    Tensor x = RandomTensor(c.x, ++seed, dtype);
    Tensor w = RandomTensor(c.weight, ++seed, dtype);
    Tensor b = RandomTensor({c.weight[0]}, ++seed, dtype);
    ops::Conv3dOptions o;
    o.stride = c.stride;
    o.padding = c.padding;
    if (c.history_frames > 0) {
      Shape hs = c.x;
      hs[2] = c.history_frames;
      o.history = RandomTensor(hs, ++seed, dtype);
    }
    Tensor out = ops::Conv3d(x, w, b, o);
    EXPECT_EQ(out.dtype(), dtype);
    ExpectWithinBound(out, NaiveConv3d(x, w, b, o),
                      c.weight[1] * c.weight[2] * c.weight[3] * c.weight[4]);
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, Conv3dTest, ::testing::Values(kF64, kF32, kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(Conv3dTiles, ManyRowTilesAndNoBiasMatchDirectLoops) {
  // Stride 1: 302 padded columns per row and about 4096 columns per tile give 3 bands of 10
  // output rows. Stride 2 (im2col): K = 64 * 9 = 576 and 150 output columns give a 16 Mi-element
  // column budget of 48 rows, so the 50 output rows take two tiles (the second one partial).
  Tensor w = RandomTensor({3, 64, 3, 3, 3}, 8, kF32);
  Tensor x = RandomTensor({1, 64, 1, 30, 300}, 7, kF32);
  ops::Conv3dOptions o;
  o.padding = {2, 0, 1, 1, 1, 1};
  Tensor out = ops::Conv3d(x, w, Tensor(), o);
  ExpectWithinBound(out, NaiveConv3d(x, w, Tensor(), o), 64 * 27);

  Tensor w2 = RandomTensor({3, 64, 1, 3, 3}, 9, kF32);
  Tensor x2 = RandomTensor({1, 64, 1, 100, 300}, 10, kF32);
  ops::Conv3dOptions s2;
  s2.stride = {1, 2, 2};
  s2.padding = {0, 0, 0, 1, 0, 1};
  Tensor out2 = ops::Conv3d(x2, w2, Tensor(), s2);
  ASSERT_EQ(out2.shape(), (Shape{1, 3, 1, 50, 150}));
  ExpectWithinBound(out2, NaiveConv3d(x2, w2, Tensor(), s2), 64 * 9);
}

TEST(Conv3dUpsampledInput, EqualsConvolvingTheMaterialisedUpsampling) {
  struct Case {
    const char* name;
    Shape x, weight;
    std::array<int64_t, 6> padding;
  };
  const Case cases[] = {
      {"the VAE's 3x3 per frame, 3 frames", {1, 5, 3, 4, 7}, {4, 5, 1, 3, 3}, {0, 0, 1, 1, 1, 1}},
      {"causal 3x3x3, batch 2, odd sizes", {2, 3, 2, 3, 5}, {2, 3, 3, 3, 3}, {2, 0, 1, 1, 1, 1}},
      {"1x1 with asymmetric padding", {1, 4, 1, 3, 3}, {3, 4, 1, 1, 1}, {0, 0, 0, 2, 1, 0}},
  };
  uint64_t seed = 300;
  for (DType dtype : {kF64, kF32, kBF16}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(DTypeName(dtype)) + " " + c.name);
      Tensor x = RandomTensor(c.x, ++seed, dtype);
      Tensor w = RandomTensor(c.weight, ++seed, dtype);
      Tensor b = RandomTensor({c.weight[0]}, ++seed, dtype);
      ops::Conv3dOptions o;
      o.padding = c.padding;
      ops::Conv3dOptions fused = o;
      fused.upsample_input = true;
      ExpectWithinBound(ops::Conv3d(x, w, b, fused),
                        NaiveConv3d(ops::UpsampleNearest2x(x), w, b, o),
                        c.weight[1] * c.weight[2] * c.weight[3] * c.weight[4]);
    }
  }
  ops::Conv3dOptions strided;
  strided.upsample_input = true;
  strided.stride = {1, 2, 2};
  EXPECT_NE(ErrorMessage([&] {
              ops::Conv3d(RandomTensor({1, 2, 1, 3, 3}, 1), RandomTensor({2, 2, 1, 1, 1}, 2),
                          Tensor(), strided);
            }).find("an upsampled input takes no history and spatial strides 1"),
            std::string::npos);
}

TEST(Conv3dHistory, EqualsConvolvingTheConcatenation) {
  Tensor x = RandomTensor({1, 3, 3, 4, 4}, 11, kF64);
  Tensor h = RandomTensor({1, 3, 2, 4, 4}, 12, kF64);
  Tensor w = RandomTensor({2, 3, 3, 3, 3}, 13, kF64);
  ops::Conv3dOptions with_history;
  with_history.padding = {0, 0, 1, 1, 1, 1};
  with_history.history = h;
  ops::Conv3dOptions plain;
  plain.padding = {0, 0, 1, 1, 1, 1};
  EXPECT_TRUE(testing::AllClose(ops::Conv3d(x, w, Tensor(), with_history),
                                ops::Conv3d(ops::Concat({h, x}, 2), w, Tensor(), plain), 0, 0));
}

TEST(Conv2d, IsConv3dPerFrame) {
  Tensor x = RandomTensor({2, 3, 9, 6}, 21, kF64);
  Tensor w = RandomTensor({4, 3, 3, 3}, 22, kF64);
  Tensor b = RandomTensor({4}, 23, kF64);
  Tensor out = ops::Conv2d(x, w, b, {2, 2}, {0, 1, 0, 1});
  ASSERT_EQ(out.shape(), (Shape{2, 4, 4, 3}));  // floor((9 + 1 - 3) / 2) + 1, (6 + 1 - 3) / 2 + 1
  ops::Conv3dOptions o;
  o.stride = {1, 2, 2};
  o.padding = {0, 0, 0, 1, 0, 1};
  Reference ref = NaiveConv3d(ops::Unsqueeze(x, 2), ops::Unsqueeze(w, 2), b, o);
  ExpectWithinBound(ops::Unsqueeze(out, 2), ref, 27);
}

TEST(Conv3dErrors, NameTheShapes) {
  Tensor x = RandomTensor({1, 3, 2, 4, 4}, 1, kF32);
  EXPECT_NE(ErrorMessage([&] {
              ops::Conv3d(x, RandomTensor({2, 4, 1, 1, 1}, 2), Tensor());
            }).find("weight must be [Cout, 3"),
            std::string::npos);
  EXPECT_NE(ErrorMessage([&] {
              ops::Conv3d(x, RandomTensor({2, 3, 3, 1, 1}, 2), Tensor());
            }).find("time size 2 is smaller than the kernel's 3"),
            std::string::npos);
  ops::Conv3dOptions o;
  o.history = RandomTensor({1, 3, 2, 4, 5}, 3);
  EXPECT_NE(ErrorMessage([&] {
              ops::Conv3d(x, RandomTensor({2, 3, 1, 1, 1}, 2), Tensor(), o);
            }).find("history must be"),
            std::string::npos);
  EXPECT_NE(ErrorMessage([&] {
              ops::Conv3d(x, RandomTensor({2, 3, 1, 1, 1}, 2), RandomTensor({3}, 4));
            }).find("bias must be [2]"),
            std::string::npos);
  ops::Conv3dOptions bad_stride;
  bad_stride.stride = {0, 1, 1};
  EXPECT_NE(ErrorMessage([&] {
              ops::Conv3d(x, RandomTensor({2, 3, 1, 1, 1}, 2), Tensor(), bad_stride);
            }).find("strides must be >= 1"),
            std::string::npos);
}

TEST(UpsampleNearest2x, RepeatsEveryValueTwoByTwo) {
  for (DType dtype : {kF64, kF32, kBF16}) {
    Tensor x = RandomTensor({2, 3, 3, 5}, 31, dtype);
    Tensor y = ops::UpsampleNearest2x(x);
    ASSERT_EQ(y.shape(), (Shape{2, 3, 6, 10}));
    for (int64_t n = 0; n < 6; ++n)
      for (int64_t i = 0; i < 6; ++i)
        for (int64_t j = 0; j < 10; ++j)
          ASSERT_EQ(y.at({n / 3, n % 3, i, j}), x.at({n / 3, n % 3, i / 2, j / 2}));
  }
  // Non-contiguous input (a transposed view).
  Tensor x = RandomTensor({4, 3}, 32, kF32);
  Tensor y = ops::UpsampleNearest2x(ops::Transpose(x, 0, 1));
  EXPECT_EQ(y.at({5, 7}), x.at({3, 2}));
}

TEST(Pad, PlacesTheInputAndFillsTheRest) {
  Tensor x = RandomTensor({2, 3, 4}, 41, kF32);
  Tensor y = ops::Pad(x, {{1, 0}, {0, 2}}, -3.0);  // the last two dims
  ASSERT_EQ(y.shape(), (Shape{2, 4, 6}));
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 6; ++j) {
        const bool inside = i >= 1 && j < 4;
        EXPECT_EQ(y.at({a, i, j}), inside ? x.at({a, i - 1, j}) : -3.0);
      }
  EXPECT_NE(ErrorMessage([&] {
              ops::Pad(x, {{-1, 0}});
            }).find("negative padding"),
            std::string::npos);
}

// x / max(||x||, eps) * sqrt(C) * gamma over dim 1, then SiLU when asked; in f64.
std::vector<double> NaiveChannelRms(const Tensor& x, const Tensor& gamma, double eps, bool silu) {
  const std::vector<double> v = x.ToVector(), g = gamma.ToVector();
  const int64_t outer = x.size(0), c = x.size(1), inner = x.numel() / (outer * c);
  std::vector<double> out(v.size());
  for (int64_t b = 0; b < outer; ++b)
    for (int64_t j = 0; j < inner; ++j) {
      double ss = 0;
      for (int64_t k = 0; k < c; ++k) ss += v[(b * c + k) * inner + j] * v[(b * c + k) * inner + j];
      const double denom = std::max(std::sqrt(ss), eps);
      for (int64_t k = 0; k < c; ++k) {
        double y = v[(b * c + k) * inner + j] / denom * std::sqrt(double(c)) * g[k];
        if (silu) y = y / (1 + std::exp(-y));
        out[(b * c + k) * inner + j] = y;
      }
    }
  return out;
}

TEST(ChannelRmsNorm, MatchesTheDefinitionWithAndWithoutSilu) {
  for (DType dtype : {kF64, kF32, kBF16}) {
    for (bool silu : {false, true}) {
      SCOPED_TRACE(std::string(DTypeName(dtype)) + (silu ? " silu" : ""));
      Tensor x = RandomTensor({2, 7, 3, 5, 67}, 51, dtype);  // inner 1005: several blocks
      Tensor gamma = RandomTensor({7, 1, 1, 1}, 52, kF32);
      Tensor y = ops::ChannelRmsNorm(x, gamma, 1e-12, silu);
      ASSERT_EQ(y.dtype(), dtype);
      // f32 statistics: a few roundings of relative size u per step; the output rounding for
      // bf16. Each element is compared relative to its own size (plus the scale of the row).
      const double u = dtype == kF64 ? std::ldexp(1.0, -52) : std::ldexp(1.0, -23);
      const double tol = 8 * u + (dtype == kBF16 ? std::ldexp(1.0, -8) : 0.0);
      EXPECT_TRUE(
          testing::AllClose(y.ToVector(), NaiveChannelRms(x, gamma, 1e-12, silu), tol, tol));
    }
  }
}

TEST(ChannelRmsNormInPlace, WritesTheSameValuesOverTheInput) {
  for (DType dtype : {kF64, kF32, kBF16}) {
    for (bool silu : {false, true}) {
      Tensor x = RandomTensor({2, 7, 3, 5, 67}, 53, dtype);
      Tensor gamma = RandomTensor({7, 1, 1, 1}, 54, kF32);
      Tensor expected = ops::ChannelRmsNorm(x, gamma, 1e-12, silu);
      const Tensor& y = ops::ChannelRmsNormInPlace(x, gamma, 1e-12, silu);
      EXPECT_EQ(y.raw_data(), x.raw_data());
      EXPECT_TRUE(testing::AllClose(x, expected, 0, 0)) << DTypeName(dtype) << " silu " << silu;
    }
  }
  Tensor t = ops::Transpose(RandomTensor({3, 4}, 55, kF32), 0, 1);
  EXPECT_NE(ErrorMessage([&] {
              ops::ChannelRmsNormInPlace(t, Tensor::Ones({3}), 1e-12);
            }).find("must be contiguous"),
            std::string::npos);
}

TEST(ChannelRmsNorm, EpsBoundsTheNormOfAZeroPosition) {
  Tensor x = Tensor::Zeros({1, 4, 3}, kF32);
  Tensor y = ops::ChannelRmsNorm(x, Tensor::Ones({4}), 1e-12);
  for (double v : y.ToVector()) EXPECT_EQ(v, 0.0);
  EXPECT_NE(ErrorMessage([&] {
              ops::ChannelRmsNorm(x, Tensor::Ones({3}), 1e-12);
            }).find("gamma must hold 4 values"),
            std::string::npos);
}

}  // namespace
}  // namespace sdpo
