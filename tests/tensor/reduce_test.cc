// Reductions (sum, mean, max, argmax, var), softmax / log-softmax and SumToShape against naive
// double loops over every subset of dims, keepdim or not, on contiguous and strided inputs.
#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_join.h"
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
using sdpo::testing::ScopedNumThreads;
using sdpo::testing::Unravel;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

enum class Kind { kSum, kMean, kMax, kArgMax, kVar0, kVar1 };

// Output shape of reducing `dims` (sorted, non-negative) of `shape`.
Shape ReducedShape(const Shape& shape, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (!reduced)
      out.push_back(shape[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

// Naive reduction: groups input elements by their kept-dim index, in row-major order.
std::vector<double> NaiveReduce(Kind kind, const Tensor& x, const std::vector<int64_t>& dims) {
  const Shape& shape = x.shape();
  Shape kept = ReducedShape(shape, dims, /*keepdim=*/true);
  std::vector<std::vector<double>> groups(NumElements(kept));
  std::vector<double> xv = x.ToVector();
  for (int64_t i = 0; i < x.numel(); ++i) {
    std::vector<int64_t> idx = Unravel(i, shape);
    groups[BroadcastIndex(idx, kept)].push_back(xv[i]);
  }
  std::vector<double> out;
  for (const auto& g : groups) {
    double n = static_cast<double>(g.size());
    double sum = 0;
    for (double v : g) sum += v;
    switch (kind) {
      case Kind::kSum:
        out.push_back(sum);
        break;
      case Kind::kMean:
        out.push_back(sum / n);
        break;
      case Kind::kMax:
        out.push_back(*std::max_element(g.begin(), g.end()));
        break;
      case Kind::kArgMax:
        out.push_back(static_cast<double>(std::max_element(g.begin(), g.end()) - g.begin()));
        break;
      case Kind::kVar0:
      case Kind::kVar1: {
        double mean = sum / n, ss = 0;
        for (double v : g) ss += (v - mean) * (v - mean);
        out.push_back(ss / (n - (kind == Kind::kVar1 ? 1 : 0)));
        break;
      }
    }
  }
  return out;
}

// Every subset of {0, .., rank-1} (empty = all dims).
std::vector<std::vector<int64_t>> AllDimSubsets(int64_t rank) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t mask = 0; mask < (int64_t{1} << rank); ++mask) {
    std::vector<int64_t> dims;
    for (int64_t d = 0; d < rank; ++d) {
      if (mask & (int64_t{1} << d)) dims.push_back(d);
    }
    out.push_back(dims);
  }
  return out;
}

Tensor RunReduce(Kind kind, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  switch (kind) {
    case Kind::kSum:
      return ops::Sum(x, dims, keepdim);
    case Kind::kMean:
      return ops::Mean(x, dims, keepdim);
    case Kind::kMax:
      return ops::Max(x, dims, keepdim);
    case Kind::kVar0:
      return ops::Var(x, dims, 0, keepdim);
    case Kind::kVar1:
      return ops::Var(x, dims, 1, keepdim);
    case Kind::kArgMax:
      return ops::ArgMax(x, dims.at(0), keepdim);
  }
  return Tensor();
}

TEST(Reduce, EveryDimSubsetMatchesNaiveLoop) {
  const Shape shape = {3, 4, 5};
  for (DType dtype : {kF64, kF32, kBF16}) {
    Tensor base = RandomTensor({5, 4, 3}, 1, dtype);
    // The same logical [3, 4, 5] values, contiguous and as a permuted view.
    Tensor strided = ops::Permute(base, {2, 1, 0});
    Tensor contiguous = ops::Contiguous(strided);
    for (const Tensor& x : {contiguous, strided}) {
      for (Kind kind : {Kind::kSum, Kind::kMean, Kind::kMax, Kind::kVar0, Kind::kVar1}) {
        for (const auto& dims : AllDimSubsets(3)) {
          for (bool keepdim : {false, true}) {
            SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " kind ", static_cast<int>(kind), " dims [",
                                      absl::StrJoin(dims, ","), "] keepdim ", keepdim,
                                      " contiguous ", x.is_contiguous()));
            // Empty dims means all dims; also pass them negative.
            std::vector<int64_t> neg = dims;
            for (auto& d : neg) d -= 3;
            Tensor out = RunReduce(kind, x, neg, keepdim);
            std::vector<int64_t> all = dims;
            if (all.empty()) all = {0, 1, 2};
            EXPECT_EQ(out.shape(), ReducedShape(shape, all, keepdim));
            EXPECT_EQ(out.dtype(), dtype);
            double tol = dtype == kF64 ? 1e-14 : dtype == kF32 ? 1e-6 : 8e-3;
            EXPECT_TRUE(AllClose(out, NaiveReduce(kind, x, all), tol, tol));
          }
        }
      }
    }
  }
}

