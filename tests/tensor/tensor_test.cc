// Tensor creation, metadata, views (shared storage, writes visible through views), copies,
// casts and device moves.
#include "tensor/tensor.h"

#include <cmath>
#include <limits>
#include <numeric>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tensor/ops.h"
#include "tensor/storage.h"
#include "tests/tensor/test_util.h"

namespace sdpo {
namespace {

using sdpo::testing::AllClose;
using sdpo::testing::ErrorMessage;
using sdpo::testing::RandomTensor;
using sdpo::testing::Unravel;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

const DType kAllDTypes[] = {kF32, kF64, kBF16, kF16, kI32, kI64, kBool};

// 0, 1, 2, ... in a tensor of `shape` (f32 unless told).
Tensor Iota(const Shape& shape, DType dtype = kF32) {
  std::vector<double> v(NumElements(shape));
  std::iota(v.begin(), v.end(), 0.0);
  return Tensor::FromVector(v, shape, dtype);
}

// The value at multi-index idx of a strided view, read straight from its storage.
double ViewAt(const Tensor& t, const std::vector<int64_t>& idx) {
  int64_t off = t.offset();
  for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * t.strides()[d];
  return Tensor::FromStorage(t.storage(), {}, {}, off, t.dtype()).item();
}

// ------------------------------------------------------------------------- creation / metadata

TEST(TensorCreation, EmptyHasContiguousStrides) {
  for (DType dtype : kAllDTypes) {
    Tensor t = Tensor::Empty({2, 3, 4}, dtype);
    EXPECT_TRUE(t.defined());
    EXPECT_EQ(t.shape(), Shape({2, 3, 4}));
    EXPECT_EQ(t.strides(), Shape({12, 4, 1}));
    EXPECT_EQ(t.dim(), 3);
    EXPECT_EQ(t.numel(), 24);
    EXPECT_EQ(t.nbytes(), 24 * ElementSize(dtype));
    EXPECT_EQ(t.dtype(), dtype);
    EXPECT_TRUE(t.device().is_cpu());
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_EQ(t.offset(), 0);
    EXPECT_GE(t.storage()->nbytes(), t.nbytes());
  }
}

TEST(TensorCreation, ZerosOnesFullForEveryDType) {
  for (DType dtype : kAllDTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    EXPECT_THAT(Tensor::Zeros({5}, dtype).ToVector(), ElementsAre(0, 0, 0, 0, 0));
    EXPECT_THAT(Tensor::Ones({2, 2}, dtype).ToVector(), ElementsAre(1, 1, 1, 1));
    double v = dtype == kBool ? 1 : 3;
    EXPECT_THAT(Tensor::Full({3}, v, dtype).ToVector(), ElementsAre(v, v, v));
  }
  EXPECT_EQ(Tensor::Full({1}, 0.1, kF32).item(), static_cast<double>(0.1f));
  EXPECT_EQ(Tensor::Full({1}, 0.1, kF64).item(), 0.1);
  EXPECT_EQ(Tensor::Full({1}, 1.0 + 1.0 / 512, kBF16).item(), 1.0);  // rounds to 8 bits
  EXPECT_EQ(Tensor::Full({1}, -2.7, kI32).item(), -2);               // truncates
}

TEST(TensorCreation, ScalarIsZeroDim) {
  Tensor s = Tensor::Scalar(2.5, kF64);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_TRUE(s.shape().empty());
  EXPECT_TRUE(s.is_contiguous());
  EXPECT_EQ(s.item(), 2.5);
  EXPECT_EQ(s.at({}), 2.5);
  EXPECT_EQ(s.str(), "f64[] cpu");
}

TEST(TensorCreation, ZeroSizedTensors) {
  Tensor t = Tensor::Zeros({0, 3});
  EXPECT_EQ(t.numel(), 0);
  EXPECT_EQ(t.nbytes(), 0u);
  EXPECT_TRUE(t.ToVector().empty());
  Tensor u = Tensor::Empty({4, 0, 2}, kF64);
  EXPECT_EQ(u.numel(), 0);
  EXPECT_EQ(ops::Clone(u).shape(), Shape({4, 0, 2}));
}

TEST(TensorCreation, Arange) {
  EXPECT_THAT(Tensor::Arange(0, 5).ToVector(), ElementsAre(0, 1, 2, 3, 4));
  EXPECT_THAT(Tensor::Arange(1, 2, 0.25, kF64).ToVector(), ElementsAre(1, 1.25, 1.5, 1.75));
  EXPECT_THAT(Tensor::Arange(3, 0, -1, kI64).ToVector(), ElementsAre(3, 2, 1));
  Tensor a = Tensor::Arange(0, 1, 0.3, kF64);  // ceil(1 / 0.3) = 4 elements
  ASSERT_EQ(a.numel(), 4);
  EXPECT_DOUBLE_EQ(a.at({3}), 0.9);
  EXPECT_EQ(Tensor::Arange(5, 1).numel(), 0);
  EXPECT_EQ(Tensor::Arange(0, 5, 1, kI32).dtype(), kI32);
}

TEST(TensorCreation, FromVectorConvertsToTheDType) {
  std::vector<double> d = {1.5, -2.25, 3.0, 0.0};
  EXPECT_THAT(Tensor::FromVector(d, {2, 2}, kF64).ToVector(), ElementsAreArray(d));
  EXPECT_THAT(Tensor::FromVector(d, {4}, kI32).ToVector(), ElementsAre(1, -2, 3, 0));
  EXPECT_THAT(Tensor::FromVector(d, {4}, kBool).ToVector(), ElementsAre(1, 1, 1, 0));
  EXPECT_THAT(Tensor::FromVector(d, {4}, kBF16).ToVector(), ElementsAreArray(d));
  EXPECT_THAT(Tensor::FromVector(d, {4}, kF16).ToVector(), ElementsAreArray(d));
  std::vector<float> f = {0.5f, 1e-3f};
  EXPECT_THAT(Tensor::FromVector(f, {2}).ToVector(), ElementsAre(0.5, static_cast<double>(1e-3f)));
  std::vector<int64_t> big = {(int64_t{1} << 53) + 1, -7};
  Tensor b = Tensor::FromVector(big, {2});
  EXPECT_EQ(b.dtype(), kI64);
  EXPECT_EQ(b.data<int64_t>()[0], (int64_t{1} << 53) + 1);
  EXPECT_EQ(b.data<int64_t>()[1], -7);
}

TEST(TensorMetadata, SizesStridesAndNames) {
  Tensor t = Tensor::Zeros({2, 3, 4}, kBF16);
  EXPECT_EQ(t.size(0), 2);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(t.size(-3), 2);
  EXPECT_EQ(t.stride(0), 12);
  EXPECT_EQ(t.stride(-2), 4);
  EXPECT_EQ(t.str(), "bf16[2, 3, 4] cpu");
  EXPECT_EQ(ShapeStr({}), "[]");
  EXPECT_EQ(ShapeStr({7}), "[7]");
  EXPECT_EQ(NumElements({}), 1);
  EXPECT_EQ(NumElements({3, 0, 2}), 0);
  EXPECT_EQ(ContiguousStrides({2, 3, 4}), Shape({12, 4, 1}));
  EXPECT_EQ(WrapDim(-1, 3, "op"), 2);
  EXPECT_EQ(WrapDim(2, 3, "op"), 2);
  EXPECT_EQ(WrapDim(-1, 0, "op"), 0);  // 0-d tensors accept dim 0 / -1 (reductions)
  EXPECT_THAT(ErrorMessage([&] { t.size(3); }), HasSubstr("out of range"));
  EXPECT_THAT(ErrorMessage([&] { t.stride(-4); }), HasSubstr("out of range"));
  Tensor undefined;
  EXPECT_FALSE(undefined.defined());
  EXPECT_EQ(undefined.str(), "undefined");
  EXPECT_THAT(ErrorMessage([&] { undefined.shape(); }), HasSubstr("undefined tensor"));
}

TEST(TensorMetadata, SizeOfAZeroDimTensorIsAnErrorNotACrash) {
  Tensor s = Tensor::Scalar(1);
  EXPECT_THAT(ErrorMessage([&] { s.size(0); }), HasSubstr("0-d"));
  EXPECT_THAT(ErrorMessage([&] { s.stride(-1); }), HasSubstr("0-d"));
}

TEST(TensorMetadata, TypedDataChecksTheDType) {
  Tensor t = Tensor::Zeros({2}, kF64);
  EXPECT_NE(t.data<double>(), nullptr);
  EXPECT_THAT(ErrorMessage([&] { t.data<float>(); }), HasSubstr("data<f32>() on a f64 tensor"));
}

TEST(TensorMetadata, ItemAndAt) {
  Tensor t = Iota({2, 3});
  EXPECT_EQ(t.at({1, 2}), 5);
  EXPECT_EQ(t.at({0, 1}), 1);
  EXPECT_THAT(ErrorMessage([&] { t.item(); }), HasSubstr("6 elements"));
  EXPECT_THAT(ErrorMessage([&] { t.at({2, 0}); }), HasSubstr("out of range"));
  EXPECT_THAT(ErrorMessage([&] { t.at({0}); }), HasSubstr("1 indices"));
  Tensor tt = ops::Transpose(t, 0, 1);
  EXPECT_EQ(tt.at({2, 1}), 5);
  EXPECT_EQ(tt.at({1, 0}), 1);
  EXPECT_THAT(tt.ToVector(), ElementsAre(0, 3, 1, 4, 2, 5));
  EXPECT_THAT(tt.ToFloatVector(), ElementsAre(0, 3, 1, 4, 2, 5));
}

TEST(TensorMetadata, IsContiguous) {
  Tensor t = Iota({2, 3, 4});
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_FALSE(ops::Transpose(t, 1, 2).is_contiguous());
  EXPECT_TRUE(ops::Narrow(t, 0, 1, 1).is_contiguous());
  EXPECT_FALSE(ops::Narrow(t, 2, 0, 3).is_contiguous());
  EXPECT_TRUE(ops::Select(t, 0, 1).is_contiguous());
  EXPECT_FALSE(ops::Select(t, 2, 1).is_contiguous());
  EXPECT_TRUE(ops::Unsqueeze(t, 1).is_contiguous());
  EXPECT_FALSE(ops::Expand(ops::Unsqueeze(t, 0), {5, 2, 3, 4}).is_contiguous());
  // A transpose of size-1 dims is still contiguous.
  EXPECT_TRUE(ops::Transpose(Iota({1, 1, 5}), 0, 1).is_contiguous());
}

TEST(TensorStorage, FromStorageRejectsViewsOutsideTheStorage) {
  Tensor t = Iota({2, 3});
  EXPECT_EQ(Tensor::FromStorage(t.storage(), {3}, {2}, 1, kF32).ToVector(),
            std::vector<double>({1, 3, 5}));
  EXPECT_THAT(ErrorMessage([&] { Tensor::FromStorage(t.storage(), {3}, {2}, 2, kF32); }),
              HasSubstr("FromStorage"));
  EXPECT_THAT(ErrorMessage([&] { Tensor::FromStorage(t.storage(), {7}, {1}, 0, kF32); }),
              HasSubstr("FromStorage"));
  EXPECT_THAT(ErrorMessage([&] { Tensor::FromStorage(t.storage(), {2}, {1}, -1, kF32); }),
              HasSubstr("FromStorage"));
  EXPECT_THAT(ErrorMessage([&] { Tensor::FromStorage(t.storage(), {4}, {1}, 0, kF64); }),
              HasSubstr("FromStorage"));
  // Zero elements touch nothing (e.g. an empty slice past the end of a narrowed view).
  EXPECT_EQ(Tensor::FromStorage(t.storage(), {0, 4}, {4, 1}, 6, kF32).numel(), 0);
}

// ------------------------------------------------------------------------- views

TEST(TensorViews, ViewSharesStorageAndInfersMinusOne) {
  Tensor t = Iota({2, 3, 4});
  Tensor v = ops::View(t, {4, -1});
  EXPECT_EQ(v.shape(), Shape({4, 6}));
  EXPECT_TRUE(v.SharesStorage(t));
  EXPECT_EQ(v.ToVector(), t.ToVector());
  EXPECT_EQ(ops::View(t, {-1}).shape(), Shape({24}));
  EXPECT_EQ(ops::View(t, {1, 24, 1}).strides()[1], 1);
  EXPECT_EQ(ops::View(Tensor::Scalar(3), {1, 1}).ToVector(), std::vector<double>({3}));
  EXPECT_EQ(ops::View(Iota({1}), {}).dim(), 0);
  // A view of a non-contiguous tensor where the strides allow it.
  Tensor p = ops::Permute(t, {1, 2, 0});  // [3, 4, 2]
  Tensor pv = ops::View(p, {12, 2});      // dims 0 and 1 of p are contiguous together
  EXPECT_TRUE(pv.SharesStorage(t));
  EXPECT_EQ(pv.ToVector(), ops::Contiguous(p).ToVector());
  // Splitting a dim of a strided view.
  Tensor n = ops::Narrow(t, 2, 1, 2);  // [2, 3, 2], strides [12, 4, 1]
  Tensor nv = ops::View(n, {2, 3, 2, 1});
  EXPECT_EQ(nv.ToVector(), n.ToVector());
}

TEST(TensorViews, ViewOfIncompatibleStridesFailsAndReshapeCopies) {
  Tensor t = Iota({3, 4});
  Tensor tt = ops::Transpose(t, 0, 1);
  EXPECT_THAT(ErrorMessage([&] { ops::View(tt, {12}); }), HasSubstr("use reshape"));
  Tensor r = ops::Reshape(tt, {12});
  EXPECT_FALSE(r.SharesStorage(t));
  EXPECT_EQ(r.ToVector(), ops::Contiguous(tt).ToVector());
  Tensor r2 = ops::Reshape(t, {2, 6});  // a view when possible
  EXPECT_TRUE(r2.SharesStorage(t));
}

TEST(TensorViews, ViewAndReshapeOfZeroSizedTensors) {
  Tensor e = Tensor::Zeros({0, 4});
  EXPECT_EQ(ops::View(e, {4, 0}).shape(), Shape({4, 0}));
  EXPECT_EQ(ops::View(e, {0, 2, 2}).shape(), Shape({0, 2, 2}));
  EXPECT_EQ(ops::View(e, {-1, 2}).shape(), Shape({0, 2}));
  EXPECT_EQ(ops::Reshape(e, {2, 0, 3}).shape(), Shape({2, 0, 3}));
  EXPECT_EQ(ops::Flatten(Tensor::Zeros({2, 0, 3})).shape(), Shape({0}));
  EXPECT_EQ(ops::View(ops::Transpose(Tensor::Zeros({3, 0}), 0, 1), {0, 3}).numel(), 0);
}

TEST(TensorViews, Flatten) {
  Tensor t = Iota({2, 3, 4, 5});
  EXPECT_EQ(ops::Flatten(t).shape(), Shape({120}));
  EXPECT_EQ(ops::Flatten(t, 1).shape(), Shape({2, 60}));
  EXPECT_EQ(ops::Flatten(t, 1, 2).shape(), Shape({2, 12, 5}));
  EXPECT_EQ(ops::Flatten(t, -2, -1).shape(), Shape({2, 3, 20}));
  EXPECT_EQ(ops::Flatten(Tensor::Scalar(4)).shape(), Shape({1}));
  EXPECT_TRUE(ops::Flatten(t, 1, 2).SharesStorage(t));
  Tensor tt = ops::Transpose(t, 0, 3);
  EXPECT_EQ(ops::Flatten(tt).ToVector(), ops::Contiguous(tt).ToVector());
}

TEST(TensorViews, PermuteAndTransposeMatchNaiveIndexing) {
  Shape shape = {2, 3, 4};
  Tensor t = Iota(shape);
  std::vector<std::vector<int64_t>> perms = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                             {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  for (const auto& perm : perms) {
    Tensor p = ops::Permute(t, perm);
    EXPECT_TRUE(p.SharesStorage(t));
    for (int d = 0; d < 3; ++d) EXPECT_EQ(p.size(d), shape[perm[d]]);
    std::vector<double> got = p.ToVector();
    for (int64_t i = 0; i < p.numel(); ++i) {
      std::vector<int64_t> pi = Unravel(i, p.shape()), ti(3);
      for (int d = 0; d < 3; ++d) ti[perm[d]] = pi[d];
      ASSERT_EQ(got[i], sdpo::testing::Ravel(ti, shape));
    }
  }
  EXPECT_EQ(ops::Permute(t, {-1, 0, 1}).shape(), Shape({4, 2, 3}));
  Tensor tr = ops::Transpose(t, -1, 0);
  EXPECT_EQ(tr.shape(), Shape({4, 3, 2}));
  EXPECT_EQ(tr.strides(), Shape({1, 4, 12}));
  EXPECT_EQ(tr.at({3, 2, 1}), 12 + 8 + 3);
}

TEST(TensorViews, NarrowSliceSelect) {
  Tensor t = Iota({4, 6});
  Tensor n = ops::Narrow(t, 1, 2, 3);
  EXPECT_EQ(n.shape(), Shape({4, 3}));
  EXPECT_EQ(n.offset(), 2);
  EXPECT_THAT(ops::Select(n, 0, 1).ToVector(), ElementsAre(8, 9, 10));
  EXPECT_EQ(ops::Narrow(t, 0, 4, 0).numel(), 0);

  EXPECT_THAT(ops::Slice(t, 1, 1, 6, 2).ToVector(),
              ElementsAre(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23));
  EXPECT_THAT(ops::Slice(t, 0, -2, 4).ToVector(),
              ElementsAre(12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23));
  EXPECT_THAT(ops::Slice(t, 1, 0, -4).ToVector(), ElementsAre(0, 1, 6, 7, 12, 13, 18, 19));
  EXPECT_EQ(ops::Slice(t, 0, 3, 100).shape(), Shape({1, 6}));  // clamped
  EXPECT_EQ(ops::Slice(t, 0, 5, 100).shape(), Shape({0, 6}));
  EXPECT_EQ(ops::Slice(t, 0, 3, 1).shape(), Shape({0, 6}));
  EXPECT_EQ(ops::Slice(n, 0, 4, 9).shape(), Shape({0, 3}));  // empty, past the end of a view
  EXPECT_THAT(ops::Slice(t, 0, 0, 4, 3).ToVector(),
              ElementsAre(0, 1, 2, 3, 4, 5, 18, 19, 20, 21, 22, 23));

  EXPECT_THAT(ops::Select(t, 1, -1).ToVector(), ElementsAre(5, 11, 17, 23));
  EXPECT_THAT(ops::Select(t, 0, 2).ToVector(), ElementsAre(12, 13, 14, 15, 16, 17));
  EXPECT_EQ(ops::Select(ops::Select(t, 0, 1), 0, 1).dim(), 0);
  EXPECT_EQ(ops::Select(ops::Select(t, 0, 1), 0, 1).item(), 7);
  for (const Tensor& v : {n, ops::Slice(t, 1, 1, 6, 2), ops::Select(t, 1, 3)}) {
    EXPECT_TRUE(v.SharesStorage(t));
  }
}

TEST(TensorViews, ExpandUnsqueezeSqueeze) {
  Tensor t = Iota({3, 1});
  Tensor e = ops::Expand(t, {2, 3, 4});
  EXPECT_EQ(e.strides(), Shape({0, 1, 0}));
  EXPECT_TRUE(e.SharesStorage(t));
  std::vector<double> got = e.ToVector();
  for (int64_t i = 0; i < e.numel(); ++i) EXPECT_EQ(got[i], Unravel(i, e.shape())[1]);
  EXPECT_EQ(ops::Expand(t, {3, 1}).strides(), t.strides());
  EXPECT_EQ(ops::Expand(Tensor::Scalar(2), {2, 2}).ToVector(), std::vector<double>(4, 2));

  Tensor u = ops::Unsqueeze(Iota({2, 3}), 1);
  EXPECT_EQ(u.shape(), Shape({2, 1, 3}));
  EXPECT_EQ(ops::Unsqueeze(Iota({2, 3}), -1).shape(), Shape({2, 3, 1}));
  EXPECT_EQ(ops::Unsqueeze(Iota({2, 3}), 0).shape(), Shape({1, 2, 3}));
  EXPECT_EQ(ops::Unsqueeze(Tensor::Scalar(1), 0).shape(), Shape({1}));
  EXPECT_TRUE(u.is_contiguous());
  EXPECT_EQ(ops::Squeeze(u, 1).shape(), Shape({2, 3}));
  EXPECT_EQ(ops::Squeeze(u, -2).ToVector(), Iota({2, 3}).ToVector());
}

TEST(TensorViews, SplitAndChunk) {
  Tensor t = Iota({7, 2});
  std::vector<Tensor> parts = ops::Split(t, {2, 0, 5}, 0);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].shape(), Shape({2, 2}));
  EXPECT_EQ(parts[1].shape(), Shape({0, 2}));
  EXPECT_THAT(parts[2].ToVector(), ElementsAre(4, 5, 6, 7, 8, 9, 10, 11, 12, 13));
  for (const Tensor& p : parts) EXPECT_TRUE(p.SharesStorage(t));

