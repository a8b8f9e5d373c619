// Joining and indexing: concat, stack, split, chunk, index_select, index_add, gather,
// scatter_add against naive loops, along every dim, with strided inputs and repeated indices.
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
using sdpo::testing::ErrorMessage;
using sdpo::testing::RandomTensor;
using sdpo::testing::Ravel;
using sdpo::testing::Unravel;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Tensor Index(const std::vector<int64_t>& v, DType dtype = kI64) {
  return ops::Cast(Tensor::FromVector(v, {static_cast<int64_t>(v.size())}), dtype);
}

// Random indices in [0, limit) of the given shape (repeats likely).
Tensor RandomIndex(const Shape& shape, int64_t limit, uint64_t seed) {
  std::vector<double> u = ops::RandomUniform(shape, seed, 0, kF64).ToVector();
  std::vector<int64_t> idx(u.size());
  for (size_t i = 0; i < u.size(); ++i) idx[i] = static_cast<int64_t>(u[i] * limit);
  return Tensor::FromVector(idx, shape);
}

std::vector<int64_t> IndexValues(const Tensor& t) {
  std::vector<double> v = t.ToVector();
  return std::vector<int64_t>(v.begin(), v.end());
}

// ------------------------------------------------------------------------- concat / stack

TEST(Concat, EveryDimMatchesNaiveLoop) {
  for (DType dtype : {kF32, kF64, kBF16, kI64, kBool}) {
    for (int64_t dim = 0; dim < 3; ++dim) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " dim ", dim));
      Shape s0 = {2, 3, 4}, s1 = {2, 3, 4}, s2 = {2, 3, 4};
      s0[dim] = 1;
      s1[dim] = 0;
      s2[dim] = 5;
      // Inputs: contiguous, empty, and a strided view.
      Tensor a = RandomTensor(s0, 1, dtype);
      Tensor b = RandomTensor(s1, 2, dtype);
      Shape s2t = s2;
      std::swap(s2t[0], s2t[2]);
      Tensor c = ops::Transpose(RandomTensor(s2t, 3, dtype), 0, 2);
      ASSERT_EQ(c.shape(), s2);
      Tensor out = ops::Concat({a, b, c}, dim - 3);
      Shape expect = {2, 3, 4};
      expect[dim] = 6;
      ASSERT_EQ(out.shape(), expect);
      EXPECT_EQ(out.dtype(), dtype);
      std::vector<double> ov = out.ToVector(), av = a.ToVector(), cv = c.ToVector();
      for (int64_t i = 0; i < out.numel(); ++i) {
        std::vector<int64_t> idx = Unravel(i, expect);
        double want;
        if (idx[dim] < 1) {
          want = av[Ravel(idx, s0)];
        } else {
          idx[dim] -= 1;
          want = cv[Ravel(idx, s2)];
        }
        ASSERT_EQ(ov[i], want) << i;
      }
    }
  }
  // A single input is copied.
  Tensor x = RandomTensor({3}, 4);
  Tensor y = ops::Concat({x}, 0);
  EXPECT_FALSE(y.SharesStorage(x));
  EXPECT_EQ(y.ToVector(), x.ToVector());
}

TEST(Stack, EveryDimIncludingTheEnd) {
  Tensor a = RandomTensor({2, 3}, 1), b = RandomTensor({2, 3}, 2);
  Tensor bt = ops::Contiguous(ops::Transpose(RandomTensor({3, 2}, 3), 0, 1));
  std::vector<double> av = a.ToVector(), bv = b.ToVector();
  for (int64_t dim = -3; dim < 3; ++dim) {
    Tensor s = ops::Stack({a, b}, dim);
    int64_t d = dim < 0 ? dim + 3 : dim;
    Shape expect = {2, 3};
    expect.insert(expect.begin() + d, 2);
    ASSERT_EQ(s.shape(), expect) << dim;
    std::vector<double> sv = s.ToVector();
    for (int64_t i = 0; i < s.numel(); ++i) {
      std::vector<int64_t> idx = Unravel(i, expect);
      int64_t which = idx[d];
      idx.erase(idx.begin() + d);
      ASSERT_EQ(sv[i], (which == 0 ? av : bv)[Ravel(idx, {2, 3})]);
    }
  }
  EXPECT_EQ(ops::Stack({Tensor::Scalar(1), Tensor::Scalar(2)}, 0).ToVector(),
            std::vector<double>({1, 2}));
  // Strided inputs.
  Tensor t = ops::Transpose(RandomTensor({3, 2}, 3), 0, 1);
  EXPECT_EQ(ops::Stack({t, a}, 1).ToVector(), ops::Stack({bt, a}, 1).ToVector());
}