TEST(Reduce, ArgMaxEveryDim) {
  Tensor x = ops::Transpose(RandomTensor({6, 5, 4}, 2, kF32), 0, 2);  // [4, 5, 6] strided
  for (int64_t d = 0; d < 3; ++d) {
    for (bool keepdim : {false, true}) {
      Tensor out = ops::ArgMax(x, d - (keepdim ? 3 : 0), keepdim);
      EXPECT_EQ(out.dtype(), kI64);
      EXPECT_EQ(out.shape(), ReducedShape(x.shape(), {d}, keepdim));
      EXPECT_EQ(out.ToVector(), NaiveReduce(Kind::kArgMax, x, {d}));
    }
  }
  // Ties go to the first index; NaN wins (like torch).
  Tensor t = Tensor::FromVector(std::vector<double>{1, 3, 3, 0, kNaN, 2, 5, 5, 5}, {3, 3});
  EXPECT_THAT(ops::ArgMax(t, 1).ToVector(), ElementsAre(1, 1, 0));
  EXPECT_TRUE(AllClose(ops::Max(t, {1}), {3, kNaN, 5}, 0, 0));
  Tensor lead_nan = Tensor::FromVector(std::vector<double>{kNaN, 1, 2}, {3});
  EXPECT_TRUE(std::isnan(ops::Max(lead_nan).item()));
  EXPECT_EQ(ops::ArgMax(lead_nan, 0).item(), 0);
  Tensor ints = Tensor::FromVector(std::vector<double>{-4, 7, 7, 2}, {2, 2}, kI32);
  EXPECT_THAT(ops::Max(ints, {0}).ToVector(), ElementsAre(7, 7));
  EXPECT_THAT(ops::ArgMax(ints, 0).ToVector(), ElementsAre(1, 0));
  EXPECT_EQ(ops::Max(ints).dtype(), kI32);
  EXPECT_EQ(ops::Max(Tensor::FromVector(std::vector<double>{-kInf, -kInf}, {2})).item(), -kInf);
}

TEST(Reduce, IntegerSumsAreExact) {
  int64_t big = (int64_t{1} << 60) + 1;
  Tensor x = Tensor::FromVector(std::vector<int64_t>{big, 3, -1}, {3});
  Tensor s = ops::Sum(x);
  EXPECT_EQ(s.dtype(), kI64);
  EXPECT_EQ(s.data<int64_t>()[0], big + 2);
  Tensor i32 = Tensor::FromVector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}, kI32);
  EXPECT_THAT(ops::Sum(i32, {1}).ToVector(), ElementsAre(6, 15));
  EXPECT_EQ(ops::Sum(i32, {1}).dtype(), kI32);
}

TEST(Reduce, ZeroDimAndEmptyInputs) {
  Tensor s = Tensor::Scalar(2.5, kF64);
  EXPECT_EQ(ops::Sum(s).dim(), 0);
  EXPECT_EQ(ops::Sum(s).item(), 2.5);
  EXPECT_EQ(ops::Mean(s).item(), 2.5);
  EXPECT_EQ(ops::Max(s).item(), 2.5);
  EXPECT_EQ(ops::Sum(s, {0}).item(), 2.5);  // dim 0 / -1 is accepted for a 0-d tensor
  EXPECT_EQ(ops::Sum(s, {-1}, /*keepdim=*/true).dim(), 0);
  EXPECT_EQ(ops::ArgMax(s, 0).item(), 0);
  // Reducing an empty dim: sum is 0, mean NaN; max has no identity and is an error.
  Tensor e = Tensor::Zeros({2, 0});
  EXPECT_THAT(ops::Sum(e, {1}).ToVector(), ElementsAre(0, 0));
  EXPECT_EQ(ops::Sum(e).item(), 0);
  EXPECT_TRUE(std::isnan(ops::Mean(e).item()));
  EXPECT_EQ(ops::Sum(e, {0}).shape(), Shape({0}));
  EXPECT_THAT(ErrorMessage([&] { ops::Max(e, {1}); }), HasSubstr("max"));
  // Variance of one element with correction 1 is NaN (0 / 0), like torch.
  EXPECT_TRUE(std::isnan(ops::Var(Tensor::Ones({1}), {}, 1).item()));
  EXPECT_EQ(ops::Var(Tensor::Ones({1}), {}, 0).item(), 0);
}