  std::vector<Tensor> chunks = ops::Chunk(t, 3, 0);  // 7 = 3 + 3 + 1
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].size(0), 3);
  EXPECT_EQ(chunks[1].size(0), 3);
  EXPECT_EQ(chunks[2].size(0), 1);
  EXPECT_THAT(chunks[2].ToVector(), ElementsAre(12, 13));
  std::vector<Tensor> cols = ops::Chunk(t, 2, -1);
  ASSERT_EQ(cols.size(), 2u);
  EXPECT_THAT(cols[1].ToVector(), ElementsAre(1, 3, 5, 7, 9, 11, 13));
  EXPECT_EQ(ops::Chunk(Iota({6}), 4, 0).size(), 3u);  // 2 + 2 + 2, like torch
  EXPECT_EQ(ops::Chunk(Iota({2}), 5, 0).size(), 2u);
}

TEST(TensorViews, WritesThroughViewsAreVisible) {
  Tensor t = Tensor::Zeros({3, 4});
  ops::Fill(ops::Select(t, 0, 1), 7);
  ops::Fill(ops::Slice(t, 1, 0, 4, 3), 1);                      // columns 0 and 3
  ops::Fill(ops::Narrow(ops::Transpose(t, 0, 1), 0, 2, 1), 5);  // column 2
  EXPECT_THAT(t.ToVector(), ElementsAre(1, 0, 5, 1, 1, 7, 5, 1, 1, 0, 5, 1));
  // CopyInto a transposed view writes the base in transposed order.
  Tensor base = Tensor::Zeros({2, 3});
  ops::CopyInto(ops::Transpose(base, 0, 1), Iota({3, 2}));
  EXPECT_THAT(base.ToVector(), ElementsAre(0, 2, 4, 1, 3, 5));
  // Split parts alias the base.
  std::vector<Tensor> parts = ops::Chunk(base, 3, 1);
  ops::Fill(parts[1], -1);
  EXPECT_THAT(base.ToVector(), ElementsAre(0, -1, 4, 1, -1, 5));
  // Writes to the base are visible through an existing view.
  Tensor v = ops::View(base, {6});
  ops::Fill(base, 9);
  EXPECT_THAT(v.ToVector(), ElementsAre(9, 9, 9, 9, 9, 9));
  // Views of views keep the right offset.
  Tensor big = Iota({4, 5, 6});
  Tensor vv = ops::Select(ops::Narrow(ops::Transpose(big, 0, 2), 1, 1, 3), 0, 4);  // [3, 4]
  ops::Fill(vv, -3);
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 5; ++j)
      for (int64_t k = 0; k < 6; ++k) {
        bool hit = k == 4 && j >= 1 && j < 4;
        ASSERT_EQ(big.at({i, j, k}), hit ? -3 : (i * 5 + j) * 6 + k);
      }
}

