// Bad input: every op throws sdpo::Error (never crashes, never returns garbage) with a message
// that names the op and the shapes / dtypes involved.
#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tensor/kernels.h"
#include "tensor/ops.h"
#include "tensor/storage.h"
#include "tensor/tensor.h"
#include "tests/tensor/test_util.h"

namespace sdpo {
namespace {

using sdpo::testing::ErrorMessage;
using sdpo::testing::RandomTensor;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

struct ErrorCase {
  std::string name;
  std::function<void()> fn;
  std::vector<std::string> expected;  // substrings of the message
};

void ExpectErrors(const std::vector<ErrorCase>& cases) {
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::string msg = ErrorMessage(c.fn);
    EXPECT_THAT(msg, Not(HasSubstr("<no error>")));
    EXPECT_THAT(msg, Not(HasSubstr("<other exception")));
    for (const std::string& s : c.expected) EXPECT_THAT(msg, HasSubstr(s));
  }
}

Tensor F(const Shape& shape, DType dtype = kF32) { return Tensor::Zeros(shape, dtype); }
Tensor Idx(const std::vector<int64_t>& v) {
  return Tensor::FromVector(v, {static_cast<int64_t>(v.size())});
}

TEST(Errors, Elementwise) {
  ExpectErrors({
      {"add shapes",
       [] {
         ops::Add(F({2, 3}), F({4}));
       },
       {"add", "[2, 3]", "[4]"}},
      {"sub shapes",
       [] {
         ops::Sub(F({2, 3}), F({3, 2}));
       },
       {"sub", "[2, 3]", "[3, 2]"}},
      {"mul shapes", [] { ops::Mul(F({5}), F({4})); }, {"mul", "[5]", "[4]"}},
      {"div shapes",
       [] {
         ops::Div(F({2, 1, 3}), F({2, 2}));
       },
       {"div", "[2, 1, 3]", "[2, 2]"}},
      {"pow shapes", [] { ops::Pow(F({3}), F({2})); }, {"pow", "[3]", "[2]"}},
      {"maximum shapes", [] { ops::Maximum(F({3}), F({2})); }, {"maximum", "[3]", "[2]"}},
      {"minimum shapes", [] { ops::Minimum(F({3}), F({2})); }, {"minimum", "[3]", "[2]"}},
      {"add dtypes", [] { ops::Add(F({2}), F({2}, kF64)); }, {"add", "dtype", "f32[2]", "f64[2]"}},
      {"mul dtypes", [] { ops::Mul(F({2}, kBF16), F({2})); }, {"mul", "bf16[2]", "f32[2]"}},
      {"add bool", [] { ops::Add(F({2}, kBool), F({2}, kBool)); }, {"add", "bool", "[2]"}},
      {"div int", [] { ops::Div(F({2}, kI64), F({2}, kI64)); }, {"div", "i64[2]"}},
      {"compare shapes",
       [] { ops::Compare(ops::CompareOp::kLt, F({2}), F({3})); },
       {"compare", "[2]", "[3]"}},
      {"compare dtypes",
       [] { ops::Compare(ops::CompareOp::kEq, F({2}), F({2}, kI32)); },
       {"compare", "f32[2]", "i32[2]"}},
      {"where cond dtype", [] { ops::Where(F({2}), F({2}), F({2})); }, {"where", "bool", "f32[2]"}},
      {"where shapes", [] { ops::Where(F({2}, kBool), F({3}), F({3})); }, {"where", "[3]", "[2]"}},
      {"where dtypes",
       [] { ops::Where(F({2}, kBool), F({2}), F({2}, kF64)); },
       {"where", "f32[2]", "f64[2]"}},
      {"exp int", [] { ops::Exp(F({3}, kI64)); }, {"exp", "i64[3]"}},
      {"log bool", [] { ops::Log(F({3}, kBool)); }, {"log", "bool[3]"}},
      {"neg bool", [] { ops::Neg(F({3}, kBool)); }, {"neg", "bool[3]"}},
      {"gelu int",
       [] {
         ops::Unary(ops::UnaryOp::kGelu, F({2, 2}, kI32));
       },
       {"gelu", "i32[2, 2]"}},
      {"clamp order", [] { ops::Clamp(F({2}), 1, 0); }, {"clamp", "[2]"}},
      {"clamp bool", [] { ops::Clamp(F({2}, kBool), 0, 1); }, {"clamp", "bool[2]"}},
      {"copy_into shapes",
       [] {
         ops::CopyInto(F({2, 3}), F({4}));
       },
       {"[2, 3]", "[4]"}},
  });
}

TEST(Errors, Views) {
  ExpectErrors({
      {"view count",
       [] {
         ops::View(F({2, 3}), {4});
       },
       {"view", "[4]", "[2, 3]"}},
      {"view two -1",
       [] {
         ops::View(F({2, 3}), {-1, -1});
       },
       {"view", "[-1, -1]"}},
      {"view infer",
       [] {
         ops::View(F({2, 3}), {-1, 4});
       },
       {"view", "[-1, 4]", "6"}},
      {"view negative",
       [] {
         ops::View(F({2, 3}), {-2, -3});
       },
       {"view", "[-2, -3]"}},
      {"view strides",
       [] {
         ops::View(ops::Transpose(F({2, 3}), 0, 1), {6});
       },
       {"view", "[6]", "[3, 2]"}},
      {"reshape count",
       [] {
         ops::Reshape(F({2, 3}), {5});
       },
       {"reshape", "[5]", "[2, 3]"}},
      {"reshape count strided",
       [] {
         ops::Reshape(ops::Transpose(F({2, 3}), 0, 1), {5});
       },
       {"reshape", "[5]", "[3, 2]"}},
      {"flatten order",
       [] {
         ops::Flatten(F({2, 3, 4}), 2, 1);
       },
       {"flatten", "[2, 3, 4]"}},
      {"flatten dim",
       [] {
         ops::Flatten(F({2, 3, 4}), 0, 3);
       },
       {"flatten", "3", "[2, 3, 4]"}},
      {"permute count",
       [] {
         ops::Permute(F({2, 3}), {0});
       },
       {"permute", "[2, 3]"}},
      {"permute repeat",
       [] {
         ops::Permute(F({2, 3}), {1, 1});
       },
       {"permute", "[1, 1]"}},
      {"permute range",
       [] {
         ops::Permute(F({2, 3}), {0, 2});
       },
       {"permute", "2", "[2, 3]"}},
      {"transpose dim",
       [] {
         ops::Transpose(F({2, 3}), 0, 2);
       },
       {"transpose", "2", "[2, 3]"}},
      {"transpose 0-d", [] { ops::Transpose(Tensor::Scalar(1), 0, 0); }, {"transpose", "[]"}},
      {"narrow range",
       [] {
         ops::Narrow(F({2, 3}), 1, 2, 2);
       },
       {"narrow", "[2, 3]"}},
      {"narrow negative",
       [] {
         ops::Narrow(F({2, 3}), 1, -1, 1);
       },
       {"narrow", "[2, 3]"}},
      {"narrow 0-d", [] { ops::Narrow(Tensor::Scalar(1), 0, 0, 1); }, {"narrow", "[]"}},
      {"slice step", [] { ops::Slice(F({4}), 0, 0, 4, 0); }, {"slice", "step", "[4]"}},
      {"slice dim", [] { ops::Slice(F({4}), 1, 0, 4); }, {"slice", "1", "[4]"}},
      {"slice 0-d", [] { ops::Slice(Tensor::Scalar(1), 0, 0, 1); }, {"slice", "[]"}},
      {"select index",
       [] {
         ops::Select(F({2, 3}), 1, 3);
       },
       {"select", "3", "[2, 3]"}},
      {"select negative",
       [] {
         ops::Select(F({2, 3}), 0, -3);
       },
       {"select", "-3", "[2, 3]"}},
      {"select 0-d", [] { ops::Select(Tensor::Scalar(1), 0, 0); }, {"select", "[]"}},
      {"expand size",
       [] {
         ops::Expand(F({2, 3}), {2, 4});
       },
       {"expand", "[2, 3]", "[2, 4]"}},
      {"expand rank",
       [] {
         ops::Expand(F({2, 3}), {3});
       },
       {"expand", "[2, 3]", "[3]"}},
      {"expand negative",
       [] {
         ops::Expand(F({3}), {-1, 3});
       },
       {"expand", "[3]", "[-1, 3]"}},
      {"unsqueeze dim",
       [] {
         ops::Unsqueeze(F({2, 3}), 4);
       },
       {"unsqueeze", "4", "[2, 3]"}},
      {"squeeze size",
       [] {
         ops::Squeeze(F({2, 3}), 0);
       },
       {"squeeze", "[2, 3]"}},
      {"squeeze 0-d", [] { ops::Squeeze(Tensor::Scalar(1), 0); }, {"squeeze", "[]"}},
      {"split sizes",
       [] {
         ops::Split(F({5, 2}), {2, 2}, 0);
       },
       {"split", "[2, 2]", "[5, 2]"}},
      {"split negative",
       [] {
         ops::Split(F({5, 2}), {6, -1}, 0);
       },
       {"split", "[5, 2]"}},
      {"split 0-d", [] { ops::Split(Tensor::Scalar(1), {1}, 0); }, {"split", "[]"}},
      {"chunk count",
       [] {
         ops::Chunk(F({5, 2}), 0, 0);
       },
       {"chunk", "[5, 2]"}},
      {"chunk dim",
       [] {
         ops::Chunk(F({5, 2}), 2, 2);
       },
       {"chunk", "2", "[5, 2]"}},
  });
}

TEST(Errors, CreationAndAccess) {
  ExpectErrors({
      {"empty negative",
       [] {
         Tensor::Empty({2, -1});
       },
       {"[2, -1]"}},
      {"zeros negative", [] { Tensor::Zeros({-3}); }, {"[-3]"}},
      {"from_vector count",
       [] {
         Tensor::FromVector(std::vector<double>{1, 2, 3}, {2, 2});
       },
       {"FromVector", "3", "[2, 2]"}},
      {"arange step", [] { Tensor::Arange(0, 1, 0); }, {"Arange"}},
      {"item",
       [] {
         F({2, 2}).item();
       },
       {"item", "f32[2, 2]"}},
      {"at range",
       [] {
         F({2, 2}).at({0, 2});
       },
       {"at", "f32[2, 2]"}},
      {"at rank",
       [] {
         F({2, 2}).at({0});
       },
       {"at", "f32[2, 2]"}},
      {"data dtype", [] { F({2}).data<int64_t>(); }, {"data<i64>", "f32"}},
      {"undefined", [] { Tensor().numel(); }, {"undefined"}},
      {"size 0-d", [] { Tensor::Scalar(1).size(0); }, {"size", "0-d"}},
      {"from_storage bounds",
       [] { Tensor::FromStorage(F({2}).storage(), {3}, {1}, 0, kF32); },
       {"FromStorage", "[3]"}},
      {"from_storage rank",
       [] {
         Tensor::FromStorage(F({2}).storage(), {2}, {1, 1}, 0, kF32);
       },
       {"FromStorage", "[2]", "[1, 1]"}},
  });
  if (!HasDeviceBackend(DeviceType::kCUDA)) {
    ExpectErrors({
        {"cuda tensor", [] { Tensor::Zeros({2}, kF32, Device::CUDA()); }, {"cuda"}},
        {"cuda to", [] { ops::To(F({2}), Device::CUDA()); }, {"cuda"}},
        {"cuda random", [] { ops::RandomNormal({2}, 0, 0, kF32, Device::CUDA()); }, {"cuda"}},
    });
  }
}

TEST(Errors, Reductions) {
  ExpectErrors({
      {"sum dim",
       [] {
         ops::Sum(F({2, 3}), {2});
       },
       {"sum", "2", "[2, 3]"}},
      {"sum repeated",
       [] {
         ops::Sum(F({2, 3}), {1, -1});
       },
       {"sum", "repeated", "[2, 3]"}},
      {"sum bool",
       [] {
         ops::Sum(F({2, 3}, kBool));
       },
       {"sum", "bool[2, 3]"}},
      {"mean int",
       [] {
         ops::Mean(F({2, 3}, kI64));
       },
       {"mean", "i64[2, 3]"}},
      {"mean dim",
       [] {
         ops::Mean(F({2, 3}), {-3});
       },
       {"mean", "-3", "[2, 3]"}},
      {"max empty",
       [] {
         ops::Max(F({2, 0}), {1});
       },
       {"max", "[2, 0]"}},
      {"max bool", [] { ops::Max(F({2}, kBool)); }, {"max", "bool[2]"}},
      {"argmax dim",
       [] {
         ops::ArgMax(F({2, 3}), 2);
       },
       {"argmax", "2", "[2, 3]"}},
      {"argmax empty",
       [] {
         ops::ArgMax(F({0, 3}), 0);
       },
       {"argmax", "[0, 3]"}},
      {"var correction",
       [] {
         ops::Var(F({2, 3}), {}, -1);
       },
       {"var", "-1", "[2, 3]"}},
      {"var int",
       [] {
         ops::Var(F({2, 3}, kI32));
       },
       {"var", "i32[2, 3]"}},
      {"softmax dim",
       [] {
         ops::Softmax(F({2, 3}), 2);
       },
       {"softmax", "2", "[2, 3]"}},
      {"log_softmax dim",
       [] {
         ops::LogSoftmax(F({2, 3}), -3);
       },
       {"log_softmax", "[2, 3]"}},
      {"softmax int",
       [] {
         ops::Softmax(F({2, 3}, kI64), 1);
       },
       {"softmax", "i64[2, 3]"}},
      {"log_softmax int",
       [] {
         ops::LogSoftmax(F({2, 3}, kI64), 1);
       },
       {"log_softmax", "i64[2, 3]"}},
      {"sum_to_shape",
       [] {
         ops::SumToShape(F({2, 3}), {3, 3});
       },
       {"sum_to_shape", "[2, 3]", "[3, 3]"}},
      {"sum_to_shape rank",
       [] {
         ops::SumToShape(F({3}), {2, 3});
       },
       {"sum_to_shape", "[3]", "[2, 3]"}},
  });
}

TEST(Errors, Matmul) {
  ExpectErrors({
      {"matmul 1-D",
       [] {
         ops::Matmul(F({3}), F({3, 2}));
       },
       {"matmul", "[3]", "[3, 2]"}},
      {"matmul inner",
       [] {
         ops::Matmul(F({2, 3}), F({4, 5}));
       },
       {"matmul", "[2, 3]", "[4, 5]"}},
      {"matmul batch",
       [] {
         ops::Matmul(F({2, 2, 3}), F({3, 3, 4}));
       },
       {"matmul", "[2]", "[3]"}},
      {"matmul dtype",
       [] {
         ops::Matmul(F({2, 3}), F({3, 2}, kF64));
       },
       {"matmul", "f32[2, 3]", "f64[3, 2]"}},
      {"matmul int",
       [] {
         ops::Matmul(F({2, 3}, kI64), F({3, 2}, kI64));
       },
       {"matmul", "i64[2, 3]"}},
  });
}

TEST(Errors, JoinAndIndex) {
  ExpectErrors({
      {"concat none", [] { ops::Concat({}, 0); }, {"concat"}},
      {"concat rank",
       [] {
         ops::Concat({F({2, 3}), F({3})}, 0);
       },
       {"concat", "[2, 3]", "[3]"}},
      {"concat size",
       [] {
         ops::Concat({F({2, 3}), F({2, 4})}, 0);
       },
       {"concat", "[2, 3]", "[2, 4]"}},
      {"concat dtype",
       [] {
         ops::Concat({F({2}), F({2}, kF64)}, 0);
       },
       {"concat", "f32[2]", "f64[2]"}},
      {"concat dim",
       [] {
         ops::Concat({F({2}), F({2})}, 1);
       },
       {"concat", "1", "[2]"}},
      {"concat 0-d",
       [] {
         ops::Concat({Tensor::Scalar(1), Tensor::Scalar(2)}, 0);
       },
       {"concat", "[]"}},
      {"stack none", [] { ops::Stack({}, 0); }, {"stack"}},
      {"stack shape",
       [] {
         ops::Stack({F({2}), F({3})}, 0);
       },
       {"stack", "[2]", "[3]"}},
      {"stack dtype",
       [] {
         ops::Stack({F({2}), F({2}, kI64)}, 0);
       },
       {"stack", "f32[2]", "i64[2]"}},
      {"stack dim",
       [] {
         ops::Stack({F({2}), F({2})}, 2);
       },
       {"stack", "2", "[2]"}},
      {"index_select rank",
       [] {
         ops::IndexSelect(F({3, 4}), 0, F({2, 1}, kI64));
       },
       {"index_select", "[2, 1]"}},
      {"index_select dtype",
       [] {
         ops::IndexSelect(F({3, 4}), 0, F({2}));
       },
       {"index_select", "f32[2]"}},
      {"index_select range",
       [] {
         ops::IndexSelect(F({3, 4}), 0, Idx({0, 3}));
       },
       {"index_select", "3", "[3, 4]"}},
      {"index_select negative",
       [] {
         ops::IndexSelect(F({3, 4}), 1, Idx({-1}));
       },
       {"index_select", "-1", "[3, 4]"}},
      {"index_select dim",
       [] {
         ops::IndexSelect(F({3, 4}), 2, Idx({0}));
       },
       {"index_select", "2", "[3, 4]"}},
      {"index_select 0-d",
       [] { ops::IndexSelect(Tensor::Scalar(1), 0, Idx({0})); },
       {"index_select", "[]"}},
      {"index_add src",
       [] {
         ops::IndexAdd({3, 4}, 0, Idx({0, 1}), F({3, 4}));
       },
       {"index_add", "[3, 4]", "[2, 4]"}},
      {"index_add range",
       [] {
         ops::IndexAdd({3, 4}, 0, Idx({5}), F({1, 4}));
       },
       {"index_add", "5", "[3, 4]"}},
      {"index_add rank",
       [] {
         ops::IndexAdd({3, 4}, 0, F({1, 1}, kI64), F({1, 4}));
       },
       {"index_add", "[1, 1]"}},
      {"index_add dim",
       [] {
         ops::IndexAdd({3, 4}, 2, Idx({0}), F({3, 1}));
       },
       {"index_add", "2", "[3, 4]"}},
      {"gather rank",
       [] {
         ops::Gather(F({3, 4}), 1, Idx({0}));
       },
       {"gather", "[1]", "[3, 4]"}},
      {"gather size",
       [] {
         ops::Gather(F({3, 4}), 1, F({2, 2}, kI64));
       },
       {"gather", "[2, 2]", "[3, 4]"}},
      {"gather range",
       [] {
         ops::Gather(F({3, 4}), 1, Tensor::Full({3, 1}, 4, kI64));
       },
       {"gather", "4", "[3, 4]"}},
      {"gather dtype",
       [] {
         ops::Gather(F({3, 4}), 1, F({3, 1}));
       },
       {"gather", "f32[3, 1]"}},
      {"gather 0-d",
       [] { ops::Gather(Tensor::Scalar(1), 0, Tensor::Scalar(0, kI64)); },
       {"gather", "[]"}},
      {"scatter_add src",
       [] {
         ops::ScatterAdd({3, 4}, 1, F({3, 2}, kI64), F({3, 3}));
       },
       {"scatter_add", "[3, 2]", "[3, 3]"}},
      // An index whose other dims do not match the output would write out of bounds.
      {"scatter_add shape",
       [] {
         ops::ScatterAdd({2, 5}, 1, F({3, 4}, kI64), F({3, 4}));
       },
       {"scatter_add", "[3, 4]", "[2, 5]"}},
      {"scatter_add rank",
       [] {
         ops::ScatterAdd({2, 5}, 1, F({2, 5, 1}, kI64), F({2, 5, 1}));
       },
       {"scatter_add", "[2, 5, 1]", "[2, 5]"}},
      {"scatter_add range",
       [] {
         ops::ScatterAdd({2, 5}, 1, Tensor::Full({2, 1}, 5, kI64), F({2, 1}));
       },
       {"scatter_add", "5", "[2, 5]"}},
  });
}

TEST(Errors, FusedAndRandom) {
  Tensor q = F({1, 2, 3, 4}), k = F({1, 2, 5, 4}), v = F({1, 2, 5, 6});
  ExpectErrors({
      {"layer_norm weight",
       [] {
         ops::LayerNorm(F({2, 3}), F({4}), Tensor(), 1e-5);
       },
       {"layer_norm", "[4]", "[2, 3]"}},
      {"layer_norm bias",
       [] {
         ops::LayerNorm(F({2, 3}), F({3}), F({3, 1}), 1e-5);
       },
       {"layer_norm", "[3, 1]", "[2, 3]"}},
      {"layer_norm int",
       [] {
         ops::LayerNorm(F({2, 3}, kI64), Tensor(), Tensor(), 1e-5);
       },
       {"layer_norm", "i64[2, 3]"}},
      {"layer_norm 0-d",
       [] { ops::LayerNorm(Tensor::Scalar(1), Tensor(), Tensor(), 1e-5); },
       {"layer_norm", "f32[]"}},
      {"layer_norm weight dtype",
       [] {
         ops::LayerNorm(F({2, 3}, kF64), F({3}), Tensor(), 1e-5);
       },
       {"layer_norm", "f32[3]", "f64[2, 3]"}},
      {"rms_norm weight",
       [] {
         ops::RmsNorm(F({2, 3}), F({2}), 1e-5);
       },
       {"rms_norm", "[2]", "[2, 3]"}},
      {"rms_norm weight dtype",
       [] {
         ops::RmsNorm(F({2, 3}, kF64), F({3}, kBF16), 1e-5);
       },
       {"rms_norm", "bf16[3]", "f64[2, 3]"}},
      {"attention rank",
       [&] {
         ops::Attention(F({2, 3, 4}), k, v, Tensor(), {});
       },
       {"attention", "[2, 3, 4]"}},
      {"attention head dim",
       [&] {
         ops::Attention(F({1, 2, 3, 5}), k, v, Tensor(), {});
       },
       {"attention", "[1, 2, 3, 5]", "[1, 2, 5, 4]"}},
      {"attention kv length",
       [&] {
         ops::Attention(q, k, F({1, 2, 4, 6}), Tensor(), {});
       },
       {"attention", "[1, 2, 5, 4]", "[1, 2, 4, 6]"}},
      {"attention heads",
       [&] {
         ops::Attention(q, F({1, 3, 5, 4}), v, Tensor(), {});
       },
       {"attention", "[1, 2, 3, 4]", "[1, 3, 5, 4]"}},
      {"attention dtype",
       [&] { ops::Attention(q, ops::Cast(k, kF64), v, Tensor(), {}); },
       {"attention", "f64[1, 2, 5, 4]"}},
      {"attention int",
       [] {
         ops::Attention(F({1, 1, 2, 2}, kI32), F({1, 1, 2, 2}, kI32), F({1, 1, 2, 2}, kI32),
                        Tensor(), {});
       },
       {"attention", "i32[1, 1, 2, 2]"}},
      {"attention mask shape",
       [&] {
         ops::Attention(q, k, v, F({3, 4}), {});
       },
       {"attention", "[3, 4]", "[1, 2, 3, 5]"}},
      {"attention mask rank",
       [&] {
         ops::Attention(q, k, v, F({1, 1, 2, 3, 5}), {});
       },
       {"attention", "[1, 1, 2, 3, 5]", "[1, 2, 3, 5]"}},
      {"attention mask batch",
       [&] {
         ops::Attention(q, k, v, F({2, 1, 3, 5}), {});
       },
       {"attention", "[2, 1, 3, 5]", "[1, 2, 3, 5]"}},
      {"attention mask bool",
       [&] {
         ops::Attention(q, k, v, F({3, 5}, kBool), {});
       },
       {"attention", "bool[3, 5]"}},
      {"attention no keys",
       [] {
         ops::Attention(F({1, 1, 2, 4}), F({1, 1, 0, 4}), F({1, 1, 0, 4}), Tensor(), {});
       },
       {"attention", "[1, 1, 0, 4]"}},
      {"rope rank",
       [] {
         ops::Rope(F({4, 6}), F({4, 3}), F({4, 3}), ops::RopeLayout::kInterleaved);
       },
       {"rope", "[4, 6]"}},
      {"rope odd",
       [] {
         ops::Rope(F({4, 2, 5}), F({4, 2}), F({4, 2}), ops::RopeLayout::kHalfSplit);
       },
       {"rope", "[4, 2, 5]"}},
      {"rope table",
       [] {
         ops::Rope(F({4, 2, 6}), F({4, 2}), F({4, 2}), ops::RopeLayout::kHalfSplit);
       },
       {"rope", "[4, 3]", "[4, 2]"}},
      {"rope sin",
       [] {
         ops::Rope(F({4, 2, 6}), F({4, 3}), F({3, 3}), ops::RopeLayout::kHalfSplit);
       },
       {"rope", "[4, 3]", "[3, 3]"}},
      {"rope int",
       [] {
         ops::Rope(F({4, 2, 6}, kI64), F({4, 3}), F({4, 3}), ops::RopeLayout::kHalfSplit);
       },
       {"rope", "i64[4, 2, 6]"}},
      {"random_normal int", [] { ops::RandomNormal({2}, 0, 0, kI64); }, {"random_normal", "i64"}},
      {"random_uniform bool",
       [] { ops::RandomUniform({2}, 0, 0, kBool); },
       {"random_uniform", "bool"}},
  });
}

TEST(Errors, BackwardKernelsValidateToo) {
  Tensor x = RandomTensor({2, 3}, 1);
  ops::NormResult ln = ops::LayerNorm(x, Tensor(), Tensor(), 1e-5);
  ExpectErrors({
      {"layer_norm backward",
       [&] {
         ops::LayerNormBackward(F({3, 2}), x, Tensor(), ln.mean, ln.rstd, false);
       },
       {"layer_norm", "[3, 2]", "[2, 3]"}},
      {"rms_norm backward",
       [&] {
         ops::RmsNormBackward(F({2, 2}), x, Tensor(), ln.rstd);
       },
       {"rms_norm", "[2, 2]", "[2, 3]"}},
  });
}

TEST(Errors, AnErrorLeavesTheLibraryUsable) {
  // Errors thrown from inside parallel kernels propagate and the pool keeps working.
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(ErrorMessage([] { ops::Add(F({2, 3}), F({4})); }), HasSubstr("add"));
    Tensor y = ops::Add(RandomTensor({1000, 100}, 1), RandomTensor({100}, 2));
    EXPECT_EQ(y.shape(), Shape({1000, 100}));
  }
}

}  // namespace
}  // namespace sdpo
