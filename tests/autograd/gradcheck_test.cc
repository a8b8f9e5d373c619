// The table-driven gradient check: every differentiable op (autograd/ops.h) on random float64
// inputs of awkward shapes (size-1 dims, odd sizes, non-contiguous and broadcast inputs).
// An op listed in DifferentiableOps() without an entry here fails EveryOpHasAnEntry.
#include <algorithm>
#include <cmath>
#include <set>

#include "gtest/gtest.h"
#include "tests/autograd/gradcheck.h"
#include "tests/op_cases.h"

namespace sdpo {
namespace {

using testing::GradCheck;
using testing::GradCheckOptions;
using testing::RandomLeaf;

struct Case {
  std::string op;  // the DifferentiableOps() name this case covers
  std::string label;
  std::vector<Shape> shapes;
  testing::TensorFn fn;
  // Transforms the random leaves before use (e.g. positive values for log).
  std::function<void(std::vector<Tensor>&)> prepare = nullptr;
  GradCheckOptions options = {};
};

using V = const std::vector<Tensor>&;

void MakePositive(std::vector<Tensor>& xs) {
  for (Tensor& x : xs) {
    double* p = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) p[i] = 0.5 + std::abs(p[i]);
  }
}

// Moves values away from a kink at 0 (abs, clamp, maximum) so differences stay one-sided.
void AwayFromZero(std::vector<Tensor>& xs) {
  for (Tensor& x : xs) {
    double* p = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) p[i] += p[i] >= 0 ? 0.1 : -0.1;
  }
}

Tensor Index(std::vector<int64_t> v) {
  return Tensor::FromVector(v, {static_cast<int64_t>(v.size())}, kI64);
}

Tensor RopeTable(int64_t l, int64_t half, bool sin_part) {
  std::vector<double> v(l * half);
  for (int64_t p = 0; p < l; ++p)
    for (int64_t j = 0; j < half; ++j) {
      double theta = p * std::pow(10000.0, -2.0 * j / (2.0 * half));
      v[p * half + j] = sin_part ? std::sin(theta) : std::cos(theta);
    }
  return Tensor::FromVector(v, {l, half}, kF64);
}

