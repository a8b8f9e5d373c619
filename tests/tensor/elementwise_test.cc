// Elementwise ops (unary, binary with NumPy broadcasting, compare, where, clamp) against naive
// double-precision loops, on contiguous and strided inputs, for every supported dtype; and
// independence of the results from the thread count.
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"
#include "tensor/thread_pool.h"
#include "tests/op_cases.h"
#include "tests/tensor/test_util.h"

namespace sdpo {
namespace {

using ops::BinaryOp;
using ops::CompareOp;
using ops::UnaryOp;
using sdpo::testing::AllClose;
using sdpo::testing::BinaryOpCase;
using sdpo::testing::BinaryOpCases;
using sdpo::testing::UnaryOpCase;
using sdpo::testing::UnaryOpCases;
using sdpo::testing::BitEqual;
using sdpo::testing::BroadcastIndex;
using sdpo::testing::ErrorMessage;
using sdpo::testing::RandomTensor;
using sdpo::testing::RandomUniformTensor;
using sdpo::testing::ScopedNumThreads;
using sdpo::testing::Unravel;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

TEST(Unary, EveryOpMatchesDoubleReference) {
  for (DType dtype : {kF64, kF32, kBF16, kF16}) {
    for (const UnaryOpCase& c : UnaryOpCases()) {
      SCOPED_TRACE(absl::StrCat(ops::UnaryOpName(c.op), " ", DTypeName(dtype)));
      // A strided (transposed) input exercises the non-contiguous path as well.
      Tensor x = RandomUniformTensor({37, 23}, 11, c.lo, c.hi, dtype);
      for (Tensor in : {x, ops::Transpose(x, 0, 1)}) {
        Tensor y = ops::Unary(c.op, in);
        EXPECT_EQ(y.dtype(), dtype);
        EXPECT_EQ(y.shape(), in.shape());
        EXPECT_TRUE(y.is_contiguous());
        std::vector<double> xs = in.ToVector(), ref(xs.size());
        for (size_t i = 0; i < xs.size(); ++i) ref[i] = c.reference(xs[i]);
        double rtol = dtype == kF64 ? 1e-13 : dtype == kF32 ? 2e-6 : dtype == kBF16 ? 8e-3 : 1e-3;
        double atol = dtype == kF64 ? 1e-14 : dtype == kF32 ? 1e-6 : dtype == kBF16 ? 8e-3 : 1e-3;
        // f32 gelu_tanh_grad cancels in (1 + tanh) and (1 - tanh^2) where tanh saturates (the
        // vectorised f32 tanh reaches -1 exactly): a few 1e-6 absolute.
        if (dtype == kF32 && c.op == UnaryOp::kGeluTanhGrad) atol = 5e-6;
        EXPECT_TRUE(AllClose(y, ref, rtol + c.reference_tol * 1e3, atol + c.reference_tol));
      }
    }
  }
}

TEST(Unary, SpecialValues) {
  Tensor x = Tensor::FromVector(std::vector<double>{0, -0.0, kInf, -kInf, kNaN}, {5}, kF32);
  EXPECT_TRUE(AllClose(ops::Exp(x), {1, 1, kInf, 0, kNaN}, 0, 0));
  EXPECT_TRUE(AllClose(ops::Unary(UnaryOp::kSigmoid, x), {0.5, 0.5, 1, 0, kNaN}, 0, 0));
  EXPECT_TRUE(AllClose(ops::Unary(UnaryOp::kTanh, x), {0, 0, 1, -1, kNaN}, 0, 0));
  EXPECT_TRUE(AllClose(ops::Log(x), {-kInf, -kInf, kInf, kNaN, kNaN}, 0, 0));
  EXPECT_THAT(ops::Slice(ops::Unary(UnaryOp::kSign, x), 0, 0, 4).ToVector(),
              ElementsAre(0, 0, 1, -1));
  // Sigmoid does not overflow for large |x| (computed in the stable form).
  Tensor big = Tensor::FromVector(std::vector<double>{-100, 100, -800, 800}, {4}, kF64);
  EXPECT_TRUE(AllClose(ops::Unary(UnaryOp::kSigmoid, big), {Sigmoid(-100), 1, 0, 1}, 1e-14, 0));
  EXPECT_TRUE(
      AllClose(ops::Unary(UnaryOp::kSilu, big), {-100 * Sigmoid(-100), 100, -0.0, 800}, 1e-14, 0));
}

TEST(Unary, IntegerOpsStayExact) {
  for (DType dtype : {kI32, kI64}) {
    Tensor x = Tensor::FromVector(std::vector<double>{-3, 0, 5, -1}, {4}, dtype);
    EXPECT_THAT(ops::Neg(x).ToVector(), ElementsAre(3, 0, -5, 1));
    EXPECT_THAT(ops::Unary(UnaryOp::kAbs, x).ToVector(), ElementsAre(3, 0, 5, 1));
    EXPECT_THAT(ops::Square(x).ToVector(), ElementsAre(9, 0, 25, 1));
    EXPECT_THAT(ops::Unary(UnaryOp::kSign, x).ToVector(), ElementsAre(-1, 0, 1, -1));
    EXPECT_EQ(ops::Neg(x).dtype(), dtype);
  }
}

// ------------------------------------------------------------------------- binary

double BinaryRef(BinaryOp op, double a, double b) {
  for (const BinaryOpCase& c : BinaryOpCases()) {
    if (c.op == op) return c.reference(a, b);
  }
  ADD_FAILURE() << "no case for " << ops::BinaryOpName(op);
  return kNaN;
}

// Naive broadcast loop: out[i] = f(a[bcast(i)], b[bcast(i)]).
std::vector<double> NaiveBroadcast(const Tensor& a, const Tensor& b, const Shape& out_shape,
                                   const std::function<double(double, double)>& f) {
  std::vector<double> av = a.ToVector(), bv = b.ToVector();
  std::vector<double> out(NumElements(out_shape));
  for (int64_t i = 0; i < static_cast<int64_t>(out.size()); ++i) {
    std::vector<int64_t> idx = Unravel(i, out_shape);
    out[i] = f(av[BroadcastIndex(idx, a.shape())], bv[BroadcastIndex(idx, b.shape())]);
  }
  return out;
}

struct ShapePair {
  Shape a, b, out;
};

const std::vector<ShapePair>& BroadcastCases() {
  static const std::vector<ShapePair> cases = {
      {{3, 4}, {3, 4}, {3, 4}},
      {{3, 4}, {4}, {3, 4}},
      {{4}, {3, 4}, {3, 4}},
      {{3, 1}, {1, 4}, {3, 4}},
      {{2, 1, 5}, {3, 1}, {2, 3, 5}},
      {{1}, {2, 3}, {2, 3}},
      {{}, {2, 3}, {2, 3}},
      {{2, 3}, {}, {2, 3}},
      {{}, {}, {}},
      {{5, 1, 1}, {1, 7, 129}, {5, 7, 129}},
      {{0, 3}, {3}, {0, 3}},
      {{2, 0}, {1, 1}, {2, 0}},
  };
  return cases;
}

TEST(Binary, BroadcastShapes) {
  for (const ShapePair& c : BroadcastCases()) {
    EXPECT_EQ(ops::BroadcastShapes(c.a, c.b, "test"), c.out);
    EXPECT_EQ(ops::BroadcastShapes(c.b, c.a, "test"), c.out);
  }
  EXPECT_THAT(ErrorMessage([] {
                ops::BroadcastShapes({2, 3}, {4}, "myop");
              }),
              HasSubstr("myop: shapes [2, 3] and [4] are not broadcastable"));
}

TEST(Binary, EveryFloatOpWithBroadcastingMatchesNaiveLoop) {
  for (DType dtype : {kF64, kF32, kBF16, kF16}) {
    for (const BinaryOpCase& k : BinaryOpCases()) {
      const BinaryOp op = k.op;
      for (const ShapePair& c : BroadcastCases()) {
        SCOPED_TRACE(absl::StrCat(ops::BinaryOpName(op), " ", DTypeName(dtype), " ", ShapeStr(c.a),
                                  " ", ShapeStr(c.b)));
        Tensor a = RandomUniformTensor(c.a, 1, k.a_lo, k.a_hi, dtype);
        Tensor b = RandomUniformTensor(c.b, 2, k.b_lo, k.b_hi, dtype);
        Tensor out = ops::Binary(op, a, b);
        EXPECT_EQ(out.shape(), c.out);
        EXPECT_EQ(out.dtype(), dtype);
        std::vector<double> ref =
            NaiveBroadcast(a, b, c.out, [op](double x, double y) { return BinaryRef(op, x, y); });
        double tol = dtype == kF64 ? 1e-14 : dtype == kF32 ? 1e-6 : dtype == kBF16 ? 8e-3 : 1e-3;
        EXPECT_TRUE(AllClose(out, ref, tol, tol));
      }
    }
  }
}

TEST(Binary, StridedAndExpandedOperands) {
  Tensor base = RandomTensor({6, 8}, 3, kF64);
  Tensor a = ops::Transpose(base, 0, 1);                               // [8, 6] non-contiguous
  Tensor b = ops::Slice(RandomTensor({8, 12}, 4, kF64), 1, 0, 12, 2);  // [8, 6] step 2
  Tensor c = ops::Expand(RandomTensor({8, 1}, 5, kF64), {8, 6});
  for (BinaryOp op : {BinaryOp::kAdd, BinaryOp::kMul, BinaryOp::kSub}) {
    std::vector<double> ref =
        NaiveBroadcast(a, b, {8, 6}, [op](double x, double y) { return BinaryRef(op, x, y); });
    EXPECT_TRUE(AllClose(ops::Binary(op, a, b), ref, 1e-15, 0));
    ref = NaiveBroadcast(b, c, {8, 6}, [op](double x, double y) { return BinaryRef(op, x, y); });
    EXPECT_TRUE(AllClose(ops::Binary(op, b, c), ref, 1e-15, 0));
    ref = NaiveBroadcast(c, a, {8, 6}, [op](double x, double y) { return BinaryRef(op, x, y); });
    EXPECT_TRUE(AllClose(ops::Binary(op, c, a), ref, 1e-15, 0));
  }
}

TEST(Binary, IntegerOps) {
  for (DType dtype : {kI32, kI64}) {
    Tensor a = Tensor::FromVector(std::vector<double>{-3, 0, 5, 7}, {4}, dtype);
    Tensor b = Tensor::FromVector(std::vector<double>{2, 3, -1, 0}, {4}, dtype);
    EXPECT_THAT(ops::Add(a, b).ToVector(), ElementsAre(-1, 3, 4, 7));
    EXPECT_THAT(ops::Sub(a, b).ToVector(), ElementsAre(-5, -3, 6, 7));
    EXPECT_THAT(ops::Mul(a, b).ToVector(), ElementsAre(-6, 0, -5, 0));
    EXPECT_THAT(ops::Maximum(a, b).ToVector(), ElementsAre(2, 3, 5, 7));
    EXPECT_THAT(ops::Minimum(a, b).ToVector(), ElementsAre(-3, 0, -1, 0));
    Tensor e = Tensor::FromVector(std::vector<double>{2, 3, 0, 1}, {4}, dtype);
    EXPECT_THAT(ops::Pow(a, e).ToVector(), ElementsAre(9, 0, 1, 7));
    EXPECT_THAT(ops::PowScalar(Tensor::Full({1}, 3, dtype), 13).ToVector(), ElementsAre(1594323));
    EXPECT_THAT(ops::PowScalar(Tensor::Full({1}, -1, dtype), 1000000001).ToVector(),
                ElementsAre(-1));
    EXPECT_THAT(ErrorMessage([&] { ops::PowScalar(a, -1); }), HasSubstr("pow"));
    EXPECT_EQ(ops::Add(a, b).dtype(), dtype);
    EXPECT_THAT(ErrorMessage([&] { ops::Div(a, b); }), HasSubstr("div"));
  }
  // Large i64 values are exact (no trip through double).
  int64_t big = (int64_t{1} << 60) + 1;
  Tensor x = Tensor::FromVector(std::vector<int64_t>{big}, {1});
  EXPECT_EQ(ops::Add(x, x).data<int64_t>()[0], 2 * big);
}

TEST(Binary, NaNPropagatesThroughMaximumAndMinimum) {
  Tensor a = Tensor::FromVector(std::vector<double>{kNaN, 1, kNaN, 2}, {4}, kF32);
  Tensor b = Tensor::FromVector(std::vector<double>{1, kNaN, kNaN, 3}, {4}, kF32);
  EXPECT_TRUE(AllClose(ops::Maximum(a, b), {kNaN, kNaN, kNaN, 3}, 0, 0));
  EXPECT_TRUE(AllClose(ops::Minimum(a, b), {kNaN, kNaN, kNaN, 2}, 0, 0));
}

TEST(Binary, ZeroDimOperandIsCastToTheOtherDType) {
  Tensor x = RandomTensor({3}, 7, kF64);
  Tensor s = Tensor::Scalar(0.1, kF32);  // a 0-d f32 tensor
  Tensor y = ops::Mul(x, s);
  EXPECT_EQ(y.dtype(), kF64);
  std::vector<double> xs = x.ToVector();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(y.ToVector()[i], xs[i] * static_cast<double>(0.1f));
  EXPECT_EQ(ops::Add(Tensor::Scalar(1, kI64), x).dtype(), kF64);
  EXPECT_EQ(ops::MulScalar(Tensor::Ones({2}, kBF16), 3).dtype(), kBF16);
  EXPECT_THAT(ops::AddScalar(Tensor::Ones({2}, kI32), 2).ToVector(), ElementsAre(3, 3));
  EXPECT_THAT(ops::PowScalar(Tensor::Full({2}, 3, kF32), 2).ToVector(), ElementsAre(9, 9));
  EXPECT_EQ(ops::ScalarLike(2, x).dtype(), kF64);
  EXPECT_EQ(ops::ScalarLike(2, x).dim(), 0);
  // Both 0-d: the result is 0-d.
  EXPECT_EQ(ops::Add(Tensor::Scalar(1), Tensor::Scalar(2)).dim(), 0);
  EXPECT_EQ(ops::Add(Tensor::Scalar(1), Tensor::Scalar(2)).item(), 3);
}

TEST(Binary, InputsAreNotModified) {
  Tensor a = RandomTensor({4, 5}, 1), b = RandomTensor({5}, 2);
  std::vector<double> av = a.ToVector(), bv = b.ToVector();
  ops::Add(a, b);
  ops::Unary(UnaryOp::kExp, a);
  EXPECT_EQ(a.ToVector(), av);
  EXPECT_EQ(b.ToVector(), bv);
}

// ------------------------------------------------------------------------- compare / where / clamp

TEST(Compare, EveryOpWithBroadcasting) {
  struct C {
    CompareOp op;
    std::function<bool(double, double)> ref;
  };
  std::vector<C> cases = {
      {CompareOp::kEq, [](double a, double b) { return a == b; }},
      {CompareOp::kNe, [](double a, double b) { return a != b; }},
      {CompareOp::kLt, [](double a, double b) { return a < b; }},
      {CompareOp::kLe, [](double a, double b) { return a <= b; }},
      {CompareOp::kGt, [](double a, double b) { return a > b; }},
      {CompareOp::kGe, [](double a, double b) { return a >= b; }},
  };
  for (DType dtype : {kF32, kF64, kBF16, kI32, kI64}) {
    Tensor a = Tensor::FromVector(std::vector<double>{1, 2, 3, 2, 1, 0}, {2, 3}, dtype);
    Tensor b = Tensor::FromVector(std::vector<double>{2, 2, 1}, {3}, dtype);
    for (const C& c : cases) {
      Tensor out = ops::Compare(c.op, a, b);
      EXPECT_EQ(out.dtype(), kBool);
      EXPECT_EQ(out.shape(), Shape({2, 3}));
      EXPECT_TRUE(AllClose(out, NaiveBroadcast(a, b, {2, 3}, c.ref), 0, 0)) << DTypeName(dtype);
    }
  }
  Tensor n = Tensor::FromVector(std::vector<double>{kNaN}, {1}, kF32);
  EXPECT_EQ(ops::Compare(CompareOp::kEq, n, n).item(), 0);
  EXPECT_EQ(ops::Compare(CompareOp::kNe, n, n).item(), 1);
  Tensor bools = Tensor::FromVector(std::vector<double>{0, 1}, {2}, kBool);
  EXPECT_THAT(ops::Compare(CompareOp::kEq, bools, Tensor::Ones({2}, kBool)).ToVector(),
              ElementsAre(0, 1));
}

TEST(Where, BroadcastsAllThreeOperands) {
  Tensor cond = Tensor::FromVector(std::vector<double>{1, 0, 1}, {3}, kBool);  // [3]
  Tensor a = RandomTensor({2, 1}, 1, kF64);                                    // [2, 1]
  Tensor b = RandomTensor({2, 3}, 2, kF64);                                    // [2, 3]
  Tensor out = ops::Where(cond, a, b);
  EXPECT_EQ(out.shape(), Shape({2, 3}));
  std::vector<double> av = a.ToVector(), bv = b.ToVector(), ov = out.ToVector();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(ov[i * 3 + j], j != 1 ? av[i] : bv[i * 3 + j]);
  // A 0-d branch value is cast to the other's dtype.
  Tensor w = ops::Where(cond, Tensor::Scalar(-1, kF64), Tensor::Zeros({3}, kF32));
  EXPECT_EQ(w.dtype(), kF32);
  EXPECT_THAT(w.ToVector(), ElementsAre(-1, 0, -1));
  Tensor wi = ops::Where(ops::Transpose(ops::Expand(cond, {2, 3}), 0, 1),
                         Tensor::Ones({3, 2}, kI64), Tensor::Zeros({3, 2}, kI64));
  EXPECT_THAT(wi.ToVector(), ElementsAre(1, 1, 0, 0, 1, 1));
}

TEST(Clamp, MinMaxAndNaN) {
  Tensor x = Tensor::FromVector(std::vector<double>{-3, -0.5, 0.5, 3, kNaN}, {5}, kF32);
  EXPECT_TRUE(AllClose(ops::Clamp(x, -1, 1), {-1, -0.5, 0.5, 1, kNaN}, 0, 0));
  EXPECT_TRUE(AllClose(ops::Clamp(x, 0, std::nullopt), {0, 0, 0.5, 3, kNaN}, 0, 0));
  EXPECT_TRUE(AllClose(ops::Clamp(x, std::nullopt, 0), {-3, -0.5, 0, 0, kNaN}, 0, 0));
  EXPECT_TRUE(AllClose(ops::Clamp(x, std::nullopt, std::nullopt), x.ToVector(), 0, 0));
  Tensor i = Tensor::FromVector(std::vector<double>{-5, 0, 5}, {3}, kI32);
  EXPECT_THAT(ops::Clamp(i, -2, 2).ToVector(), ElementsAre(-2, 0, 2));
  Tensor t = ops::Transpose(RandomTensor({5, 7}, 3, kF64), 0, 1);
  std::vector<double> tv = t.ToVector(), ref(tv.size());
  for (size_t k = 0; k < tv.size(); ++k) ref[k] = std::min(0.3, std::max(-0.2, tv[k]));
  EXPECT_TRUE(AllClose(ops::Clamp(t, -0.2, 0.3), ref, 0, 0));
  EXPECT_THAT(
      ops::Clamp(Tensor::FromVector(std::vector<double>{1, 2}, {2}, kBF16), 1.5, 1.5).ToVector(),
      ElementsAre(1.5, 1.5));
}

TEST(InPlace, AddAndClampWriteTheOutOfPlaceValuesIntoTheirInput) {
  for (DType dtype : {kF64, kF32, kBF16}) {
    Tensor x = RandomTensor({3, 4, 5}, 61, dtype);
    Tensor row = RandomTensor({4, 1}, 62, dtype);  // broadcast along the last dim
    Tensor sum = ops::Add(x, row);
    const Tensor& same = ops::AddInPlace(x, row);
    EXPECT_EQ(same.raw_data(), x.raw_data());
    EXPECT_TRUE(AllClose(x, sum, 0, 0)) << DTypeName(dtype);
    Tensor clamped = ops::Clamp(x, -0.3, 0.4);
    ops::ClampInPlace(x, -0.3, 0.4);
    EXPECT_TRUE(AllClose(x, clamped, 0, 0)) << DTypeName(dtype);
  }
  Tensor t = ops::Transpose(RandomTensor({3, 4}, 63, kF32), 0, 1);
  EXPECT_THAT(ErrorMessage([&] { ops::AddInPlace(t, t); }), HasSubstr("must be a contiguous"));
  EXPECT_THAT(ErrorMessage([&] { ops::ClampInPlace(t, 0, 1); }), HasSubstr("must be a contiguous"));
  Tensor small = RandomTensor({4}, 64, kF32);
  EXPECT_THAT(ErrorMessage([&] {
                ops::AddInPlace(small, RandomTensor({2, 4}, 65, kF32));
              }),
              HasSubstr("does not broadcast to dst"));
}

// ------------------------------------------------------------------------- thread counts

TEST(ElementwiseThreads, ResultsAreBitIdenticalForAnyThreadCount) {
  // Big enough for several chunks; strided to take the general path.
  Tensor a = ops::Transpose(RandomTensor({301, 517}, 1), 0, 1);
  Tensor b = RandomTensor({301}, 2);
  Tensor c = ops::Slice(RandomTensor({517, 602}, 3), 1, 0, 602, 2);
  auto run = [&] {
    std::vector<Tensor> outs;
    outs.push_back(ops::Add(a, b));
    outs.push_back(ops::Mul(a, c));
    outs.push_back(ops::Div(c, ops::AddScalar(ops::Unary(UnaryOp::kAbs, a), 1)));
    outs.push_back(ops::Unary(UnaryOp::kGelu, a));
    outs.push_back(ops::Unary(UnaryOp::kSilu, c));
    outs.push_back(ops::Exp(c));
    outs.push_back(ops::Clamp(a, -0.5, 0.5));
    outs.push_back(ops::Where(ops::Compare(CompareOp::kGt, a, c), a, c));
    outs.push_back(ops::Cast(a, kBF16));
    outs.push_back(ops::Contiguous(a));
    // Contiguous inputs (vectorised fast paths): chunk boundaries move with the thread count,
    // and odd sizes put them at unaligned addresses.
    for (DType dtype : {kF32, kF64}) {
      Tensor x = ops::Cast(ops::Narrow(ops::Reshape(a, {-1}), 0, 1, 100003), dtype);
      for (UnaryOp op :
           {UnaryOp::kExp, UnaryOp::kTanh, UnaryOp::kSigmoid, UnaryOp::kSilu, UnaryOp::kSiluGrad,
            UnaryOp::kGelu, UnaryOp::kGeluTanh, UnaryOp::kGeluTanhGrad, UnaryOp::kSin}) {
        outs.push_back(ops::Unary(op, x));
      }
      Tensor pos = ops::AddScalar(ops::Unary(UnaryOp::kAbs, x), 0.5);
      outs.push_back(ops::Log(pos));
      outs.push_back(ops::Sqrt(pos));
    }
    return outs;
  };
  std::vector<Tensor> ref;
  {
    ScopedNumThreads threads(1);
    ref = run();
  }
  for (int n : {2, 3, 8}) {
    ScopedNumThreads threads(n);
    std::vector<Tensor> got = run();
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_TRUE(BitEqual(got[i], ref[i])) << n << " " << i;
  }
}

}  // namespace
}  // namespace sdpo
