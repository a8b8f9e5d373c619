// Matmul against a naive double loop: every combination of transposed / strided / broadcast
// operands, batched and not, odd sizes (1, 3, 17, 65, 129), f32, f64 and bf16.
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"
#include "tests/tensor/test_util.h"

namespace sdpo {
namespace {

using sdpo::testing::BroadcastIndex;
using sdpo::testing::ErrorMessage;
using sdpo::testing::RandomTensor;
using sdpo::testing::ScopedNumThreads;
using sdpo::testing::Unravel;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// How an operand with logical shape [batch..., R, C] is laid out in memory.
enum class Layout {
  kContiguous,  // plain row-major
  kTransposed,  // Transpose(-1, -2) of a contiguous [batch..., C, R] (no copy needed)
  kStrided,     // every other column of a wider tensor (needs a copy)
  kBatchMajor,  // batch dim moved inside: [R, B, C] permuted to [B, R, C] (needs a copy)
};

const char* LayoutName(Layout l) {
  switch (l) {
    case Layout::kContiguous:
      return "contiguous";
    case Layout::kTransposed:
      return "transposed";
    case Layout::kStrided:
      return "strided";
    case Layout::kBatchMajor:
      return "batch-major";
  }
  return "?";
}

Tensor MakeOperand(const Shape& shape, Layout layout, uint64_t seed, DType dtype) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  switch (layout) {
    case Layout::kContiguous:
      return RandomTensor(shape, seed, dtype);
    case Layout::kTransposed: {
      Shape t = shape;
      std::swap(t[rank - 1], t[rank - 2]);
      return ops::Transpose(RandomTensor(t, seed, dtype), -1, -2);
    }
    case Layout::kStrided: {
      Shape wide = shape;
      wide.back() *= 2;
      return ops::Slice(RandomTensor(wide, seed, dtype), -1, 0, wide.back(), 2);
    }
    case Layout::kBatchMajor: {
      if (rank < 3) return RandomTensor(shape, seed, dtype);
      Shape s = {shape[rank - 2], shape[0]};
      s.insert(s.end(), shape.begin() + 1, shape.end() - 2);
      s.push_back(shape[rank - 1]);
      std::vector<int64_t> perm = {1};
      for (int64_t d = 2; d < rank - 1; ++d) perm.push_back(d);
      perm.push_back(0);
      perm.push_back(rank - 1);
      Tensor t = ops::Permute(RandomTensor(s, seed, dtype), perm);
      EXPECT_EQ(t.shape(), shape);
      return t;
    }
  }
  return Tensor();
}

// Naive matmul in double, returning the result and sum_k |a_ik b_kj| (for error bounds).
void NaiveMatmul(const Tensor& a, const Tensor& b, Shape* out_shape, std::vector<double>* out,
                 std::vector<double>* abs_sum) {
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = ops::BroadcastShapes(ba, bb, "naive");
  *out_shape = batch;
  out_shape->push_back(m);
  out_shape->push_back(n);
  std::vector<double> av = a.ToVector(), bv = b.ToVector();
  int64_t nb = NumElements(batch);
  out->assign(nb * m * n, 0.0);
  abs_sum->assign(nb * m * n, 0.0);
  for (int64_t i = 0; i < nb; ++i) {
    std::vector<int64_t> bidx = Unravel(i, batch);
    const double* pa = av.data() + BroadcastIndex(bidx, ba) * m * k;
    const double* pb = bv.data() + BroadcastIndex(bidx, bb) * k * n;
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < n; ++c) {
        double s = 0, s_abs = 0;
        for (int64_t j = 0; j < k; ++j) {
          s += pa[r * k + j] * pb[j * n + c];
          s_abs += std::abs(pa[r * k + j] * pb[j * n + c]);
        }
        (*out)[(i * m + r) * n + c] = s;
        (*abs_sum)[(i * m + r) * n + c] = s_abs;
      }
  }
}