std::vector<Case> Cases() {
  std::vector<Case> c;
  // --- views
  c.push_back({"view", "reshape [3,4]->[2,6]", {{3, 4}}, [](V x) { return view(x[0], {2, 6}); }});
  c.push_back({"view", "reshape of a transposed view (copies)", {{3, 5}},
               [](V x) { return reshape(transpose(x[0], 0, 1), {15}); }});
  c.push_back({"permute", "[2,3,1,5] (2,0,3,1)", {{2, 3, 1, 5}},
               [](V x) { return permute(x[0], {2, 0, 3, 1}); }});
  c.push_back({"narrow", "narrow dim 1", {{3, 7}}, [](V x) { return narrow(x[0], 1, 2, 4); }});
  c.push_back({"narrow", "strided slice", {{9, 2}}, [](V x) { return slice(x[0], 0, 1, 8, 3); }});
  c.push_back({"narrow", "split + chunk", {{5, 3}}, [](V x) {
                 auto parts = split(x[0], {2, 3}, 0);
                 auto ch = chunk(parts[1], 2, 0);
                 return add(mul(ch[0], 2.0), sum(ch[1], {0}, true));
               }});
  c.push_back({"select", "select dim 0 (negative index)", {{4, 3}}, [](V x) { return select(x[0], 0, -2); }});
  c.push_back({"expand", "[3,1] -> [2,3,5]", {{3, 1}}, [](V x) { return expand(x[0], {2, 3, 5}); }});
  c.push_back({"contiguous", "of a permuted view", {{3, 4, 2}},
               [](V x) { return contiguous(permute(x[0], {2, 0, 1})); }});
  c.push_back({"clone", "clone", {{5}}, [](V x) { return clone(x[0]); }});
  {
    Case k{"cast", "f64 -> f32 -> f64", {{4, 3}},
           [](V x) { return cast(mul(cast(x[0], kF32), 3.0), kF64); }};
    k.options.step = 1e-2;
    k.options.rtol = 1e-4;
    k.options.atol = 1e-4;
    c.push_back(k);
  }
  c.push_back({"to", "cpu -> cpu (identity)", {{3}}, [](V x) { return mul(to(x[0], Device::CPU()), 2.0); }});
  // --- binary: every differentiable op of the op-case table, broadcasting [3,1,5] and [4,1]
  for (const testing::BinaryOpCase& k : testing::BinaryOpCases()) {
    if (k.differentiable == nullptr) continue;
    Case b{ops::BinaryOpName(k.op), "broadcast [3,1,5] op [4,1], inputs in the op's domain",
           {{3, 1, 5}, {4, 1}}, [f = k.differentiable](V x) { return f(x[0], x[1]); }};
    b.prepare = [k](std::vector<Tensor>& xs) {
      testing::MapIntoDomain(xs[0], k.a_lo, k.a_hi);
      testing::MapIntoDomain(xs[1], k.b_lo, k.b_hi);
      if (k.kink_at_equal) {  // keep a and b apart where they meet (max/min)
        double* b = xs[1].data<double>();
        for (int64_t i = 0; i < xs[1].numel(); ++i) b[i] = 0.35 * i - 1.4;
      }
    };
    c.push_back(b);
  }
  // --- binary, more layouts
  c.push_back({"add", "broadcast [3,1,5]+[4,1]", {{3, 1, 5}, {4, 1}}, [](V x) { return add(x[0], x[1]); }});
  c.push_back({"add", "scalar", {{2, 3}}, [](V x) { return add(x[0], 1.5); }});
  c.push_back({"sub", "transposed - row", {{4, 3}, {4}},
               [](V x) { return sub(transpose(x[0], 0, 1), x[1]); }});
  c.push_back({"mul", "broadcast [1,3]*[5,1]", {{1, 3}, {5, 1}}, [](V x) { return mul(x[0], x[1]); }});
  c.push_back({"mul", "same tensor twice", {{4}}, [](V x) { return mul(x[0], x[0]); }});
  c.push_back({"div", "broadcast", {{3, 4}, {4}}, [](V x) { return div(x[0], x[1]); }, MakePositive});
  c.push_back({"pow", "tensor ^ tensor", {{3, 2}, {3, 2}}, [](V x) { return pow(x[0], x[1]); }, MakePositive});
  c.push_back({"pow", "tensor ^ 3", {{7}}, [](V x) { return pow(x[0], 3.0); }});
  c.push_back({"maximum", "broadcast", {{3, 4}, {4}}, [](V x) { return maximum(x[0], x[1]); }, AwayFromZero});
  c.push_back({"minimum", "broadcast", {{3, 1}, {1, 5}}, [](V x) { return minimum(x[0], x[1]); }, AwayFromZero});
  c.push_back({"where", "broadcast condition", {{3, 4}, {4}}, [](V x) {
                 Tensor cond = ops::Compare(ops::CompareOp::kGt, Detach(x[0]), ops::ScalarLike(0, x[0]));
                 return where(cond, x[0], x[1]);
               }});
  // --- unary: every differentiable op of the op-case table, on a transposed view
  for (const testing::UnaryOpCase& k : testing::UnaryOpCases()) {
    if (k.differentiable == nullptr) continue;
    Case u{ops::UnaryOpName(k.op), "[5,1,3] transposed, inputs in the op's domain", {{3, 1, 5}},
           [f = k.differentiable](V x) { return f(transpose(x[0], 0, 2)); }};
    u.prepare = [k](std::vector<Tensor>& xs) { testing::MapIntoDomain(xs[0], k.lo, k.hi, k.kink); };
    c.push_back(u);
  }
  c.push_back({"clamp", "min and max", {{5, 3}}, [](V x) { return clamp(x[0], -0.5, 0.7); }, AwayFromZero});
  // --- reductions
  c.push_back({"sum", "all", {{3, 4}}, [](V x) { return sum(x[0]); }});
  c.push_back({"sum", "dims {0,2} keepdim, non-contiguous", {{2, 3, 5}},
               [](V x) { return sum(permute(x[0], {1, 2, 0}), {0, 2}, true); }});
  c.push_back({"mean", "dim -1", {{4, 1, 6}}, [](V x) { return mean(x[0], {-1}); }});
  c.push_back({"max", "dim 1", {{3, 5}}, [](V x) { return max(x[0], {1}); }});
  c.push_back({"max", "all", {{2, 3}}, [](V x) { return max(x[0]); }});
  c.push_back({"var", "unbiased dim 0", {{5, 3}}, [](V x) { return var(x[0], {0}); }});
  c.push_back({"var", "biased all keepdim", {{2, 3, 2}}, [](V x) { return var(x[0], {}, 0, true); }});
  c.push_back({"softmax", "dim 1 of [3,5,2]", {{3, 5, 2}}, [](V x) { return softmax(x[0], 1); }});
  c.push_back({"log_softmax", "last dim", {{4, 7}}, [](V x) { return log_softmax(x[0], -1); }});
  // --- matmul
  c.push_back({"matmul", "[3,5]x[5,4]", {{3, 5}, {5, 4}}, [](V x) { return matmul(x[0], x[1]); }});
  c.push_back({"matmul", "batched broadcast [2,1,3,4]x[3,4,2]", {{2, 1, 3, 4}, {3, 4, 2}},
               [](V x) { return matmul(x[0], x[1]); }});
  c.push_back({"matmul", "x W^T (linear)", {{2, 3, 5}, {4, 5}},
               [](V x) { return matmul(x[0], transpose(x[1], 0, 1)); }});
  c.push_back({"matmul", "transposed a, size-1 dims", {{5, 1}, {5, 3}},
               [](V x) { return matmul(transpose(x[0], 0, 1), x[1]); }});
  // --- joining and indexing
  c.push_back({"concat", "dim 1, three inputs", {{2, 1, 3}, {2, 4, 3}, {2, 2, 3}},
               [](V x) { return concat({x[0], x[1], x[2]}, 1); }});
  c.push_back({"concat", "stack dim 0", {{3, 2}, {3, 2}}, [](V x) { return stack({x[0], x[1]}, 0); }});
  c.push_back({"index_select", "repeated indices", {{5, 3}},
               [](V x) { return index_select(x[0], 0, Index({4, 0, 4, 2})); }});
  c.push_back({"gather", "dim 1", {{3, 4}}, [](V x) {
                 Tensor idx = Tensor::FromVector(std::vector<int64_t>{0, 3, 3, 1, 2, 0}, {3, 2}, kI64);
                 return gather(x[0], 1, idx);
               }});
  // --- fused
  c.push_back({"layer_norm", "affine, [2,3,7]", {{2, 3, 7}, {7}, {7}},
               [](V x) { return layer_norm(x[0], x[1], x[2], 1e-6); }});
  c.push_back({"layer_norm", "no affine, non-contiguous", {{5, 3}},
               [](V x) { return layer_norm(transpose(x[0], 0, 1), Tensor(), Tensor(), 1e-5); }});
  c.push_back({"layer_norm_modulate", "[2,3,5] with [2,1,5] shift/scale", {{2, 3, 5}, {2, 1, 5}, {2, 1, 5}},
               [](V x) { return layer_norm_modulate(x[0], x[1], x[2], 1e-6); }});
  c.push_back({"layer_norm_modulate", "[3,4] with [3,4] shift/scale", {{3, 4}, {3, 4}, {3, 4}},
               [](V x) { return layer_norm_modulate(x[0], x[1], x[2], 1e-5); }});
  c.push_back({"rms_norm", "weight, [4,6]", {{4, 6}, {6}}, [](V x) { return rms_norm(x[0], x[1], 1e-6); }});
  c.push_back({"rms_norm", "no weight", {{1, 5}}, [](V x) { return rms_norm(x[0], Tensor(), 1e-6); }});
  c.push_back({"attention", "self, [2,3,5,4]", {{2, 3, 5, 4}, {2, 3, 5, 4}, {2, 3, 5, 4}},
               [](V x) { return attention(x[0], x[1], x[2]); }});
  c.push_back({"attention", "cross with mask, Lq 3 Lk 6 Dv 2", {{1, 2, 3, 4}, {1, 2, 6, 4}, {1, 2, 6, 2}},
               [](V x) {
                 std::vector<double> m(6, 0.0);
                 m[4] = m[5] = -INFINITY;  // padded keys
                 return attention(x[0], x[1], x[2], Tensor::FromVector(m, {1, 1, 1, 6}, kF64), 0.3);
               }});
  c.push_back({"rope", "interleaved [2,5,3,6]", {{2, 5, 3, 6}}, [](V x) {
                 return rope(x[0], RopeTable(5, 3, false), RopeTable(5, 3, true), ops::RopeLayout::kInterleaved);
               }});
  c.push_back({"rope", "half-split [4,1,8]", {{4, 1, 8}}, [](V x) {
                 return rope(x[0], RopeTable(4, 4, false), RopeTable(4, 4, true), ops::RopeLayout::kHalfSplit);
               }});
  c.push_back({"checkpoint", "a recomputed MLP with a captured weight", {{3, 4}, {4, 4}}, [](V x) {
                 Tensor w = x[1];
                 return checkpoint([w](V in) { return gelu_tanh(matmul(in[0], w)); }, {x[0]}, {w});
               }});
  return c;
}

