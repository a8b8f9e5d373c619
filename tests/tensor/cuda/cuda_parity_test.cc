// CUDA vs the CPU oracle, table-driven (in the spirit of ggml's test-backend-ops): every op on
// random inputs of awkward shapes (odd sizes, non-contiguous views, broadcasting), forward and
// backward, compared by relative L2 error with a threshold per dtype (f32 1e-5, tf32 1e-3,
// f16 2e-3, bf16 1e-2, f64 1e-10; integers and bools exactly). Every device allocation is
// poisoned (0xff bytes: NaN) so that output elements a kernel fails to write are caught.
//
// The same source builds two tests: cuda_parity_test (real CUDA; skips with a clear message
// when no GPU is present) and cuda_emulation_test (the kernels compiled for the CPU emulation
// in tensor/cuda/emu; runs everywhere).
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tensor/cuda/cuda_available.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"
#include "tests/op_cases.h"

#if !defined(SDPO_HAVE_CUDA_BACKEND)
// Built without CUDA (no toolkit, or --config=nocuda): nothing to compare.
TEST(CudaParity, SkippedWithoutCuda) {
  EXPECT_FALSE(sdpo::CudaAvailable());
  GTEST_SKIP() << "no CUDA: " << sdpo::CudaUnavailableReason();
}
#else
#include "tensor/cuda/allocator.h"
#include "tensor/cuda/cuda_ops.h"
#include "tensor/cuda/cudnn_attention.h"
#include "tensor/cuda/cudnn_conv.h"

