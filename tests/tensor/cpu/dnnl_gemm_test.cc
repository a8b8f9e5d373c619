// The bf16 x bf16 -> f32 GEMM (ops::Matmul(a, b, kF32)): oneDNN's matmul and the converting
// sgemm fallback, each against an f64 loop over the same bf16 values, on awkward shapes, every
// transposition (umT5 multiplies by Transpose(w) of a [out, in] weight) and batch broadcasting.
//
// Tolerance: bf16 has 8 significant bits, so every product a_i b_i of two bf16 values is exact
// in f32 (16 bits <= 24); only the f32 additions round. Any summation order of K terms has depth
// at most K, so |c - exact| <= gamma_K * sum_i |a_i b_i| with gamma_K = K u / (1 - K u) and
// u = 2^-24 (f32 unit roundoff), per output element. The f64 reference adds K u_64 (~1e-13
// relative), far below that.
#include "tensor/cpu/dnnl_gemm.h"

#include <cmath>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tensor/ops.h"
#include "tests/tensor/test_util.h"

namespace sdpo {
namespace {

using testing::RandomTensor;
using testing::ScopedNumThreads;

struct Case {
  int64_t batch_a, batch_b, m, n, k;
  bool ta, tb;
  std::string Name() const {
    return absl::StrCat("[", batch_a, "|", batch_b, "] m ", m, " n ", n, " k ", k, ta ? " a^T" : "",
                        tb ? " b^T" : "");
  }
};

// A bf16 operand with logical shape [batch, rows, cols]; with `trans`, the transposed view of a
// contiguous [batch, cols, rows] (as Transpose(w, 0, 1) of a stored weight).
Tensor Operand(int64_t batch, int64_t rows, int64_t cols, bool trans, uint64_t seed) {
  if (!trans) return RandomTensor({batch, rows, cols}, seed, kBF16);
  return ops::Transpose(RandomTensor({batch, cols, rows}, seed, kBF16), 1, 2);
}

// Checks c [batch, m, n] against the f64 loop on a and b (logical shapes, bf16 values), element
// by element within gamma_K * sum |a b|.
::testing::AssertionResult MatchesF64Loop(const Tensor& c, const Tensor& a, const Tensor& b) {
  const int64_t batch = c.size(0), m = c.size(1), n = c.size(2), k = a.size(2);
  const std::vector<double> av = a.ToVector(), bv = b.ToVector(), cv = c.ToVector();
  const double u = std::ldexp(1.0, -24), gamma = k * u / (1 - k * u);
  double worst = 0;
  for (int64_t i = 0; i < batch; ++i) {
    const int64_t ai = a.size(0) == 1 ? 0 : i, bi = b.size(0) == 1 ? 0 : i;
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t col = 0; col < n; ++col) {
        double sum = 0, abs_sum = 0;
        for (int64_t j = 0; j < k; ++j) {
          const double p = av[(ai * m + r) * k + j] * bv[(bi * k + j) * n + col];
          sum += p;
          abs_sum += std::fabs(p);
        }
        const double err = std::fabs(cv[(i * m + r) * n + col] - sum);
        worst = std::max(worst, abs_sum > 0 ? err / (gamma * abs_sum) : err);
        if (err > gamma * abs_sum) {
          return ::testing::AssertionFailure()
                 << "element [" << i << ", " << r << ", " << col
                 << "]: " << cv[(i * m + r) * n + col] << " vs " << sum << ", error " << err
                 << " > gamma_K sum|ab| " << gamma * abs_sum;
        }
      }
    }
  }
  return ::testing::AssertionSuccess() << "worst error / bound " << worst;
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  const std::vector<std::vector<int64_t>> sizes = {
      {1, 1, 1},      {1, 7, 33},   {7, 33, 1},    {33, 257, 7},
      {257, 33, 257}, {33, 1, 257}, {7, 64, 4096},  // umT5's width as K
  };
  for (const auto& s : sizes) {
    for (int t = 0; t < 4; ++t)
      cases.push_back({1, 1, s[0], s[1], s[2], (t & 1) != 0, (t & 2) != 0});
  }
  cases.push_back({3, 1, 33, 17, 65, false, true});  // a weight shared by a batch
  cases.push_back({3, 3, 7, 33, 17, true, false});   // batched operands
  cases.push_back({1, 3, 17, 7, 33, false, false});  // a shared left operand
  return cases;
}

void CheckAllCases() {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.Name());
    Tensor a = Operand(c.batch_a, c.m, c.k, c.ta, 11);
    Tensor b = Operand(c.batch_b, c.k, c.n, c.tb, 12);
    Tensor out = ops::Matmul(a, b, kF32);
    ASSERT_EQ(out.dtype(), kF32);
    ASSERT_EQ(out.shape(), (Shape{std::max(c.batch_a, c.batch_b), c.m, c.n}));
    EXPECT_TRUE(MatchesF64Loop(out, a, b));
  }
}