class GradCheckTest : public ::testing::TestWithParam<Case> {};

TEST_P(GradCheckTest, AnalyticMatchesFiniteDifferences) {
  const Case& k = GetParam();
  std::vector<Tensor> inputs;
  uint64_t seed = 100;
  for (const Shape& s : k.shapes) inputs.push_back(RandomLeaf(s, seed++));
  if (k.prepare) k.prepare(inputs);
  // The op under test must actually be recorded in the graph.
  Tensor out = k.fn(inputs);
  std::vector<std::string> names = testing::GraphOpNames(out);
  if (k.op != "to") {
    EXPECT_NE(std::find(names.begin(), names.end(), k.op), names.end())
        << k.op << " not found in the graph of case '" << k.label << "'";
  }
  auto result = GradCheck(k.fn, inputs, k.options);
  EXPECT_TRUE(result.ok) << k.op << " (" << k.label << "): " << result.message
                         << " max error " << result.max_error;
}

INSTANTIATE_TEST_SUITE_P(AllOps, GradCheckTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return absl::StrCat(info.param.op, "_", info.index);
                         });

TEST(GradCheckCoverage, EveryOpHasAnEntry) {
  std::set<std::string> covered;
  for (const Case& k : Cases()) covered.insert(k.op);
  for (const std::string& op : DifferentiableOps()) {
    EXPECT_EQ(covered.count(op), 1u) << "differentiable op '" << op
                                     << "' has no gradient-check entry";
  }
}