namespace sdpo {
namespace {

using ops::BinaryOp;
using ops::CompareOp;
using ops::UnaryOp;

using Tensors = std::vector<Tensor>;
using OpFn = std::function<Tensors(const Tensors&)>;

struct Case {
  std::string name;
  std::function<Tensors()> inputs;  // CPU tensors
  OpFn cpu_op;                      // the oracle
  OpFn gpu_op;                      // empty: cpu_op on CUDA inputs
  double tol = 1e-5;                // relative L2 per floating output
  std::function<void()> before;     // e.g. enable TF32
  std::function<void()> after;
};

double Tol(DType t) {
  switch (t) {
    case kF64: return 1e-10;
    case kF32: return 1e-5;
    case kF16: return 2e-3;
    case kBF16: return 1e-2;
    default: return 0;
  }
}

uint64_t g_seed = 1234;
Tensor Randn(const Shape& shape, DType dtype, double scale = 1.0, double shift = 0.0) {
  Tensor t = ops::RandomNormal(shape, g_seed++, 0, kF64);
  if (scale != 1.0) t = ops::MulScalar(t, scale);
  if (shift != 0.0) t = ops::AddScalar(t, shift);
  return ops::Cast(t, dtype);
}
Tensor Positive(const Shape& shape, DType dtype) {
  return ops::Cast(ops::AddScalar(ops::Unary(UnaryOp::kAbs, Randn(shape, kF64)), 0.5), dtype);
}
Tensor Uniform(const Shape& shape, DType dtype, double lo, double hi) {
  Tensor u = ops::RandomUniform(shape, g_seed++, 0, kF64);  // [0, 1)
  return ops::Cast(ops::AddScalar(ops::MulScalar(u, hi - lo), lo), dtype);
}
Tensor RandInt(const Shape& shape, int64_t lo, int64_t hi, DType dtype = kI64) {
  Tensor u = ops::RandomUniform(shape, g_seed++, 0, kF64);
  std::vector<double> v = u.ToVector();
  for (double& x : v) x = std::floor(lo + x * (hi - lo));
  return Tensor::FromVector(v, shape, dtype);
}

std::string Name(const std::string& base, DType t) { return base + "_" + DTypeName(t); }

// Conv3d cases: the shapes of the Wan VAE's convolutions, small.
struct ConvCfg {
  const char* name;
  Shape x, weight;
  int64_t history_frames;  // 0: none
  std::array<int64_t, 3> stride;
  std::array<int64_t, 6> padding;
  bool bias;
};
const ConvCfg kConvCases[] = {
    // the causal 3x3x3 with two cached frames in place of the time padding
    {"conv_causal_history", {2, 5, 3, 7, 9}, {6, 5, 3, 3, 3}, 2, {1, 1, 1}, {0, 0, 1, 1, 1, 1}, true},
    // the causal 3x3x3 at the clip start: two zero frames before, none after
    {"conv_causal_pad", {1, 4, 4, 6, 5}, {7, 4, 3, 3, 3}, 0, {1, 1, 1}, {2, 0, 1, 1, 1, 1}, true},
    {"conv_one_frame", {1, 3, 1, 5, 6}, {4, 3, 3, 3, 3}, 0, {1, 1, 1}, {2, 0, 1, 1, 1, 1}, false},
    // the (3,1,1) stride-2 time conv of the downsampling blocks, with one cached frame
    {"conv_time_stride2", {1, 6, 4, 4, 3}, {5, 6, 3, 1, 1}, 1, {2, 1, 1}, {0, 0, 0, 0, 0, 0}, true},
    {"conv_1x1x1", {2, 7, 2, 5, 6}, {9, 7, 1, 1, 1}, 0, {1, 1, 1}, {0, 0, 0, 0, 0, 0}, true},
    // more than one tile in every GEMM dim (Cout 70 > 64, K = 20 * 27 = 540 > 16, N > 64)
    {"conv_tiles", {1, 20, 2, 6, 7}, {70, 20, 3, 3, 3}, 1, {1, 1, 1}, {1, 0, 1, 1, 1, 1}, true},
    // odd sizes, strides in every dim, "after" paddings larger and smaller than "before"
    {"conv_asym_stride", {2, 3, 5, 9, 8}, {4, 3, 2, 3, 3}, 0, {2, 2, 1}, {1, 2, 0, 1, 2, 0}, true},
};

std::vector<Case>& Table() {
  static std::vector<Case>* table = [] {
    auto* cases = new std::vector<Case>();
    auto add = [&](Case c) { cases->push_back(std::move(c)); };
    const DType kFloats[] = {kF32, kBF16, kF16, kF64};

    // ---- copies, casts, views ---------------------------------------------------------
    for (DType from : {kF32, kBF16, kF16, kF64, kI32, kI64}) {
      for (DType to : {kF32, kBF16, kF16, kF64, kI32, kI64, kBool}) {
        if (from == to) continue;
        add({Name("cast_" + std::string(DTypeName(from)), to),
             [from] { return Tensors{ops::Cast(Randn({7, 33}, kF64, 40.0), from)}; },
             [to](const Tensors& in) { return Tensors{ops::Cast(in[0], to)}; }, {},
             IsFloating(to) ? Tol(to) : 0});
      }
    }
    for (DType t : kFloats) {
      add({Name("copy_permute", t), [t] { return Tensors{Randn({5, 7, 9, 3}, t)}; },
           [](const Tensors& in) { return Tensors{ops::Contiguous(ops::Permute(in[0], {2, 0, 3, 1}))}; },
           {}, Tol(t)});
      add({Name("copy_slice_step", t), [t] { return Tensors{Randn({6, 41}, t)}; },
           [](const Tensors& in) { return Tensors{ops::Contiguous(ops::Slice(in[0], 1, 1, 40, 3))}; },
           {}, Tol(t)});
      add({Name("copy_into_strided_dst", t), [t] { return Tensors{Randn({9, 13}, t), Randn({13, 5}, t)}; },
           [](const Tensors& in) {
             Tensor dst = ops::Clone(in[0]);
             ops::CopyInto(ops::Transpose(ops::Narrow(dst, 0, 2, 5), 0, 1), in[1]);
             return Tensors{dst};
           },
           {}, Tol(t)});
      add({Name("concat", t), [t] { return Tensors{Randn({3, 5, 7}, t), Randn({3, 7, 5}, t)}; },
           [](const Tensors& in) {
             return Tensors{ops::Concat({in[0], ops::Transpose(in[1], 1, 2)}, 2),
                            ops::Concat({in[0], in[0]}, 0)};
           },
           {}, Tol(t)});
      add({Name("fill_strided", t), [t] { return Tensors{Randn({7, 12}, t)}; },
           [](const Tensors& in) {
             Tensor x = ops::Clone(in[0]);
             ops::Fill(ops::Slice(x, 1, 1, 12, 2), 3.25);
             return Tensors{x};
           },
           {}, Tol(t)});
    }
    // Nine dims: more than the kernels' eight after collapsing.
    add({"copy_rank9_f32", [] { return Tensors{Randn({2, 3, 2, 3, 2, 3, 2, 3, 2}, kF32)}; },
         [](const Tensors& in) {
           return Tensors{ops::Contiguous(ops::Permute(in[0], {8, 6, 4, 2, 0, 1, 3, 5, 7}))};
         }});

    // ---- unary ------------------------------------------------------------------------
    for (const testing::UnaryOpCase& k : testing::UnaryOpCases()) {
      const UnaryOp op = k.op;
      for (DType t : kFloats) {
        add({Name(std::string("unary_") + ops::UnaryOpName(op), t),
             [t, k] { return Tensors{Uniform({11, 37}, t, k.lo, k.hi)}; },
             [op](const Tensors& in) {
               // Contiguous and transposed (strided) inputs.
               return Tensors{ops::Unary(op, in[0]), ops::Unary(op, ops::Transpose(in[0], 0, 1))};
             },
             {}, Tol(t)});
      }
      if (!k.integer) continue;
      for (DType t : {kI32, kI64}) {
        add({Name(std::string("unary_") + ops::UnaryOpName(op), t),
             [t] { return Tensors{RandInt({5, 19}, -50, 50, t)}; },
             [op](const Tensors& in) { return Tensors{ops::Unary(op, in[0])}; }, {}, 0});
      }
    }
    // ---- binary, compare, where, clamp (broadcasting) -----------------------------------
    for (const testing::BinaryOpCase& k : testing::BinaryOpCases()) {
      const BinaryOp op = k.op;
      for (DType t : {kF32, kBF16, kF16, kF64, kI32, kI64}) {
        if (!k.integer && !IsFloating(t)) continue;
        add({Name(std::string("binary_") + ops::BinaryOpName(op), t),
             [t, k, op] {
               if (!IsFloating(t)) {
                 const int64_t hi = op == BinaryOp::kPow ? 4 : 100;
                 return Tensors{RandInt({4, 1, 9}, op == BinaryOp::kPow ? -3 : -100, hi, t),
                                RandInt({5, 9}, 0, op == BinaryOp::kPow ? 4 : 100, t)};
               }
               return Tensors{Uniform({4, 1, 9}, t, k.a_lo, k.a_hi),
                              Uniform({5, 9}, t, k.b_lo, k.b_hi)};
             },
             [op](const Tensors& in) {
               Tensor a = in[0], b = in[1];
               return Tensors{ops::Binary(op, a, b),                        // broadcast both
                              ops::Binary(op, ops::Transpose(b, 0, 1),      // strided
                                          ops::Transpose(ops::Narrow(b, 0, 1, 1), 0, 1)),
                              ops::Binary(op, b, ops::Select(ops::Select(b, 0, 1), 0, 2)),  // 0-d
                              ops::Binary(op, ops::Contiguous(ops::Expand(b, {3, 5, 9})),
                                          ops::Contiguous(ops::Expand(b, {3, 5, 9})))};  // vectorised
             },
             {}, IsFloating(t) ? Tol(t) : 0});
      }
    }
    // Strided operands whose innermost dim is contiguous take the vector path: row broadcasts
    // (a bias, an AdaLN gate), head permutes, a cast of a permute; a misaligned view does not.
    for (DType t : kFloats) {
      add({Name("vector_strided", t),
           [t] {
             return Tensors{Randn({6, 5, 40}, t), Randn({6, 1, 40}, t), Randn({40}, t),
                            Randn({4, 6, 5, 24}, t)};
           },
           [](const Tensors& in) {
             const Tensor &a = in[0], &g = in[1], &bias = in[2], &x = in[3];
             return Tensors{ops::Add(a, g), ops::Mul(a, g), ops::Add(a, bias),
                            ops::Sub(bias, a),
                            ops::Contiguous(ops::Permute(x, {0, 2, 1, 3})),
                            ops::Cast(ops::Permute(x, {2, 0, 1, 3}), kBF16),
                            ops::Cast(ops::Permute(x, {2, 0, 1, 3}), kF32),
                            ops::Add(ops::Narrow(a, 2, 1, 32), ops::Narrow(g, 2, 0, 32)),
                            ops::Add(ops::Narrow(a, 2, 8, 32), ops::Narrow(g, 2, 0, 32))};
           },
           {}, Tol(t)});
    }
    for (CompareOp op : {CompareOp::kEq, CompareOp::kNe, CompareOp::kLt, CompareOp::kLe,
                         CompareOp::kGt, CompareOp::kGe}) {
      for (DType t : {kF32, kBF16, kI64}) {
        add({Name("compare_" + std::to_string(static_cast<int>(op)), t),
             [t] { return Tensors{RandInt({3, 1, 17}, -3, 3, t), RandInt({4, 17}, -3, 3, t)}; },
             [op](const Tensors& in) { return Tensors{ops::Compare(op, in[0], in[1])}; }, {}, 0});
      }
    }
    for (DType t : {kF32, kBF16, kI32}) {
      add({Name("where", t),
           [t] {
             return Tensors{RandInt({3, 1, 17}, 0, 2, kI64), Randn({3, 4, 17}, t, 5.0),
                            Randn({4, 1}, t, 5.0)};
           },
           [](const Tensors& in) {
             Tensor cond = ops::Compare(CompareOp::kGt, in[0], ops::ScalarLike(0.5, in[0]));
             return Tensors{ops::Where(cond, in[1], in[2])};
           },
           {}, IsFloating(t) ? Tol(t) : 0});
      add({Name("clamp", t), [t] { return Tensors{Randn({13, 21}, t, 5.0)}; },
           [](const Tensors& in) {
             return Tensors{ops::Clamp(ops::Transpose(in[0], 0, 1), -1.5, 2.0),
                            ops::Clamp(in[0], std::nullopt, 0.25)};
           },
           {}, IsFloating(t) ? Tol(t) : 0});
    }

    // ---- random ------------------------------------------------------------------------
    for (DType t : {kF32, kBF16, kF64}) {
      // No inputs: the op itself creates numbers on its device.
      add({Name("philox_normal", t), [] { return Tensors{Tensor::Zeros({1})}; },
           [t](const Tensors& in) {
             return Tensors{ops::RandomNormal({1001, 3}, 77, 12345, t, in[0].device())};
           },
           {}, t == kF64 ? 1e-12 : 1e-7});
      add({Name("philox_uniform", t), [] { return Tensors{Tensor::Zeros({1})}; },
           [t](const Tensors& in) {
             return Tensors{ops::RandomUniform({999}, 5, 3, t, in[0].device())};
           },
           {}, 0.0});
    }

    // ---- reductions, softmax -------------------------------------------------------------
    for (DType t : kFloats) {
      add({Name("reduce", t), [t] { return Tensors{Randn({6, 129, 5}, t)}; },
           [](const Tensors& in) {
             const Tensor& x = in[0];
             return Tensors{ops::Sum(x, {1}),         ops::Sum(x, {0, 2}, true), ops::Mean(x),
                            ops::Max(x, {-1}),        ops::Var(x, {1}, 1),       ops::Var(x, {0, 1}, 0),
                            ops::Mean(x, {2}, false), ops::Max(x, {0})};
           },
           {}, Tol(t)});
      // Reductions over middle / leading dims (ReduceMiddle: chunked column sums).
      add({Name("reduce_middle", t),
           [t] { return Tensors{Randn({3, 1000, 40}, t), Randn({2, 0, 5}, t)}; },
           [](const Tensors& in) {
             const Tensor& x = in[0];
             return Tensors{ops::Sum(x, {1}), ops::Sum(x, {0, 1}), ops::Mean(x, {0}),
                            ops::Mean(x, {1}, true), ops::Sum(in[1], {1})};
           },
           {}, Tol(t)});
      // Few long rows take the two-pass chunked sum (an odd length: the last chunk is short).
      add({Name("reduce_long_rows", t), [t] { return Tensors{Randn({3, 70001}, t)}; },
           [](const Tensors& in) {
             const Tensor& x = in[0];
             return Tensors{ops::Sum(x, {1}), ops::Mean(x, {1}), ops::Sum(x),
                            ops::Sum(ops::Square(x))};
           },
           {}, Tol(t)});
      add({Name("argmax", t), [t] { return Tensors{Randn({6, 129, 5}, t)}; },
           [](const Tensors& in) { return Tensors{ops::ArgMax(in[0], 1), ops::ArgMax(in[0], 2)}; },
           {}, 0});
      add({Name("softmax", t), [t] { return Tensors{Randn({5, 7, 301}, t, 3.0)}; },
           [](const Tensors& in) {
             return Tensors{ops::Softmax(in[0], -1), ops::LogSoftmax(in[0], -1),
                            ops::Softmax(in[0], 1), ops::LogSoftmax(in[0], 0)};
           },
           {}, Tol(t)});
    }
    add({"reduce_sum_i64", [] { return Tensors{RandInt({7, 1000}, -1000, 1000)}; },
         [](const Tensors& in) { return Tensors{ops::Sum(in[0], {1}), ops::Sum(in[0])}; }, {}, 0});

    // ---- matmul ----------------------------------------------------------------------------
    auto add_matmul = [&](const std::string& name, DType t, double tol,
                          std::function<void()> before, std::function<void()> after) {
      add({name,
           [t] {
             return Tensors{Randn({3, 37, 53}, t), Randn({3, 53, 29}, t), Randn({53, 29}, t),
                            Randn({29, 53}, t), Randn({37, 53}, t)};
           },
           [](const Tensors& in) {
             return Tensors{
                 ops::Matmul(in[0], in[1]),                                     // batched
                 ops::Matmul(in[0], in[2]),                                     // folded batch
                 ops::Matmul(in[0], ops::Transpose(in[3], 0, 1)),               // b^T
                 ops::Matmul(ops::Transpose(ops::Transpose(in[0], 1, 2), 1, 2), in[1]),
                 ops::Matmul(ops::Transpose(in[1], 1, 2), ops::Transpose(in[0], 1, 2)),  // a^T, b^T
                 ops::Matmul(in[4], in[1]),                                     // a broadcast
             };
           },
           {}, tol, before, after});
    };
    add_matmul("matmul_f32", kF32, 1e-5, [] { cuda::SetAllowTF32(false); }, {});
    add_matmul("matmul_tf32", kF32, 1e-3, [] { cuda::SetAllowTF32(true); },
               [] { cuda::SetAllowTF32(false); });
    add_matmul("matmul_bf16", kBF16, 1e-2, {}, {});
    add_matmul("matmul_f16", kF16, 2e-3, {}, {});
    add_matmul("matmul_f64", kF64, 1e-10, {}, {});
    for (DType t : {kF32, kBF16}) {
      for (bool gelu : {false, true}) {
        add({Name(gelu ? "gemm_bias_gelu" : "gemm_bias", t),
             [t] { return Tensors{Randn({2, 45, 70}, t), Randn({33, 70}, t), Randn({33}, t)}; },
             [gelu](const Tensors& in) {  // CPU: x W^T + b, then tanh-GELU
               Tensor y = ops::Add(ops::Matmul(in[0], ops::Transpose(in[1], 0, 1)), in[2]);
               return Tensors{gelu ? ops::Unary(UnaryOp::kGeluTanh, y) : y};
             },
             [gelu](const Tensors& in) {
               Tensor out = Tensor::Empty({1, 90, 33}, in[0].dtype(), in[0].device());
               cuda::GemmEx(out, ops::View(in[0], {1, 90, 70}), false, ops::View(in[1], {1, 33, 70}),
                            true, in[2], gelu ? cuda::Epilogue::kBiasGeluTanh : cuda::Epilogue::kBias);
               return Tensors{ops::View(out, {2, 45, 33})};
             },
             t == kF32 ? 1e-4 : 1e-2, [] { cuda::SetAllowTF32(false); }, {}});
      }
    }

    // ---- norms ----------------------------------------------------------------------------
    for (DType t : kFloats) {
      for (bool affine : {true, false}) {
        add({Name(affine ? "layer_norm_affine" : "layer_norm", t),
             [t] {
               return Tensors{Randn({3, 5, 129}, t, 2.0, 0.5), Randn({129}, t, 0.5, 1.0),
                              Randn({129}, t), Randn({3, 5, 129}, t)};
             },
             [affine](const Tensors& in) {
               Tensor w = affine ? in[1] : Tensor(), b = affine ? in[2] : Tensor();
               ops::NormResult r = ops::LayerNorm(in[0], w, b, 1e-5);
               ops::NormGrads g = ops::LayerNormBackward(in[3], in[0], w, r.mean, r.rstd, affine);
               Tensors out = {r.out, r.mean, r.rstd, g.dx};
               if (affine) {
                 out.push_back(g.dweight);
                 out.push_back(g.dbias);
               }
               return out;
             },
             {}, Tol(t)});
        add({Name(affine ? "rms_norm_affine" : "rms_norm", t),
             [t] {
               return Tensors{Randn({2, 7, 200}, t, 2.0), Randn({200}, t, 0.5, 1.0),
                              Randn({2, 7, 200}, t)};
             },
             [affine](const Tensors& in) {
               Tensor w = affine ? in[1] : Tensor();
               ops::NormResult r = ops::RmsNorm(in[0], w, 1e-6);
               ops::NormGrads g = ops::RmsNormBackward(in[2], in[0], w, r.rstd);
               Tensors out = {r.out, r.rstd, g.dx};
               if (affine) out.push_back(g.dweight);
               return out;
             },
             {}, Tol(t)});
      }
    }

    // ---- rotary ---------------------------------------------------------------------------
    for (DType t : kFloats) {
      for (auto layout : {ops::RopeLayout::kInterleaved, ops::RopeLayout::kHalfSplit}) {
        add({Name(layout == ops::RopeLayout::kInterleaved ? "rope_interleaved" : "rope_half", t),
             [t] {
               // Angles in f64 for f64 inputs: f32 cos/sin differ by an ulp between glibc and
               // CUDA's libdevice, which an f64 tolerance would (rightly) flag.
               DType angle = t == kF64 ? kF64 : kF32;
               return Tensors{Randn({2, 11, 3, 64}, t), Randn({11, 32}, angle),
                              Randn({11, 32}, angle)};
             },
             [layout](const Tensors& in) {
               Tensor c = ops::Unary(UnaryOp::kCos, in[1]), s = ops::Unary(UnaryOp::kSin, in[2]);
               return Tensors{ops::Rope(in[0], c, s, layout, false),
                              ops::Rope(in[0], c, s, layout, true),
                              ops::Rope(ops::Transpose(ops::Transpose(in[0], 0, 1), 0, 1), c, s,
                                        layout, false)};
             },
             {}, Tol(t)});
      }
    }

    // ---- indexing -------------------------------------------------------------------------
    for (DType t : {kF32, kBF16, kF16, kF64, kI64}) {
      const double tol = IsFloating(t) ? Tol(t) : 0;
      add({Name("index_select", t),
           [t] {
             return Tensors{ops::Cast(Randn({9, 13, 6}, kF64, 10.0), t), RandInt({17}, 0, 9),
                            RandInt({5}, 0, 13, kI32)};
           },
           [](const Tensors& in) {
             return Tensors{ops::IndexSelect(in[0], 0, in[1]), ops::IndexSelect(in[0], 1, in[2])};
           },
           {}, tol});
      add({Name("index_add", t),
           [t] { return Tensors{ops::Cast(Randn({23, 4, 6}, kF64, 10.0), t), RandInt({23}, 0, 5)}; },
           [](const Tensors& in) { return Tensors{ops::IndexAdd({5, 4, 6}, 0, in[1], in[0])}; },
           {}, t == kBF16 ? 2e-2 : tol});
      add({Name("gather_scatter", t),
           [t] {
             return Tensors{ops::Cast(Randn({4, 9, 5}, kF64, 10.0), t), RandInt({4, 12, 5}, 0, 9)};
           },
           [](const Tensors& in) {
             Tensor g = ops::Gather(in[0], 1, in[1]);
             return Tensors{g, ops::ScatterAdd({4, 9, 5}, 1, in[1], g)};
           },
           {}, t == kBF16 ? 2e-2 : tol});
    }

    // Rows whose length is a multiple of 16 bytes take the warp-per-row forward (1 to 8 vectors
    // per lane); odd lengths the block-per-row one (above).
    for (DType t : kFloats) {
      add({Name("norm_warp_rows", t),
           [t] {
             return Tensors{Randn({5, 2000}, t, 2.0, 0.5), Randn({2000}, t, 0.5, 1.0),
                            Randn({2000}, t), Randn({7, 264}, t, 1.5), Randn({264}, t, 0.5, 1.0),
                            Randn({9, 3, 96}, t)};
           },
           [](const Tensors& in) {
             ops::NormResult a = ops::LayerNorm(in[0], in[1], in[2], 1e-5);
             ops::NormResult b = ops::RmsNorm(in[3], in[4], 1e-6);
             ops::NormResult c = ops::LayerNorm(in[5], Tensor(), Tensor(), 1e-6);
             return Tensors{a.out, a.mean, a.rstd, b.out, b.rstd, c.out, c.mean, c.rstd};
           },
           {}, Tol(t)});
    }

    // ---- fused LayerNorm + AdaLN modulation (ops::LayerNormModulate) ------------------------
    for (DType t : kFloats) {
      add({Name("ops_layer_norm_modulate", t),
           [t] {
             return Tensors{Randn({3, 37, 40}, t), Randn({3, 1, 40}, t, 0.5),
                            Randn({3, 1, 40}, t, 0.5), Randn({3, 37, 40}, t)};
           },
           [](const Tensors& in) {
             ops::NormResult r = ops::LayerNormModulate(in[0], in[1], in[2], 1e-6);
             ops::NormModulateGrads g =
                 ops::LayerNormModulateBackward(in[3], in[0], in[2], r.mean, r.rstd);
             return Tensors{r.out, r.mean, r.rstd, g.dx, g.dshift, g.dscale};
           },
           {}, Tol(t)});
    }

    // ---- attention ------------------------------------------------------------------------
    struct AttnCfg {
      const char* name;
      DType t;
      int64_t b, h, lq, lk, d, dv;
      int path;
      bool mask;
    };
    const AttnCfg kAttn[] = {
        {"attn_tc_d64", kBF16, 2, 3, 77, 93, 64, 64, 2, false},
        {"attn_tc_d128", kBF16, 1, 2, 130, 67, 128, 128, 2, false},
        {"attn_tc_d64_mask", kBF16, 2, 2, 70, 129, 64, 64, 2, true},
        {"attn_tc_d128", kF16, 2, 2, 65, 100, 128, 128, 2, false},
        {"attn_tc_d64_mask", kF16, 1, 3, 33, 47, 64, 64, 2, true},
        {"attn_simple_d64", kBF16, 2, 3, 37, 41, 64, 64, 1, false},
        {"attn_simple_d40_dv24", kF32, 2, 2, 29, 35, 40, 24, 1, false},
        {"attn_simple_mask", kF32, 1, 3, 21, 50, 96, 96, 1, true},
        {"attn_simple_d128", kF64, 1, 2, 19, 23, 128, 128, 1, false},
        {"attn_auto_d128", kF16, 1, 2, 40, 40, 128, 128, 0, true},
        // path 3: cuDNN fused attention (skipped when cuDNN is unavailable)
        {"attn_cudnn_d128", kBF16, 1, 2, 300, 300, 128, 128, 3, false},
        {"attn_cudnn_d64", kBF16, 2, 3, 130, 77, 64, 64, 3, false},
        {"attn_cudnn_d128_lk512", kF16, 2, 2, 65, 512, 128, 128, 3, false},
    };
    for (const AttnCfg& c : kAttn) {
      add({Name(c.name, c.t),
           [c] {
             Tensors in = {Randn({c.b, c.h, c.lq, c.d}, c.t), Randn({c.b, c.h, c.lk, c.d}, c.t),
                           Randn({c.b, c.h, c.lk, c.dv}, c.t), Randn({c.b, c.h, c.lq, c.dv}, c.t)};
             if (c.mask) {
               // [B, 1, Lq, Lk] additive mask: random biases, the last 7 keys masked for every
               // query, and query row 3 fully masked.
               std::vector<double> m(c.b * c.lq * c.lk);
               Tensor r = ops::RandomNormal({c.b * c.lq * c.lk}, g_seed++, 0, kF64);
               std::vector<double> rv = r.ToVector();
               for (int64_t bb = 0; bb < c.b; ++bb)
                 for (int64_t i = 0; i < c.lq; ++i)
                   for (int64_t j = 0; j < c.lk; ++j) {
                     const int64_t idx = (bb * c.lq + i) * c.lk + j;
                     m[idx] = (j >= c.lk - 7 || i == 3) ? -INFINITY : 0.5 * rv[idx];
                   }
               in.push_back(Tensor::FromVector(m, {c.b, 1, c.lq, c.lk}, c.t));
             }
             return in;
           },
           [c](const Tensors& in) {
             Tensor mask = c.mask ? in[4] : Tensor();
             ops::AttentionResult r = ops::Attention(in[0], in[1], in[2], mask, std::nullopt);
             ops::AttentionGrads g = ops::AttentionBackward(in[3], in[0], in[1], in[2], mask,
                                                            std::nullopt, r.out, r.lse);
             return Tensors{r.out, r.lse, g.dq, g.dk, g.dv};
           },
           [c](const Tensors& in) {
             Tensor mask = c.mask ? in[4] : Tensor();
             const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
             ops::AttentionResult r = cuda::AttentionWithPath(in[0], in[1], in[2], mask, scale, c.path);
             ops::AttentionGrads g = cuda::AttentionBackwardWithPath(
                 in[3], in[0], in[1], in[2], mask, scale, r.out, r.lse, c.path);
             return Tensors{r.out, r.lse, g.dq, g.dk, g.dv};
           },
           Tol(c.t),
           [c] {
             std::string why;
             if (c.path == 3 && !cuda::CudnnAttentionAvailable(&why)) {
               GTEST_SKIP() << "cuDNN fused attention unavailable: " << why;
             }
           }});
    }

    // ---- video VAE ops: convolution, channel RMS norm, upsampling, padding ----------------
    // Conv3d through ops::Conv3d / ops::Conv2d. Path "auto" is what the backend picks (cuDNN for
    // f32/bf16/f16 when it is there, else the implicit-GEMM kernel; the emulation has no cuDNN),
    // "own" forces the kernel and "cudnn" forces cuDNN (skipped without it).
    //
    // Relative L2 bound: both sides accumulate k products (f32; f64 for f64) in different
    // orders, rounding errors growing like sqrt(k) unit roundoffs u (4x margin); then the sums,
    // nearly equal, round to t: one ulp (2u) apart at most, plus u for cuDNN's second rounding
    // (the bias added after the convolution).
    auto conv_tol = [](DType t, int64_t k) {
      const double acc_u = t == kF64 ? 0x1p-53 : 0x1p-24;
      const double out_u = t == kF64 ? 0x1p-53 : t == kF32 ? 0x1p-24 : t == kF16 ? 0x1p-11 : 0x1p-8;
      return 4 * std::sqrt(static_cast<double>(k)) * acc_u + 3 * out_u;
    };
    for (const ConvCfg& c : kConvCases) {
      int64_t k = 1;
      for (size_t d = 1; d < c.weight.size(); ++d) k *= c.weight[d];
      for (DType t : kFloats) {
        const double tol = conv_tol(t, k);
        for (int path : {0, 1, 2}) {
          if (path == 2 && t == kF64) continue;  // cuDNN takes f32/bf16/f16
          const char* suffix = path == 0 ? "" : path == 1 ? "_own" : "_cudnn";
          add({Name(std::string(c.name) + suffix, t),
               [c, t] {
                 Tensors in = {Randn(c.x, t), Randn(c.weight, t, 0.3), Randn({c.weight[0]}, t)};
                 Shape h = c.x;
                 h[2] = c.history_frames;
                 if (c.history_frames > 0) in.push_back(Randn(h, t));
                 return in;
               },
               [c](const Tensors& in) {
                 ops::Conv3dOptions o;
                 o.stride = c.stride;
                 o.padding = c.padding;
                 if (c.history_frames > 0) o.history = in[3];
                 return Tensors{ops::Conv3d(in[0], in[1], c.bias ? in[2] : Tensor(), o)};
               },
               {}, tol,
               [path] {
                 std::string why;
                 if (path == 2 && !cuda::CudnnConvAvailable(&why)) {
                   GTEST_SKIP() << "cuDNN convolution unavailable: " << why;
                 }
                 cuda::SetConv3dPath(path);
               },
               [] { cuda::SetConv3dPath(0); }});
        }
      }
    }
    // Conv2d = Conv3d with one frame: 3x3 stride 2 with the (0, 1, 0, 1) padding of the VAE's
    // downsampling, and 3x3 stride 1 padding 1.
    for (DType t : kFloats) {
      add({Name("conv2d", t),
           [t] {
             return Tensors{Randn({2, 5, 9, 8}, t), Randn({4, 5, 3, 3}, t, 0.3), Randn({4}, t),
                            Randn({1, 3, 10, 11}, t), Randn({6, 3, 3, 3}, t, 0.3)};
           },
           [](const Tensors& in) {
             return Tensors{ops::Conv2d(in[0], in[1], in[2], {2, 2}, {0, 1, 0, 1}),
                            ops::Conv2d(in[3], in[4], Tensor(), {1, 1}, {1, 1, 1, 1})};
           },
           {}, conv_tol(t, 5 * 3 * 3)});
      // Channel RMS norm (+ SiLU) over C of [B, C, T, H, W] and [B, C, H, W]; gamma [C, 1, 1, 1].
      add({Name("channel_rms_norm", t),
           [t] {
             return Tensors{Randn({2, 5, 3, 7, 9}, t, 2.0, 0.3), Randn({5, 1, 1, 1}, t, 0.5, 1.0),
                            Randn({3, 96, 7, 11}, t), Randn({96}, t, 0.5, 1.0)};
           },
           [](const Tensors& in) {
             return Tensors{ops::ChannelRmsNorm(in[0], in[1], 1e-12, false),
                            ops::ChannelRmsNorm(in[0], in[1], 1e-12, true),
                            ops::ChannelRmsNorm(in[2], in[3], 1e-12, true),
                            // all-zero positions: the norm is bounded below by eps
                            ops::ChannelRmsNorm(ops::MulScalar(in[2], 0.0), in[3], 1e-6, false)};
           },
           {}, Tol(t)});
      // Group norm (+ SiLU) over (C/G, T, H, W): two channels per group on odd T/H/W with an
      // offset mean, one channel per group without affine parameters, [B, C, H, W], and one
      // group of 24,420 elements, which the kernel splits over several blocks (> 8 * 256 each);
      // then in place (GroupNormInPlace: out == x).
      add({Name("group_norm", t),
           [t] {
             return Tensors{Randn({2, 6, 3, 5, 7}, t, 2.0, 3.0),
                            Randn({6}, t, 0.5, 1.0),
                            Randn({6}, t),
                            Randn({2, 5, 3, 7, 9}, t),
                            Randn({3, 8, 11, 13}, t, 0.7, -0.4),
                            Randn({8}, t, 0.5, 1.0),
                            Randn({8}, t),
                            Randn({1, 4, 5, 33, 37}, t, 1.5, 0.5),
                            Randn({4}, t, 0.5, 1.0)};
           },
           [](const Tensors& in) {
             return Tensors{
                 ops::GroupNorm(in[0], 3, in[1], in[2], 1e-6, false),
                 ops::GroupNorm(in[0], 3, in[1], in[2], 1e-6, true),
                 ops::GroupNorm(in[3], 5, Tensor(), Tensor(), 1e-5, false),
                 ops::GroupNorm(in[4], 2, in[5], in[6], 1e-5, true),
                 ops::GroupNorm(in[7], 1, in[8], Tensor(), 1e-6, true),
                 // a constant group: variance 0, the output is the bias
                 ops::GroupNorm(ops::MulScalar(in[4], 0.0), 4, in[5], in[6], 1e-5),
                 // in place over a copy of the input (out == x in the kernel)
                 ops::GroupNormInPlace(ops::Clone(in[7]), 1, in[8], Tensor(), 1e-6, true),
                 ops::GroupNormInPlace(ops::Clone(in[0]), 3, in[1], in[2], 1e-6)};
           },
           {},
           Tol(t)});
      // Composed of copies and fills that run on CUDA already: parity only.
      add({Name("upsample_pad", t), [t] { return Tensors{Randn({2, 3, 5, 7}, t)}; },
           [](const Tensors& in) {
             return Tensors{ops::UpsampleNearest2x(in[0]),
                            ops::UpsampleNearest2x(ops::Transpose(in[0], 2, 3)),
                            ops::Pad(in[0], {{1, 2}, {0, 3}}),
                            ops::Pad(in[0], {{0, 0}, {2, 1}, {0, 1}}, 1.5)};
           },
           {}, Tol(t)});
    }

    // ---- fused AdamW ------------------------------------------------------------------------
    add({"adamw_fused",
         [] {
           return Tensors{Randn({1000}, kF32), Randn({37, 1001}, kF32), Randn({1000}, kF32, 0.1),
                          Randn({37, 1001}, kBF16, 0.1), Randn({1000}, kF32, 0.01),
                          Positive({37, 1001}, kF32)};
         },
         [](const Tensors& in) {  // CPU reference, torch.optim.AdamW formula in f64
           const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
           const int64_t step = 3;
           Tensors out;
           for (int p = 0; p < 2; ++p) {
             std::vector<double> w = in[p].ToVector(), g = in[2 + p].ToVector();
             // param 0: exp_avg = in[4], exp_avg_sq = 0.5; param 1: 0.01 and in[5].
             std::vector<double> m = p == 0 ? in[4].ToVector() : std::vector<double>(w.size(), 0.01);
             std::vector<double> v = p == 0 ? std::vector<double>(w.size(), 0.5) : in[5].ToVector();
             for (size_t i = 0; i < w.size(); ++i) {
               w[i] -= lr * wd * w[i];
               m[i] = b1 * m[i] + (1 - b1) * g[i];
               v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
               const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, step)) + eps;
               w[i] -= lr / (1 - std::pow(b1, step)) * m[i] / denom;
             }
             out.push_back(Tensor::FromVector(w, in[p].shape(), kF32));
             out.push_back(Tensor::FromVector(m, in[p].shape(), kF32));
             out.push_back(Tensor::FromVector(v, in[p].shape(), kF32));
             out.push_back(Tensor::FromVector(w, in[p].shape(), kBF16));
           }
           return out;
         },
         [](const Tensors& in) {
           Device dev = in[0].device();
           Tensors state = {ops::Clone(in[0]), ops::Clone(in[1]), ops::Clone(in[4]),
                            Tensor::Full({37, 1001}, 0.01, kF32, dev),
                            Tensor::Full({1000}, 0.5, kF32, dev), ops::Clone(in[5]),
                            Tensor::Empty({1000}, kBF16, dev), Tensor::Empty({37, 1001}, kBF16, dev)};
           cuda::AdamWOptions o;
           o.lr = 1e-2;
           o.beta1 = 0.9;
           o.beta2 = 0.95;
           o.weight_decay = 0.1;
           cuda::FusedAdamW({{state[0], in[2], state[2], state[4], state[6]},
                             {state[1], in[3], state[3], state[5], state[7]}},
                            o, 3);
           return Tensors{state[0], state[2], state[4], state[6],
                          state[1], state[3], state[5], state[7]};
         },
         1e-4});
    return cases;
  }();
  return *table;
}