TEST(SplitChunk, RoundTripWithConcat) {
  Tensor x = RandomTensor({5, 7, 3}, 1, kF64);
  for (int64_t dim = 0; dim < 3; ++dim) {
    for (int64_t chunks : {1, 2, 3, 4, 10}) {
      std::vector<Tensor> parts = ops::Chunk(x, chunks, dim);
      int64_t total = 0;
      for (const Tensor& p : parts) {
        EXPECT_TRUE(p.SharesStorage(x));
        total += p.size(dim);
      }
      EXPECT_EQ(total, x.size(dim));
      EXPECT_EQ(ops::Concat(parts, dim).ToVector(), x.ToVector());
    }
    std::vector<int64_t> sizes = {x.size(dim) - 1, 0, 1};
    EXPECT_EQ(ops::Concat(ops::Split(x, sizes, dim), dim).ToVector(), x.ToVector());
  }
}

// ------------------------------------------------------------------------- index_select /
// index_add

TEST(IndexSelect, EveryDimWithRepeatsAndBothIndexTypes) {
  Shape shape = {4, 5, 6};
  for (DType dtype : {kF32, kF64, kBF16, kI32, kBool}) {
    Tensor x = ops::Permute(RandomTensor({6, 4, 5}, 1, dtype), {1, 2, 0});  // strided [4, 5, 6]
    std::vector<double> xv = x.ToVector();
    for (int64_t dim = 0; dim < 3; ++dim) {
      for (DType idx_dtype : {kI64, kI32}) {
        std::vector<int64_t> iv = {shape[dim] - 1, 0, 2, 2, 0, 1, shape[dim] - 1};
        Tensor out = ops::IndexSelect(x, dim - 3, Index(iv, idx_dtype));
        Shape expect = shape;
        expect[dim] = static_cast<int64_t>(iv.size());
        ASSERT_EQ(out.shape(), expect);
        std::vector<double> ov = out.ToVector();
        for (int64_t i = 0; i < out.numel(); ++i) {
          std::vector<int64_t> idx = Unravel(i, expect);
          idx[dim] = iv[idx[dim]];
          ASSERT_EQ(ov[i], xv[Ravel(idx, shape)]) << DTypeName(dtype) << " dim " << dim;
        }
      }
    }
  }
  // Empty index.
  Tensor x = RandomTensor({3, 4}, 2);
  EXPECT_EQ(ops::IndexSelect(x, 0, Index({})).shape(), Shape({0, 4}));
  EXPECT_EQ(ops::IndexSelect(x, 1, Index({})).shape(), Shape({3, 0}));
  // Non-contiguous index.
  Tensor idx = ops::Slice(Index({2, 9, 0, 9, 1}), 0, 0, 5, 2);  // [2, 0, 1]
  EXPECT_EQ(ops::IndexSelect(x, 0, idx).ToVector(),
            ops::Concat({ops::Narrow(x, 0, 2, 1), ops::Narrow(x, 0, 0, 2)}, 0).ToVector());
}

TEST(IndexAdd, AccumulatesRepeatedIndices) {
  Shape shape = {4, 5, 3};
  for (DType dtype : {kF32, kF64, kBF16, kI64}) {
    for (int64_t dim = 0; dim < 3; ++dim) {
      std::vector<int64_t> iv = {1, 0, 1, shape[dim] - 1, 1};
      Shape src_shape = shape;
      src_shape[dim] = static_cast<int64_t>(iv.size());
      Tensor src = RandomTensor(src_shape, 3 + dim, dtype);
      Tensor out = ops::IndexAdd(shape, dim, Index(iv), src);
      ASSERT_EQ(out.shape(), shape);
      EXPECT_EQ(out.dtype(), dtype);
      std::vector<double> ref(NumElements(shape), 0.0), sv = src.ToVector();
      for (int64_t i = 0; i < src.numel(); ++i) {
        std::vector<int64_t> idx = Unravel(i, src_shape);
        idx[dim] = iv[idx[dim]];
        ref[Ravel(idx, shape)] += sv[i];
      }
      double tol = dtype == kBF16 ? 3e-2 : dtype == kF32 ? 1e-6 : 0;
      EXPECT_TRUE(AllClose(out, ref, tol, tol)) << DTypeName(dtype) << " dim " << dim;
    }
  }
  // Strided src; negative dim; i32 index.
  Tensor src = ops::Transpose(RandomTensor({3, 2}, 9, kF64), 0, 1);  // [2, 3]
  Tensor out = ops::IndexAdd({2, 4}, -1, Index({3, 3, 0}, kI32), src);
  std::vector<double> s = src.ToVector();
  EXPECT_TRUE(AllClose(out, {s[2], 0, 0, s[0] + s[1], s[5], 0, 0, s[3] + s[4]}, 1e-15, 0));
}