TEST(TensorViews, ViewAtMatchesStrides) {
  Tensor t = Iota({3, 4, 5}, kF64);
  Tensor v = ops::Slice(ops::Permute(t, {2, 0, 1}), 0, 1, 5, 2);  // [2, 3, 4]
  std::vector<double> got = v.ToVector();
  for (int64_t i = 0; i < v.numel(); ++i) {
    std::vector<int64_t> idx = Unravel(i, v.shape());
    EXPECT_EQ(got[i], ViewAt(v, idx));
    EXPECT_EQ(got[i], (idx[1] * 4 + idx[2]) * 5 + (1 + 2 * idx[0]));
  }
}

// ------------------------------------------------------------------------- copies and casts

TEST(TensorCopy, ContiguousAndClone) {
  Tensor t = Iota({3, 4});
  EXPECT_EQ(ops::Contiguous(t).impl_ptr(), t.impl_ptr());
  Tensor c = ops::Clone(t);
  EXPECT_FALSE(c.SharesStorage(t));
  EXPECT_EQ(c.ToVector(), t.ToVector());
  ops::Fill(c, 0);
  EXPECT_EQ(t.at({2, 3}), 11);
  Tensor tt = ops::Transpose(t, 0, 1);
  Tensor ct = ops::Contiguous(tt);
  EXPECT_TRUE(ct.is_contiguous());
  EXPECT_FALSE(ct.SharesStorage(t));
  EXPECT_EQ(ct.ToVector(), tt.ToVector());
  Tensor e = ops::Expand(Iota({1, 3}), {2, 3});
  EXPECT_THAT(ops::Clone(e).ToVector(), ElementsAre(0, 1, 2, 0, 1, 2));
}

