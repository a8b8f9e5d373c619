// The op-case table (tests/op_cases.h) covers every elementwise op in
// tensor/op_list.h exactly once, so the reference, CUDA parity and
// gradient-check tests that read it cover them too.
#include "tests/op_cases.h"

#include <set>

#include "gtest/gtest.h"

namespace sdpo::testing {
namespace {

TEST(OpCases, EveryUnaryOpHasExactlyOneCase) {
  std::multiset<int> seen;
  for (const UnaryOpCase &c : UnaryOpCases())
    seen.insert(static_cast<int>(c.op));
  for (int i = 0; i < ops::kNumUnaryOps; ++i) {
    EXPECT_EQ(seen.count(i), 1u)
        << "unary op " << ops::UnaryOpName(static_cast<ops::UnaryOp>(i))
        << ": add exactly one case to tests/op_cases.cc";
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(ops::kNumUnaryOps));
}

TEST(OpCases, EveryBinaryOpHasExactlyOneCase) {
  std::multiset<int> seen;
  for (const BinaryOpCase &c : BinaryOpCases())
    seen.insert(static_cast<int>(c.op));
  for (int i = 0; i < ops::kNumBinaryOps; ++i) {
    EXPECT_EQ(seen.count(i), 1u)
        << "binary op " << ops::BinaryOpName(static_cast<ops::BinaryOp>(i))
        << ": add exactly one case to tests/op_cases.cc";
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(ops::kNumBinaryOps));
}

TEST(OpCases, DomainsAreNonEmptyAndReferencesFinite) {
  for (const UnaryOpCase &c : UnaryOpCases()) {
    SCOPED_TRACE(ops::UnaryOpName(c.op));
    ASSERT_LT(c.lo, c.hi);
    for (double x : {c.lo, 0.5 * (c.lo + c.hi), c.hi})
      EXPECT_TRUE(std::isfinite(c.reference(x)));
  }
  for (const BinaryOpCase &c : BinaryOpCases()) {
    SCOPED_TRACE(ops::BinaryOpName(c.op));
    ASSERT_LT(c.a_lo, c.a_hi);
    ASSERT_LT(c.b_lo, c.b_hi);
    EXPECT_TRUE(std::isfinite(c.reference(c.a_lo, c.b_hi)));
    EXPECT_TRUE(std::isfinite(c.reference(c.a_hi, c.b_lo)));
  }
}

TEST(OpCases, MapIntoDomainStaysInsideAndAwayFromTheKink) {
  Tensor x = Tensor::FromVector(
      std::vector<double>{-50, -1, -1e-3, 0, 1e-3, 1, 50}, {7}, kF64);
  MapIntoDomain(x, -3, 3, 0.0);
  for (double v : x.ToVector()) {
    EXPECT_GE(v, -3.1);
    EXPECT_LE(v, 3.1);
    EXPECT_GE(std::abs(v), 0.1 - 1e-15);
  }
}

} // namespace
} // namespace sdpo::testing