TEST(Reduce, LargeSumsAccumulateInDouble) {
  // 1e6 values of 0.1f: a float accumulator would drift by ~1e-3 relative.
  Tensor x = Tensor::Full({1000000}, 0.1, kF32);
  EXPECT_NEAR(ops::Sum(x).item(), 1e6 * static_cast<double>(0.1f), 1e6 * 0.1 * 1e-7);
  EXPECT_NEAR(ops::Mean(x).item(), 0.1, 1e-7);
  Tensor b = Tensor::Full({4096}, 1.0 / 3, kBF16);
  EXPECT_NEAR(ops::Sum(b).item(), 4096 * b.at({0}), 4096 * b.at({0}) * 4e-3);
}

TEST(Reduce, ResultsDoNotDependOnTheThreadCount) {
  Tensor x = ops::Transpose(RandomTensor({513, 257}, 5, kF32), 0, 1);
  auto run = [&] {
    return std::vector<Tensor>{ops::Sum(x, {1}),      ops::Mean(x, {0}), ops::Max(x, {1}),
                               ops::Var(x, {0}),      ops::ArgMax(x, 1), ops::Softmax(x, 0),
                               ops::LogSoftmax(x, 1), ops::Sum(x)};
  };
  std::vector<Tensor> ref;
  {
    ScopedNumThreads threads(1);
    ref = run();
  }
  for (int n : {2, 3, 7}) {
    ScopedNumThreads threads(n);
    std::vector<Tensor> got = run();
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_TRUE(BitEqual(got[i], ref[i])) << n << " " << i;
  }
}

// ------------------------------------------------------------------------- softmax

std::vector<double> NaiveSoftmax(const Tensor& x, int64_t dim, bool log) {
  const Shape& shape = x.shape();
  std::vector<double> xv = x.ToVector(), out(xv.size());
  int64_t n = shape[dim];
  for (int64_t i = 0; i < x.numel(); ++i) {
    std::vector<int64_t> idx = Unravel(i, shape);
    if (idx[dim] != 0) continue;
    int64_t step = 1;
    for (int64_t d = dim + 1; d < static_cast<int64_t>(shape.size()); ++d) step *= shape[d];
    double mx = -kInf;
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, xv[i + j * step]);
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += std::exp(xv[i + j * step] - mx);
    for (int64_t j = 0; j < n; ++j) {
      double v = xv[i + j * step] - mx;
      out[i + j * step] = log ? v - std::log(sum) : std::exp(v) / sum;
    }
  }
  return out;
}

TEST(Softmax, EveryDimMatchesNaiveLoop) {
  for (DType dtype : {kF64, kF32, kBF16, kF16}) {
    Tensor x = ops::Permute(ops::MulScalar(RandomTensor({5, 3, 4}, 3, dtype), 3), {1, 2, 0});
    for (int64_t dim = -3; dim < 3; ++dim) {
      for (bool log : {false, true}) {
        SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " dim ", dim, " log ", log));
        Tensor out = log ? ops::LogSoftmax(x, dim) : ops::Softmax(x, dim);
        EXPECT_EQ(out.shape(), x.shape());
        EXPECT_EQ(out.dtype(), dtype);
        double tol = dtype == kF64 ? 1e-14 : dtype == kF32 ? 2e-6 : dtype == kBF16 ? 1e-2 : 2e-3;
        EXPECT_TRUE(AllClose(out, NaiveSoftmax(x, dim < 0 ? dim + 3 : dim, log), tol, tol));
      }
    }
  }
}