// |got - ref| <= rel_out * |ref| + rel_sum * sum_k |a b| + 1e-300, element by element.
::testing::AssertionResult MatmulClose(const Tensor& a, const Tensor& b, double rel_out,
                                       double rel_sum) {
  Tensor got = ops::Matmul(a, b);
  Shape shape;
  std::vector<double> ref, abs_sum;
  NaiveMatmul(a, b, &shape, &ref, &abs_sum);
  if (got.shape() != shape) {
    return ::testing::AssertionFailure()
           << "shape " << ShapeStr(got.shape()) << " expected " << ShapeStr(shape);
  }
  if (got.dtype() != a.dtype()) return ::testing::AssertionFailure() << "dtype " << got.str();
  std::vector<double> g = got.ToVector();
  for (size_t i = 0; i < g.size(); ++i) {
    double bound = rel_out * std::abs(ref[i]) + rel_sum * abs_sum[i] + 1e-300;
    if (!(std::abs(g[i] - ref[i]) <= bound)) {
      return ::testing::AssertionFailure()
             << "element " << i << " of " << ShapeStr(shape) << ": " << g[i] << " vs " << ref[i]
             << " (bound " << bound << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

struct Tol {
  double rel_out, rel_sum;
};
Tol TolFor(DType dtype) {
  switch (dtype) {
    case kF64:
      return {0, 1e-14};
    case kF32:
      return {0, 2e-6};
    default:
      return {8e-3, 1e-5};  // bf16/f16: f32 accumulation, one final rounding
  }
}

const int64_t kSizes[] = {1, 3, 17, 65, 129};
const Layout kLayouts2D[] = {Layout::kContiguous, Layout::kTransposed, Layout::kStrided};

TEST(Matmul, TwoDEverySizeAndLayoutF32) {
  for (int64_t m : kSizes)
    for (int64_t k : kSizes)
      for (int64_t n : kSizes)
        for (Layout la : kLayouts2D)
          for (Layout lb : kLayouts2D) {
            // All layout pairs on a subset of sizes; plain/transposed on all sizes.
            bool all_sizes = la != Layout::kStrided && lb != Layout::kStrided;
            if (!all_sizes && (m + k + n) % 2 == 0) continue;
            Tensor a = MakeOperand({m, k}, la, m * 1000 + k, kF32);
            Tensor b = MakeOperand({k, n}, lb, k * 1000 + n + 7, kF32);
            EXPECT_TRUE(MatmulClose(a, b, 0, 2e-6))
                << m << "x" << k << "x" << n << " " << LayoutName(la) << " " << LayoutName(lb);
          }
}

TEST(Matmul, TwoDF64AndReducedPrecision) {
  for (DType dtype : {kF64, kBF16, kF16}) {
    Tol tol = TolFor(dtype);
    for (int64_t m : {1, 17, 129})
      for (int64_t k : {3, 65})
        for (int64_t n : {1, 17, 129})
          for (Layout la : kLayouts2D)
            for (Layout lb : {Layout::kContiguous, Layout::kTransposed}) {
              Tensor a = MakeOperand({m, k}, la, m + k, dtype);
              Tensor b = MakeOperand({k, n}, lb, k + n + 1, dtype);
              EXPECT_TRUE(MatmulClose(a, b, tol.rel_out, tol.rel_sum))
                  << DTypeName(dtype) << " " << m << "x" << k << "x" << n << " " << LayoutName(la)
                  << " " << LayoutName(lb);
            }
  }
}

TEST(Matmul, SmallIntegerValuesAreExactInEveryDType) {
  // [[1, 2], [3, 4]] x [[5, 6], [7, 8]] = [[19, 22], [43, 50]]
  for (DType dtype : {kF32, kF64, kBF16, kF16}) {
    Tensor a = Tensor::FromVector(std::vector<double>{1, 2, 3, 4}, {2, 2}, dtype);
    Tensor b = Tensor::FromVector(std::vector<double>{5, 6, 7, 8}, {2, 2}, dtype);
    EXPECT_THAT(ops::Matmul(a, b).ToVector(), ElementsAre(19, 22, 43, 50)) << DTypeName(dtype);
    EXPECT_THAT(ops::Matmul(ops::Transpose(a, 0, 1), b).ToVector(), ElementsAre(26, 30, 38, 44));
    EXPECT_THAT(ops::Matmul(a, ops::Transpose(b, 0, 1)).ToVector(), ElementsAre(17, 23, 39, 53));
  }
}

struct BatchCase {
  Shape batch_a, batch_b;
};

TEST(Matmul, BatchedAndBroadcastEveryLayout) {
  const std::vector<BatchCase> cases = {
      {{3}, {3}},        // plain batched
      {{3}, {}},         // [B, M, K] x [K, N]: folded into one GEMM when a is contiguous
      {{}, {3}},         // [M, K] x [B, K, N]
      {{3}, {1}},        // size-1 batch broadcast
      {{1}, {2}},        //
      {{2, 1}, {1, 3}},  // both broadcast
      {{2, 3}, {3}},     // different ranks
      {{4}, {2, 1}},     //
      {{1, 1}, {}},      // batch dims of one only
  };
  const Layout layouts[] = {Layout::kContiguous, Layout::kTransposed, Layout::kStrided,
                            Layout::kBatchMajor};
  const int64_t dims[][3] = {{1, 1, 1}, {3, 17, 1}, {17, 3, 65}, {65, 17, 3}, {129, 1, 17}};
  for (const BatchCase& c : cases)
    for (const auto& d : dims)
      for (Layout la : layouts)
        for (Layout lb : layouts)
          for (DType dtype : {kF32, kF64}) {
            if (dtype == kF64 && (la == Layout::kStrided || lb == Layout::kStrided)) continue;
            Shape sa = c.batch_a, sb = c.batch_b;
            sa.insert(sa.end(), {d[0], d[1]});
            sb.insert(sb.end(), {d[1], d[2]});
            Tensor a = MakeOperand(sa, la, 11 + d[0], dtype);
            Tensor b = MakeOperand(sb, lb, 13 + d[2], dtype);
            Tol tol = TolFor(dtype);
            EXPECT_TRUE(MatmulClose(a, b, tol.rel_out, tol.rel_sum))
                << DTypeName(dtype) << " " << a.str() << " (" << LayoutName(la) << ") x " << b.str()
                << " (" << LayoutName(lb) << ")";
          }
}

TEST(Matmul, SequenceTimesWeightAndTransposedWeightViews) {
  // The model's linear layers: x [B, L, K] x W^T where W is [N, K] (a transposed view), and
  // x [B, L, K] x W [K, N]; also x sliced out of a bigger sequence (not contiguous).
  for (DType dtype : {kF32, kBF16}) {
    Tol tol = TolFor(dtype);
    for (int64_t l : {1, 17, 129}) {
      Tensor x = RandomTensor({2, l, 65}, 1, dtype);
      Tensor w = RandomTensor({33, 65}, 2, dtype);
      EXPECT_TRUE(MatmulClose(x, ops::Transpose(w, 0, 1), tol.rel_out, tol.rel_sum));
      EXPECT_TRUE(MatmulClose(x, RandomTensor({65, 33}, 3, dtype), tol.rel_out, tol.rel_sum));
      Tensor xs = ops::Narrow(RandomTensor({2, l + 5, 65}, 4, dtype), 1, 2, l);
      EXPECT_TRUE(MatmulClose(xs, ops::Transpose(w, 0, 1), tol.rel_out, tol.rel_sum));
      Tensor xt = ops::Transpose(RandomTensor({2, 65, l}, 5, dtype), 1, 2);  // [2, l, 65]
      EXPECT_TRUE(MatmulClose(xt, ops::Transpose(w, 0, 1), tol.rel_out, tol.rel_sum));
      // 4-D activations [B, H, L, D] against a shared [D, N].
      Tensor h = RandomTensor({2, 3, l, 17}, 6, dtype);
      EXPECT_TRUE(MatmulClose(h, RandomTensor({17, 5}, 7, dtype), tol.rel_out, tol.rel_sum));
      // Attention-style q k^T with k a transposed view.
      Tensor k = RandomTensor({2, 3, 9, 17}, 8, dtype);
      EXPECT_TRUE(MatmulClose(h, ops::Transpose(k, -1, -2), tol.rel_out, tol.rel_sum));
    }
  }
}

TEST(Matmul, EmptyDims) {
  Tensor z = ops::Matmul(RandomTensor({3, 0}, 1), RandomTensor({0, 4}, 2));
  EXPECT_EQ(z.shape(), Shape({3, 4}));
  EXPECT_EQ(z.ToVector(), std::vector<double>(12, 0.0));
  EXPECT_EQ(ops::Matmul(RandomTensor({0, 5}, 1), RandomTensor({5, 4}, 2)).shape(), Shape({0, 4}));
  EXPECT_EQ(ops::Matmul(RandomTensor({2, 0, 5}, 1), RandomTensor({5, 4}, 2)).shape(),
            Shape({2, 0, 4}));
  EXPECT_EQ(ops::Matmul(RandomTensor({0, 3, 5}, 1), RandomTensor({5, 4}, 2)).shape(),
            Shape({0, 3, 4}));
  Tensor zk = ops::Matmul(RandomTensor({2, 3, 0}, 1, kF64), RandomTensor({2, 0, 2}, 2, kF64));
  EXPECT_EQ(zk.ToVector(), std::vector<double>(12, 0.0));
}

TEST(Matmul, InputsAreNotModifiedAndOutputIsFresh) {
  Tensor a = RandomTensor({3, 17, 5}, 1), b = RandomTensor({5, 4}, 2);
  std::vector<double> av = a.ToVector(), bv = b.ToVector();
  Tensor out = ops::Matmul(a, b);
  EXPECT_EQ(a.ToVector(), av);
  EXPECT_EQ(b.ToVector(), bv);
  EXPECT_FALSE(out.SharesStorage(a));
  EXPECT_TRUE(out.is_contiguous());
}

TEST(Matmul, ThreadCountChangesOnlyRounding) {
  // Shapes that take each of the kernel's paths: batch split, row split (batch < threads and
  // m >= 64), and the folded [B * L, K] product.
  std::vector<std::pair<Tensor, Tensor>> cases = {
      {RandomTensor({1, 129, 65}, 1), RandomTensor({1, 65, 33}, 2)},
      {RandomTensor({2, 257, 17}, 3), ops::Transpose(RandomTensor({2, 40, 17}, 4), 1, 2)},
      {RandomTensor({5, 31, 9}, 5), RandomTensor({5, 9, 3}, 6)},
      {RandomTensor({3, 100, 64}, 7), RandomTensor({64, 48}, 8)},
  };
  for (const auto& [a, b] : cases) {
    Tensor ref;
    {
      ScopedNumThreads threads(1);
      ref = ops::Matmul(a, b);
    }
    for (int n : {2, 3, 5}) {
      ScopedNumThreads threads(n);
      EXPECT_TRUE(sdpo::testing::AllClose(ops::Matmul(a, b), ref, 1e-5, 1e-5))
          << n << " threads, " << a.str() << " x " << b.str();
      EXPECT_TRUE(MatmulClose(a, b, 0, 2e-6));
    }
  }
}

// ------------------------------------------------------------- b narrower than a (mixed)

// Rounding of a k-term dot product in `dtype` as the kernels accumulate it (sequential FMA chains
// per block): about sqrt(k) unit roundoffs of sum |a b|, with a margin of 4.
double MixedRelSum(DType dtype, int64_t k) {
  const double unit = dtype == kF64 ? 0x1p-53 : 0x1p-24;
  return 4.0 * std::sqrt(static_cast<double>(k)) * unit;
}

TEST(Matmul, NarrowerSecondOperandIsUsedAtItsExactValues) {
  // A weight kept in bf16 (or f16, or f32 under f64) times f32 / f64 activations: the product
  // has a's dtype and equals the product of the exactly converted values (the reference reads b
  // as it is stored). Weight layout [N, K] transposed, plain [K, N], strided; batched and folded.
  const std::pair<DType, DType> pairs[] = {
      {kF32, kBF16}, {kF32, kF16}, {kF64, kBF16}, {kF64, kF16}, {kF64, kF32}};
  for (const auto& [da, db] : pairs) {
    for (int64_t m : {1, 17, 65})
      for (int64_t k : {3, 65})
        for (int64_t n : {1, 17, 129})
          for (Layout lb : kLayouts2D) {
            Tensor a = MakeOperand({m, k}, Layout::kContiguous, m + k, da);
            Tensor b = MakeOperand({k, n}, lb, k + n + 1, db);
            EXPECT_TRUE(MatmulClose(a, b, 0, MixedRelSum(da, k)))
                << DTypeName(da) << " x " << DTypeName(db) << " " << m << "x" << k << "x" << n
                << " " << LayoutName(lb);
          }
    const std::pair<Shape, Shape> batched[] = {
        {{2, 5, 17}, {2, 17, 9}}, {{3, 5, 17}, {17, 9}}, {{5, 17}, {3, 17, 9}}};
    for (const auto& [sa, sb] : batched) {
      for (Layout lb : {Layout::kContiguous, Layout::kTransposed}) {
        Tensor a = RandomTensor(sa, 21, da), b = MakeOperand(sb, lb, 22, db);
        EXPECT_TRUE(MatmulClose(a, b, 0, MixedRelSum(da, 17)))
            << a.str() << " x " << b.str() << " " << LayoutName(lb);
      }
    }
  }
}

TEST(Matmul, NarrowerOperandConvertedInSeveralPanels) {
  // The CPU kernel converts b in panels of at least 256 output columns holding about 16 MiB of
  // a's dtype: with k = 16 Mi / (256 * element size) a panel is exactly 256 columns, so n = 520
  // takes panels of 256, 256 and 8 columns.
  for (const auto& [da, lb] : {std::pair<DType, Layout>{kF32, Layout::kTransposed},
                               {kF32, Layout::kContiguous},
                               {kF64, Layout::kTransposed}}) {
    const int64_t k = (int64_t{16} << 20) / (256 * static_cast<int64_t>(ElementSize(da)));
    Tensor a = RandomTensor({2, k}, 31, da), b = MakeOperand({k, 520}, lb, 32, kBF16);
    EXPECT_TRUE(MatmulClose(a, b, 0, MixedRelSum(da, k)))
        << DTypeName(da) << " k " << k << " " << LayoutName(lb);
  }
}

TEST(Matmul, WiderOrIntegerSecondOperandIsRefused) {
  Tensor a16 = RandomTensor({2, 3}, 1, kBF16), b32 = RandomTensor({3, 4}, 2, kF32);
  EXPECT_THAT(ErrorMessage([&] { ops::Matmul(a16, b32); }), HasSubstr("narrower float"));
  Tensor a32 = RandomTensor({2, 3}, 3, kF32);
  Tensor bi = Tensor::FromVector(std::vector<double>(12, 1), {3, 4}, kI64);
  EXPECT_THAT(ErrorMessage([&] { ops::Matmul(a32, bi); }), HasSubstr("dtype mismatch"));
  EXPECT_THAT(ErrorMessage([&] {
                ops::Matmul(RandomTensor({2, 3}, 4, kF16), a16);
              }),
              HasSubstr("dtype mismatch"));
}

}  // namespace
}  // namespace sdpo