TEST(TensorCopy, CopyIntoBroadcastsAndConverts) {
  Tensor dst = Tensor::Zeros({2, 3}, kF64);
  ops::CopyInto(dst, Tensor::FromVector(std::vector<double>{1.5, 2.5, 3.5}, {3}, kF32));
  EXPECT_THAT(dst.ToVector(), ElementsAre(1.5, 2.5, 3.5, 1.5, 2.5, 3.5));
  ops::CopyInto(dst, Tensor::Scalar(4, kI32));
  EXPECT_THAT(dst.ToVector(), ElementsAre(4, 4, 4, 4, 4, 4));
  Tensor idst = Tensor::Zeros({3}, kI64);
  ops::CopyInto(idst, Tensor::FromVector(std::vector<double>{-1.7, 0.2, 9.9}, {3}, kF64));
  EXPECT_THAT(idst.ToVector(), ElementsAre(-1, 0, 9));
  const Tensor& ret = ops::CopyInto(idst, Tensor::Ones({1}, kBool));
  EXPECT_EQ(ret.impl_ptr(), idst.impl_ptr());
  EXPECT_THAT(idst.ToVector(), ElementsAre(1, 1, 1));
}

TEST(TensorCopy, CastBetweenAllDTypes) {
  std::vector<double> vals = {0, 1, -2, 3.75, 100, -0.5};
  for (DType from : kAllDTypes) {
    for (DType to : kAllDTypes) {
      SCOPED_TRACE(absl::StrCat(DTypeName(from), " -> ", DTypeName(to)));
      Tensor x = Tensor::FromVector(vals, {2, 3}, from);
      Tensor y = ops::Cast(x, to);
      EXPECT_EQ(y.dtype(), to);
      EXPECT_EQ(y.shape(), x.shape());
      if (from == to) {
        EXPECT_EQ(y.impl_ptr(), x.impl_ptr());
      }
      std::vector<double> xs = x.ToVector(), ys = y.ToVector();
      for (size_t i = 0; i < vals.size(); ++i) {
        double expect = xs[i];
        if (to == kBool) expect = expect != 0;
        if (to == kI32 || to == kI64) expect = std::trunc(expect);
        EXPECT_EQ(ys[i], expect) << i;
      }
    }
  }
  // Rounding to nearest even on the way down.
  Tensor f = Tensor::FromVector(std::vector<double>{1.0 + 1.0 / 256, 1.0 + 3.0 / 256, 1e-8, 70000},
                                {4}, kF32);
  EXPECT_THAT(ops::Cast(f, kBF16).ToVector(),
              ElementsAre(1.0, 1.0 + 4.0 / 256, ::testing::DoubleNear(1e-8, 1e-10), 70144));
  EXPECT_THAT(ops::Cast(f, kF16).ToVector(),
              ElementsAre(1.00390625, 1.01171875, 0, std::numeric_limits<double>::infinity()));
  // Casting a strided view.
  Tensor t = Iota({3, 4}, kF64);
  EXPECT_EQ(ops::Cast(ops::Transpose(t, 0, 1), kI32).ToVector(),
            ops::Transpose(t, 0, 1).ToVector());
  // NaN survives f32 -> bf16 -> f16 -> f64.
  Tensor nan = Tensor::Full({1}, std::nan(""), kF32);
  EXPECT_TRUE(std::isnan(ops::Cast(ops::Cast(ops::Cast(nan, kBF16), kF16), kF64).item()));
}