TEST(IndexAdd, IsTheAdjointOfIndexSelect) {
  // <IndexSelect(x, idx), g> == <x, IndexAdd(x.shape, idx, g)>.
  Tensor x = RandomTensor({6, 7}, 1, kF64);
  Tensor idx = RandomIndex({11}, 7, 2);
  Tensor g = RandomTensor({6, 11}, 3, kF64);
  double lhs = ops::Sum(ops::Mul(ops::IndexSelect(x, 1, idx), g)).item();
  double rhs = ops::Sum(ops::Mul(x, ops::IndexAdd({6, 7}, 1, idx, g))).item();
  EXPECT_NEAR(lhs, rhs, 1e-12);
}

// ------------------------------------------------------------------------- gather / scatter_add

TEST(Gather, EveryDimMatchesNaiveLoop) {
  Shape shape = {3, 4, 5};
  for (DType dtype : {kF32, kF64, kI64}) {
    Tensor x = ops::Transpose(RandomTensor({5, 4, 3}, 1, dtype), 0, 2);  // strided [3, 4, 5]
    std::vector<double> xv = x.ToVector();
    for (int64_t dim = 0; dim < 3; ++dim) {
      Shape ishape = shape;
      ishape[dim] = 7;  // gather more (with repeats) than the dim holds
      Tensor index = RandomIndex(ishape, shape[dim], 10 + dim);
      Tensor out = ops::Gather(x, dim, index);
      ASSERT_EQ(out.shape(), ishape);
      EXPECT_EQ(out.dtype(), dtype);
      std::vector<int64_t> iv = IndexValues(index);
      std::vector<double> ov = out.ToVector();
      for (int64_t i = 0; i < out.numel(); ++i) {
        std::vector<int64_t> idx = Unravel(i, ishape);
        idx[dim] = iv[i];
        ASSERT_EQ(ov[i], xv[Ravel(idx, shape)]) << "dim " << dim << " element " << i;
      }
    }
  }
  // Typical use: pick one class per row; i32 index, negative dim, strided index.
  Tensor logits = RandomTensor({4, 6}, 2);
  Tensor labels = ops::Unsqueeze(Index({5, 0, 3, 3}, kI32), 1);
  Tensor picked = ops::Gather(logits, -1, labels);
  EXPECT_EQ(picked.shape(), Shape({4, 1}));
  EXPECT_THAT(picked.ToVector(), ElementsAre(logits.at({0, 5}), logits.at({1, 0}),
                                             logits.at({2, 3}), logits.at({3, 3})));
  Tensor strided_idx =
      ops::Transpose(ops::Contiguous(ops::Transpose(ops::Expand(labels, {4, 2}), 0, 1)), 0, 1);
  EXPECT_EQ(ops::Gather(logits, 1, strided_idx).ToVector(),
            ops::Gather(logits, 1, ops::Contiguous(strided_idx)).ToVector());
}

TEST(ScatterAdd, AccumulatesAndIsTheAdjointOfGather) {
  Shape shape = {3, 4, 5};
  for (int64_t dim = 0; dim < 3; ++dim) {
    Shape ishape = shape;
    ishape[dim] = 6;
    Tensor index = RandomIndex(ishape, shape[dim], 20 + dim);
    Tensor src = RandomTensor(ishape, 30 + dim, kF64);
    Tensor out = ops::ScatterAdd(shape, dim, index, src);
    ASSERT_EQ(out.shape(), shape);
    std::vector<int64_t> iv = IndexValues(index);
    std::vector<double> sv = src.ToVector(), ref(NumElements(shape), 0.0);
    for (int64_t i = 0; i < src.numel(); ++i) {
      std::vector<int64_t> idx = Unravel(i, ishape);
      idx[dim] = iv[i];
      ref[Ravel(idx, shape)] += sv[i];
    }
    EXPECT_TRUE(AllClose(out, ref, 1e-14, 1e-15)) << "dim " << dim;
    // <Gather(x, idx), g> == <x, ScatterAdd(shape, idx, g)>.
    Tensor x = RandomTensor(shape, 40 + dim, kF64);
    double lhs = ops::Sum(ops::Mul(ops::Gather(x, dim, index), src)).item();
    double rhs = ops::Sum(ops::Mul(x, out)).item();
    EXPECT_NEAR(lhs, rhs, 1e-12);
  }
  // Strided src and f32 / bf16.
  Tensor idx = Tensor::FromVector(std::vector<int64_t>{0, 0, 1, 1, 0, 1}, {2, 3});
  for (DType dtype : {kF32, kBF16}) {
    Tensor src =
        ops::Transpose(Tensor::FromVector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2}, dtype), 0,
                       1);  // [[1, 3, 5], [2, 4, 6]]
    EXPECT_THAT(ops::ScatterAdd({2, 3}, 0, idx, src).ToVector(), ElementsAre(1, 7, 0, 2, 0, 11));
  }
}

}  // namespace
}  // namespace sdpo
