// ops::GroupNorm against a direct f64 loop on awkward shapes (odd sizes, one channel per group,
// one position per channel, several batch items, a large common offset, a non-contiguous view),
// with and without the affine step and the fused SiLU, in f64, f32 and bf16. The tolerance of
// each element follows the computation: statistics accumulated in f64 over n values (a relative
// error of n * u64 on the mean and the variance), then y = x * a + shift with a and shift rounded
// to the compute precision (f32, f64 for f64): a few roundings of |x * a| + |shift|; SiLU adds
// its slope (< 1.1) times that plus a few roundings of its own; bf16 adds one output rounding.
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tensor/ops.h"
#include "tests/tensor/test_util.h"

namespace sdpo {
namespace {

using testing::ErrorMessage;
using testing::RandomTensor;

struct GroupNormReference {
  std::vector<double> value, tol;
};

GroupNormReference NaiveGroupNorm(const Tensor& x, int64_t groups, const Tensor& weight,
                                  const Tensor& bias, double eps, bool silu, DType out_dtype) {
  const std::vector<double> v = ops::Contiguous(x).ToVector();
  const std::vector<double> w = weight.defined() ? weight.ToVector() : std::vector<double>();
  const std::vector<double> bv = bias.defined() ? bias.ToVector() : std::vector<double>();
  const int64_t batch = x.size(0), c = x.size(1), inner = x.numel() / (batch * c);
  const int64_t per = c / groups, n = per * inner;
  const double u64 = std::ldexp(1.0, -53);
  const double uc = out_dtype == kF64 ? u64 : std::ldexp(1.0, -24);
  const double uo = out_dtype == kBF16 ? std::ldexp(1.0, -8) : 0.0;
  GroupNormReference r;
  r.value.resize(v.size());
  r.tol.resize(v.size());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t base = (b * c + g * per) * inner;
      double mean = 0, mean_abs = 0, var = 0;
      for (int64_t i = 0; i < n; ++i) mean += v[base + i] / n;
      for (int64_t i = 0; i < n; ++i) mean_abs += std::fabs(v[base + i]) / n;
      for (int64_t i = 0; i < n; ++i) var += (v[base + i] - mean) * (v[base + i] - mean) / n;
      const double rstd = 1 / std::sqrt(var + eps);
      for (int64_t k = 0; k < per; ++k) {
        const int64_t ch = g * per + k;
        const double a = rstd * (w.empty() ? 1.0 : w[ch]), sh = bv.empty() ? 0.0 : bv[ch];
        for (int64_t i = 0; i < inner; ++i) {
          const int64_t idx = base + k * inner + i;
          double y = (v[idx] - mean) * a + sh;
          double tol = std::fabs(a) * (std::fabs(v[idx] - mean) + mean_abs) * (n + 4) * u64 +
                       4 * uc * (std::fabs(v[idx] * a) + std::fabs(mean * a) + std::fabs(sh));
          if (silu) {
            y = y / (1 + std::exp(-y));
            tol = 1.1 * tol + 4 * uc * std::fabs(y);
          }
          r.value[idx] = y;
          r.tol[idx] = tol + uo * std::fabs(y) * 1.01 + 1e-300;
        }
      }
    }
  return r;
}

void ExpectMatchesReference(const Tensor& x, int64_t groups, const Tensor& weight,
                            const Tensor& bias, bool silu) {
  const double eps = 1e-6;
  Tensor y = ops::GroupNorm(x, groups, weight, bias, eps, silu);
  ASSERT_EQ(y.shape(), x.shape());
  ASSERT_EQ(y.dtype(), x.dtype());
  const GroupNormReference ref = NaiveGroupNorm(x, groups, weight, bias, eps, silu, x.dtype());
  const std::vector<double> got = y.ToVector();
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - ref.value[i]) <= ref.tol[i]) && bad++ < 5) {
      ADD_FAILURE() << "element " << i << ": " << got[i] << " vs " << ref.value[i] << " (tolerance "
                    << ref.tol[i] << ")";
    }
  }
  EXPECT_EQ(bad, 0) << "of " << got.size() << " in " << y.str();
}

struct Case {
  const char* name;
  Shape shape;
  int64_t groups;
};

class GroupNormTest : public ::testing::TestWithParam<DType> {};