// Relative L2 error of `got` against `want` (both CPU tensors), NaN where they disagree on NaN.
// The first few elements that differ by more than `tol` relative (for failure messages).
std::string FirstMismatches(const Tensor& got, const Tensor& want, double tol) {
  std::vector<double> g = got.ToVector(), w = want.ToVector();
  std::string s;
  int shown = 0;
  for (size_t i = 0; i < w.size() && shown < 6; ++i) {
    const double d = std::fabs(g[i] - w[i]);
    if (d > tol * (std::fabs(w[i]) + 1e-3) || std::isnan(g[i]) != std::isnan(w[i])) {
      char buf[128];
      std::snprintf(buf, sizeof(buf), " [%zu] got %.9g want %.9g;", i, g[i], w[i]);
      s += buf;
      ++shown;
    }
  }
  return s;
}

double RelL2(const Tensor& got, const Tensor& want, int64_t* nan_mismatch) {
  std::vector<double> g = got.ToVector(), w = want.ToVector();
  double num = 0, den = 0;
  *nan_mismatch = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const bool gn = std::isnan(g[i]), wn = std::isnan(w[i]);
    if (gn || wn) {
      if (gn != wn) ++*nan_mismatch;
      continue;
    }
    if (std::isinf(g[i]) || std::isinf(w[i])) {
      if (g[i] != w[i]) ++*nan_mismatch;
      continue;
    }
    num += (g[i] - w[i]) * (g[i] - w[i]);
    den += w[i] * w[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

class CudaParity : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) GTEST_SKIP() << "no CUDA: " << CudaUnavailableReason();
    cuda::SetPoisonAllocations(true);
  }
  void TearDown() override {
    if (CudaAvailable()) cuda::SetPoisonAllocations(false);
  }
};