TEST(Softmax, StableForLargeInputsAndMaskedEntries) {
  Tensor x = Tensor::FromVector(std::vector<double>{1000, 1001, 1002, -kInf, 0, -kInf}, {2, 3});
  Tensor p = ops::Softmax(x, 1);
  std::vector<double> e = NaiveSoftmax(x, 1, false);
  EXPECT_TRUE(AllClose(p, e, 1e-6, 1e-7));
  EXPECT_EQ(p.at({1, 0}), 0);
  EXPECT_EQ(p.at({1, 1}), 1);
  Tensor lp = ops::LogSoftmax(x, 1);
  EXPECT_TRUE(AllClose(lp, NaiveSoftmax(x, 1, true), 1e-6, 1e-6));
  EXPECT_EQ(lp.at({1, 0}), -kInf);
  // Rows sum to one.
  Tensor r = ops::Softmax(RandomTensor({7, 129}, 4, kF32), -1);
  for (double s : ops::Sum(r, {1}).ToVector()) EXPECT_NEAR(s, 1, 1e-6);
  // 0-d input.
  EXPECT_EQ(ops::Softmax(Tensor::Scalar(3), 0).item(), 1);
  EXPECT_EQ(ops::LogSoftmax(Tensor::Scalar(3), -1).item(), 0);
  // Empty inputs give empty outputs (also when the softmax dim itself is empty).
  EXPECT_EQ(ops::Softmax(Tensor::Zeros({3, 0}), 1).shape(), Shape({3, 0}));
  EXPECT_EQ(ops::LogSoftmax(Tensor::Zeros({0, 4}), 1).shape(), Shape({0, 4}));
  // Size-1 dim.
  EXPECT_THAT(ops::Softmax(RandomTensor({3, 1}, 5), 1).ToVector(), ElementsAre(1, 1, 1));
}

// ------------------------------------------------------------------------- SumToShape

TEST(SumToShape, ReversesBroadcasting) {
  struct Case {
    Shape from, to;
  };
  std::vector<Case> cases = {
      {{2, 3, 4}, {2, 3, 4}}, {{2, 3, 4}, {4}}, {{2, 3, 4}, {3, 1}},    {{2, 3, 4}, {1, 3, 4}},
      {{2, 3, 4}, {}},        {{2, 3, 4}, {1}}, {{2, 3, 4}, {2, 1, 1}}, {{5, 1, 7}, {1, 7}},
      {{5, 1, 7}, {5, 1, 1}}, {{3}, {1}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(ShapeStr(c.from), " -> ", ShapeStr(c.to)));
    Tensor x = RandomTensor(c.from, 6, kF64);
    Tensor out = ops::SumToShape(x, c.to);
    EXPECT_EQ(out.shape(), c.to);
    // Reference: every element of x lands on its broadcast source in `to`.
    std::vector<double> ref(NumElements(c.to), 0.0), xv = x.ToVector();
    for (int64_t i = 0; i < x.numel(); ++i) {
      ref[BroadcastIndex(Unravel(i, c.from), c.to)] += xv[i];
    }
    EXPECT_TRUE(AllClose(out, ref, 1e-14, 1e-14));
  }
  // Identity shape returns the input itself.
  Tensor x = RandomTensor({2, 3}, 7);
  EXPECT_EQ(ops::SumToShape(x, {2, 3}).impl_ptr(), x.impl_ptr());
  // Adjoint of broadcasting: <Expand(y), g> == <y, SumToShape(g)>.
  Tensor y = RandomTensor({3, 1}, 8, kF64), g = RandomTensor({2, 3, 4}, 9, kF64);
  double lhs = ops::Sum(ops::Mul(ops::Expand(y, {2, 3, 4}), g)).item();
  double rhs = ops::Sum(ops::Mul(y, ops::SumToShape(g, {3, 1}))).item();
  EXPECT_NEAR(lhs, rhs, 1e-12);
  EXPECT_THAT(ErrorMessage([&] {
                ops::SumToShape(g, {2, 4});
              }),
              HasSubstr("sum_to_shape: cannot reduce f64[2, 3, 4] cpu to [2, 4]"));
  EXPECT_THAT(ErrorMessage([&] { ops::SumToShape(y, {2, 3, 1}); }), HasSubstr("sum_to_shape"));
}

}  // namespace
}  // namespace sdpo