TEST(DnnlGemmTest, OneDnnMatchesTheF64LoopOnBf16Values) {
  if (!cpu::DnnlGemmAvailable()) GTEST_SKIP() << "oneDNN has no bf16 matmul on this CPU";
  for (int threads : {1, 2}) {
    ScopedNumThreads scoped(threads);
    SCOPED_TRACE(absl::StrCat(threads, " threads"));
    CheckAllCases();
  }
}

// The kernel itself (not only ops::Matmul's routing) runs: oneDNN writes the product.
TEST(DnnlGemmTest, KernelRunsWhenAvailable) {
  if (!cpu::DnnlGemmAvailable()) GTEST_SKIP() << "oneDNN has no bf16 matmul on this CPU";
  Tensor a = RandomTensor({1, 33, 65}, 1, kBF16), b = RandomTensor({1, 17, 65}, 2, kBF16);
  Tensor out = Tensor::Full({1, 33, 17}, 1e30, kF32);
  ASSERT_TRUE(cpu::DnnlGemmBf16(out, a, false, b, true));
  EXPECT_TRUE(MatchesF64Loop(out, a, ops::Transpose(b, 1, 2)));
}

class FallbackGuard {
 public:
  FallbackGuard() { cpu::SetDnnlGemmEnabled(false); }
  ~FallbackGuard() { cpu::SetDnnlGemmEnabled(true); }
};

TEST(DnnlGemmTest, ConvertingFallbackMatchesTheF64Loop) {
  FallbackGuard fallback;
  Tensor a = RandomTensor({1, 4, 8}, 1, kBF16), b = RandomTensor({1, 8, 4}, 2, kBF16);
  EXPECT_FALSE(cpu::DnnlGemmBf16(Tensor::Empty({1, 4, 4}, kF32), a, false, b, false));
  CheckAllCases();
}

// Both paths on the same operands: each within gamma_K sum|ab| of the exact value, so within
// twice that of each other; on a umT5-sized row block the difference is summation order only.
TEST(DnnlGemmTest, FallbackAgreesWithOneDnn) {
  if (!cpu::DnnlGemmAvailable()) GTEST_SKIP() << "oneDNN has no bf16 matmul on this CPU";
  Tensor x = RandomTensor({16, 4096}, 3, kBF16), w = RandomTensor({256, 4096}, 4, kBF16);
  Tensor fast = ops::Matmul(x, ops::Transpose(w, 0, 1), kF32);
  Tensor slow;
  {
    FallbackGuard fallback;
    slow = ops::Matmul(x, ops::Transpose(w, 0, 1), kF32);
  }
  const double u = std::ldexp(1.0, -24), gamma = 4096 * u / (1 - 4096 * u);
  Tensor abs_sum =
      ops::Matmul(ops::Unary(ops::UnaryOp::kAbs, ops::Cast(x, kF64)),
                  ops::Transpose(ops::Unary(ops::UnaryOp::kAbs, ops::Cast(w, kF64)), 0, 1));
  const std::vector<double> f = fast.ToVector(), s = slow.ToVector(), bound = abs_sum.ToVector();
  for (size_t i = 0; i < f.size(); ++i) {
    ASSERT_LE(std::fabs(f[i] - s[i]), 2 * gamma * bound[i]) << "element " << i;
  }
}

// dnnl_gemm_avx2_test runs this file with ONEDNN_MAX_CPU_ISA=AVX2: oneDNN then has no optimised
// bf16 matmul, as on a CPU without AVX-512, so DnnlGemmBf16 declines and ops::Matmul's bf16 x
// bf16 -> f32 products go through the converting fallback, still within the bound.
TEST(DnnlGemmTest, WithoutAvx512TheKernelDeclinesAndMatmulStillMatches) {
  const char* isa = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (isa == nullptr || std::string(isa) != "AVX2") {
    GTEST_SKIP() << "runs in dnnl_gemm_avx2_test (ONEDNN_MAX_CPU_ISA=AVX2)";
  }
  EXPECT_FALSE(cpu::DnnlGemmAvailable());
  Tensor a = RandomTensor({1, 4, 8}, 1, kBF16), b = RandomTensor({1, 8, 4}, 2, kBF16);
  EXPECT_FALSE(cpu::DnnlGemmBf16(Tensor::Empty({1, 4, 4}, kF32), a, false, b, false));
  CheckAllCases();
}

TEST(DnnlGemmTest, OtherResultDtypesAreRefused) {
  Tensor x = RandomTensor({2, 3}, 1, kBF16), w = RandomTensor({3, 2}, 2, kBF16);
  EXPECT_NE(testing::ErrorMessage([&] {
              ops::Matmul(x, ops::Cast(w, kF32), kF32);
            }).find("only f32 for bf16 operands"),
            std::string::npos);
  EXPECT_NE(testing::ErrorMessage([&] {
              ops::Matmul(ops::Cast(x, kF32), w, kF64);
            }).find("only f32 for bf16 operands"),
            std::string::npos);
}

}  // namespace
}  // namespace sdpo