TEST_P(CudaParity, MatchesCpuOracle) {
  const Case& c = Table()[GetParam()];
  if (c.before) c.before();
  if (IsSkipped()) return;  // `before` may skip (e.g. cuDNN unavailable)
  Tensors cpu_in = c.inputs();
  Tensors gpu_in;
  for (const Tensor& t : cpu_in) gpu_in.push_back(ops::To(t, Device::CUDA(0)));
  Tensors want = c.cpu_op(cpu_in);
  Tensors got = c.gpu_op ? c.gpu_op(gpu_in) : c.cpu_op(gpu_in);
  if (c.after) c.after();
  ASSERT_EQ(got.size(), want.size()) << c.name;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_TRUE(got[i].device().is_cuda()) << c.name << " output " << i << " is not on CUDA";
    ASSERT_EQ(got[i].shape(), want[i].shape()) << c.name << " output " << i;
    ASSERT_EQ(got[i].dtype(), want[i].dtype()) << c.name << " output " << i;
    Tensor host = ops::To(got[i], Device::CPU());
    if (!IsFloating(want[i].dtype())) {
      EXPECT_EQ(host.ToVector(), want[i].ToVector())
          << c.name << " output " << i << FirstMismatches(host, want[i], 0.0);
      continue;
    }
    int64_t nan_mismatch = 0;
    const double err = RelL2(host, want[i], &nan_mismatch);
    EXPECT_EQ(nan_mismatch, 0) << c.name << " output " << i << ": " << nan_mismatch
                               << " elements NaN/inf on one side only (unwritten outputs?)";
    EXPECT_LE(err, c.tol) << c.name << " output " << i << " " << want[i].str()
                          << FirstMismatches(host, want[i], std::max(c.tol, 1e-12));
    std::printf("[parity] %-40s out %zu  rel_l2 %.3e  (tol %.0e)\n", c.name.c_str(), i, err,
                c.tol);
  }
}