TEST_P(GroupNormTest, MatchesDirectLoopsOnAwkwardShapes) {
  const DType dtype = GetParam();
  const Case cases[] = {
      {"video, 2 channels per group", {2, 6, 3, 5, 7}, 3},
      {"one position per channel", {1, 12, 1, 1, 1}, 4},
      {"one channel per group", {3, 5, 11}, 5},
      {"one group", {1, 7, 2, 3, 4}, 1},
      {"many positions", {1, 4, 3, 17, 31}, 2},
  };
  uint64_t seed = 100;
  for (const Case& c : cases) {
    for (bool affine : {true, false}) {
      for (bool silu : {false, true}) {
        SCOPED_TRACE(std::string(c.name) + (affine ? " affine" : "") + (silu ? " silu" : ""));
        Tensor x = ops::AddScalar(RandomTensor(c.shape, ++seed, dtype), 0.5);
        Tensor w = affine ? RandomTensor({c.shape[1]}, ++seed, kF32) : Tensor();
        Tensor b = affine ? RandomTensor({c.shape[1]}, ++seed, kF32) : Tensor();
        ExpectMatchesReference(x, c.groups, w, b, silu);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, GroupNormTest, ::testing::Values(kF64, kF32, kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(GroupNorm, ALargeCommonOffsetDoesNotCancelTheVariance) {
  // Values 1000 + N(0, 1): a one-pass E[x^2] - E[x]^2 in f32 would lose the variance.
  Tensor x = ops::AddScalar(RandomTensor({2, 4, 3, 9, 5}, 7, kF64), 1000.0);
  ExpectMatchesReference(ops::Cast(x, kF32), 2, RandomTensor({4}, 8), RandomTensor({4}, 9), false);
}

TEST(GroupNorm, ReadsNonContiguousViews) {
  Tensor x = RandomTensor({2, 4, 5, 3}, 11, kF32);
  Tensor view = ops::Transpose(x, 2, 3);  // [2, 4, 3, 5], not contiguous
  ASSERT_FALSE(view.is_contiguous());
  ExpectMatchesReference(view, 2, RandomTensor({4}, 12), RandomTensor({4}, 13), true);
}

TEST(GroupNorm, AConstantGroupGivesTheBias) {
  Tensor x = Tensor::Full({1, 4, 2, 3}, 3.5, kF32);
  Tensor bias = Tensor::FromVector(std::vector<double>{1, 2, 3, 4}, {4}, kF32);
  std::vector<double> y = ops::GroupNorm(x, 2, Tensor::Ones({4}), bias, 1e-6).ToVector();
  for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], static_cast<double>(1 + i / 6)) << i;
}

TEST(GroupNorm, ErrorsNameTheShapes) {
  Tensor x = RandomTensor({1, 6, 4}, 21);
  EXPECT_NE(ErrorMessage([&] {
              ops::GroupNorm(x, 4, Tensor(), Tensor(), 1e-6);
            }).find("4 groups do not divide the 6 channels"),
            std::string::npos);
  EXPECT_NE(ErrorMessage([&] {
              ops::GroupNorm(x, 3, Tensor::Ones({5}), Tensor(), 1e-6);
            }).find("weight must hold 6"),
            std::string::npos);
  EXPECT_NE(ErrorMessage([&] {
              ops::GroupNorm(x, 3, Tensor(), Tensor::Ones({7}), 1e-6);
            }).find("bias must hold 6"),
            std::string::npos);
  EXPECT_NE(
      ErrorMessage([&] { ops::GroupNorm(x, 3, Tensor(), Tensor(), 0.0); }).find("eps must be > 0"),
      std::string::npos);
  EXPECT_NE(ErrorMessage([&] {
              ops::GroupNorm(Tensor::Zeros({6}), 3, Tensor(), Tensor(), 1e-6);
            }).find("[B, C, ...]"),
            std::string::npos);
}

TEST(GroupNormInPlace, WritesTheSameValuesOverTheInput) {
  for (DType dtype : {kF64, kF32, kBF16}) {
    for (bool silu : {false, true}) {
      Tensor x = RandomTensor({2, 6, 3, 5, 7}, 61, dtype);
      Tensor weight = RandomTensor({6}, 62, kF32), bias = RandomTensor({6}, 63, kF32);
      Tensor expected = ops::GroupNorm(x, 3, weight, bias, 1e-6, silu);
      const Tensor& y = ops::GroupNormInPlace(x, 3, weight, bias, 1e-6, silu);
      EXPECT_EQ(y.raw_data(), x.raw_data());
      EXPECT_TRUE(testing::AllClose(x, expected, 0, 0)) << DTypeName(dtype) << " silu " << silu;
    }
  }
  Tensor t = ops::Transpose(RandomTensor({4, 3}, 64, kF32), 0, 1);
  EXPECT_NE(ErrorMessage([&] {
              ops::GroupNormInPlace(t, 1, Tensor(), Tensor(), 1e-6);
            }).find("must be contiguous"),
            std::string::npos);
}

}  // namespace
}  // namespace sdpo