TEST(TensorCopy, ToSameDeviceIsIdentityAndMissingCudaIsAnError) {
  Tensor t = Iota({2});
  EXPECT_EQ(ops::To(t, Device::CPU()).impl_ptr(), t.impl_ptr());
  if (!HasDeviceBackend(DeviceType::kCUDA)) {
    EXPECT_THAT(ErrorMessage([&] { ops::To(t, Device::CUDA(0)); }), HasSubstr("cuda"));
    EXPECT_THAT(ErrorMessage([&] { Tensor::Zeros({2}, kF32, Device::CUDA(0)); }),
                HasSubstr("cuda"));
  }
  EXPECT_EQ(Device::CUDA(1).str(), "cuda:1");
  EXPECT_EQ(Device::CPU().str(), "cpu");
}

TEST(TensorCopy, FillEveryDTypeOnAStridedView) {
  for (DType dtype : kAllDTypes) {
    Tensor t = Tensor::Zeros({4, 4}, dtype);
    ops::Fill(ops::Slice(ops::Transpose(t, 0, 1), 0, 1, 4, 2), 1);  // columns 1 and 3
    std::vector<double> v = t.ToVector();
    for (int64_t i = 0; i < 16; ++i) EXPECT_EQ(v[i], (i % 4) % 2 == 1 ? 1 : 0) << DTypeName(dtype);
  }
}

TEST(TensorAutogradMeta, LeafStateWithoutAutograd) {
  Tensor t = RandomTensor({2, 2}, 1);
  EXPECT_FALSE(t.requires_grad());
  EXPECT_TRUE(t.is_leaf());
  EXPECT_FALSE(t.grad().defined());
  t.set_requires_grad(true);
  EXPECT_TRUE(t.requires_grad());
  t.set_grad(Tensor::Ones({2, 2}));
  EXPECT_EQ(t.grad().ToVector(), std::vector<double>(4, 1));
  EXPECT_THAT(ErrorMessage([&] { t.set_grad(Tensor::Ones({3})); }), HasSubstr("[3]"));
  t.zero_grad();
  EXPECT_FALSE(t.grad().defined());
  Tensor i = Tensor::Zeros({2}, kI64);
  EXPECT_THAT(ErrorMessage([&] { i.set_requires_grad(true); }), HasSubstr("i64"));
}

}  // namespace
}  // namespace sdpo