std::vector<size_t> AllCases() {
  std::vector<size_t> ids(Table().size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = i;
  return ids;
}

INSTANTIATE_TEST_SUITE_P(Ops, CudaParity, ::testing::ValuesIn(AllCases()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           std::string n = Table()[info.param].name;
                           for (char& ch : n) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n + "_" + std::to_string(info.param);
                         });

// The cuDNN path's posing of a Conv3d (history concatenated in front of x, zeros appended where
// the "after" padding exceeds the "before" one, the "before" padding on both sides, the leading
// output positions) gives the convolution's result: checked with the CPU convolution in f64, so
// on every machine (the emulation has no cuDNN).
TEST(CudnnConvGeometry, PosesEveryConvCaseExactly) {
  int tails = 0, inexact = 0;
  for (const ConvCfg& c : kConvCases) {
    const Tensor x = Randn(c.x, kF64), w = Randn(c.weight, kF64), b = Randn({c.weight[0]}, kF64);
    Shape history_shape = c.x;
    history_shape[2] = c.history_frames;
    ops::Conv3dOptions o;
    o.stride = c.stride;
    o.padding = c.padding;
    if (c.history_frames > 0) o.history = Randn(history_shape, kF64);
    const Tensor want = ops::Conv3d(x, w, b, o);

    const cuda::CudnnConvGeometry g = cuda::PlanCudnnConvGeometry(c.x, c.history_frames, c.weight, o);
    Tensor input = o.history.defined() ? ops::Concat({o.history, x}, 2) : x;
    input = ops::Pad(input, {{0, g.tail[0]}, {0, g.tail[1]}, {0, g.tail[2]}});
    ASSERT_EQ(input.shape(), Shape(g.in.begin(), g.in.end())) << c.name;
    ASSERT_EQ(Shape(g.filter.begin(), g.filter.end()), c.weight) << c.name;
    ops::Conv3dOptions symmetric;
    symmetric.stride = g.stride;
    symmetric.padding = {g.pad[0], g.pad[0], g.pad[1], g.pad[1], g.pad[2], g.pad[2]};
    Tensor y = ops::Conv3d(input, w, b, symmetric);
    ASSERT_EQ(y.shape(), Shape(g.out.begin(), g.out.end())) << c.name;
    EXPECT_EQ(g.exact, y.shape() == want.shape()) << c.name;
    for (int d = 0; d < 3; ++d) y = ops::Narrow(y, 2 + d, 0, want.size(2 + d));
    int64_t nan_mismatch = 0;
    EXPECT_LE(RelL2(ops::Contiguous(y), want, &nan_mismatch), 1e-14) << c.name;
    tails += g.tail[0] + g.tail[1] + g.tail[2] > 0;
    inexact += !g.exact;
  }
  EXPECT_GT(tails, 0) << "no case appends zeros";
  EXPECT_GT(inexact, 0) << "no case narrows cuDNN's output";
}

// ---- runtime and allocator -------------------------------------------------------------------

TEST(CudaRuntime, SizeClasses) {
  EXPECT_EQ(cuda::RoundToSizeClass(0), 0u);
  EXPECT_EQ(cuda::RoundToSizeClass(1), 512u);
  EXPECT_EQ(cuda::RoundToSizeClass(513), 1024u);
  EXPECT_EQ(cuda::RoundToSizeClass(1 << 20), 1u << 20);
  EXPECT_EQ(cuda::RoundToSizeClass((1 << 20) + 1), (1u << 20) + (1u << 18));
  EXPECT_EQ(cuda::RoundToSizeClass(3u << 20), 3u << 20);
  for (size_t b : {size_t{1000}, size_t{123456789}, size_t{5} << 30}) {
    const size_t c = cuda::RoundToSizeClass(b);
    EXPECT_GE(c, b);
    EXPECT_LE(static_cast<double>(c), 1.25 * static_cast<double>(b) + 512);
  }
}

TEST(CudaRuntime, NoCudaMallocInSteadyState) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA: " << CudaUnavailableReason();
  const Device dev = Device::CUDA(0);
  Tensor w = ops::To(Randn({64, 96}, kBF16), dev);
  auto step = [&] {  // a miniature training step: forward, backward-ish, update
    Tensor x = ops::RandomNormal({8, 31, 96}, 1, 0, kBF16, dev);
    Tensor h = ops::Matmul(x, ops::Transpose(w, 0, 1));
    ops::NormResult n = ops::LayerNorm(h, Tensor(), Tensor(), 1e-5);
    Tensor loss = ops::Mean(ops::Square(ops::Cast(n.out, kF32)));
    return loss.item();
  };
  step();
  step();
  const cuda::AllocatorStats before = cuda::GetAllocatorStats(0);
  for (int i = 0; i < 3; ++i) step();
  const cuda::AllocatorStats after = cuda::GetAllocatorStats(0);
  EXPECT_EQ(after.num_device_mallocs, before.num_device_mallocs);
  EXPECT_GT(after.num_cache_hits, before.num_cache_hits);
  EXPECT_GE(after.peak_allocated_bytes, after.allocated_bytes);
  EXPECT_GE(after.reserved_bytes, after.allocated_bytes);
  EXPECT_GE(after.peak_reserved_bytes, after.reserved_bytes);
  std::printf("[allocator] allocated %lld peak %lld reserved %lld peak %lld mallocs %lld hits %lld\n",
              static_cast<long long>(after.allocated_bytes),
              static_cast<long long>(after.peak_allocated_bytes),
              static_cast<long long>(after.reserved_bytes),
              static_cast<long long>(after.peak_reserved_bytes),
              static_cast<long long>(after.num_device_mallocs),
              static_cast<long long>(after.num_cache_hits));
}

TEST(CudaRuntime, ErrorsNameTheCall) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA: " << CudaUnavailableReason();
  try {
    Tensor::Empty({int64_t{1} << 50}, kF32, Device::CUDA(0));
    FAIL() << "a 4 PiB allocation succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
}

TEST(CudaRuntime, WithoutGpuCudaTensorsFailCleanly) {
  if (CudaAvailable()) GTEST_SKIP() << "a GPU is present";
  EXPECT_THROW(Tensor::Empty({4}, kF32, Device::CUDA(0)), Error);
  // The CPU keeps working.
  EXPECT_DOUBLE_EQ(ops::Sum(Tensor::Ones({3, 4})).item(), 12.0);
}

}  // namespace
}  // namespace sdpo
#endif  // SDPO_HAVE_CUDA_BACKEND