// An elementwise op that autograd differentiates must give its autograd function in the op-case
// table, so that the table-driven entries above check it.
TEST(GradCheckCoverage, DifferentiableElementwiseOpsHaveTheirAutogradFunctionInTheTable) {
  const std::vector<std::string>& diff = DifferentiableOps();
  auto differentiable = [&](const char* name) {
    return std::find(diff.begin(), diff.end(), name) != diff.end();
  };
  for (const testing::UnaryOpCase& k : testing::UnaryOpCases()) {
    EXPECT_EQ(differentiable(ops::UnaryOpName(k.op)), k.differentiable != nullptr)
        << ops::UnaryOpName(k.op);
  }
  for (const testing::BinaryOpCase& k : testing::BinaryOpCases()) {
    EXPECT_EQ(differentiable(ops::BinaryOpName(k.op)), k.differentiable != nullptr)
        << ops::BinaryOpName(k.op);
  }
}

TEST(GradCheckHarness, DetectsAWrongGradient) {
  // A deliberately wrong backward (2x the true gradient) must fail the check.
  testing::TensorFn wrong = [](V x) {
    Tensor y = ops::Square(x[0]);
    return Record(y, "square", {x[0]}, [xd = Detach(x[0])](const Tensor& g) {
      return std::vector<Tensor>{ops::Mul(g, ops::MulScalar(xd, 4))};
    });
  };
  auto result = GradCheck(wrong, {RandomLeaf({3}, 5)});
  EXPECT_FALSE(result.ok);
}

}  // namespace
}  // namespace sdpo
