// The backward engine: accumulation, graph lifetime, grad mode, deep graphs, recompute.
#include "autograd/engine.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "autograd/ops.h"
#include "tests/autograd/gradcheck.h"

namespace sdpo {
namespace {

using ::testing::HasSubstr;
using testing::RandomLeaf;

TEST(EngineTest, DiamondGraphAccumulatesBothPaths) {
  Tensor x = RandomLeaf({3}, 1);
  Tensor y = add(mul(x, 2.0), exp(x));  // dy/dx = 2 + exp(x)
  Backward(sum(y));
  std::vector<double> xv = x.ToVector(), g = x.grad().ToVector();
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(g[i], 2 + std::exp(xv[i]), 1e-12);
}

TEST(EngineTest, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = RandomLeaf({2}, 2);
  Backward(sum(mul(x, 3.0)));
  Backward(sum(mul(x, 3.0)));
  for (double g : x.grad().ToVector()) EXPECT_DOUBLE_EQ(g, 6.0);
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(EngineTest, NonScalarOutputTakesAnUpstreamGradient) {
  Tensor x = RandomLeaf({2, 2}, 3);
  Tensor y = mul(x, 5.0);
  EXPECT_THROW(Backward(y), Error);  // non-scalar without grad_output
  Backward(y, Tensor::FromVector(std::vector<double>{1, 2, 3, 4}, {2, 2}, kF64));
  EXPECT_EQ(x.grad().ToVector(), (std::vector<double>{5, 10, 15, 20}));
}

TEST(EngineTest, SecondBackwardNeedsRetainGraph) {
  Tensor x = RandomLeaf({3}, 4);
  Tensor loss = sum(exp(x));
  Backward(loss, Tensor(), /*retain_graph=*/true);
  Backward(loss);  // the graph was retained once
  try {
    Backward(loss);
    FAIL() << "third backward should fail: the graph was freed";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("retain_graph"));
  }
}

TEST(EngineTest, NoGradScopeRecordsNothing) {
  Tensor x = RandomLeaf({3}, 5);
  Tensor y;
  {
    NoGradGuard guard;
    y = mul(x, 2.0);
  }
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(GradEnabled());
  try {
    Backward(sum(y));
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("does not require grad"));
  }
}

TEST(EngineTest, DetachStopsGradientButSharesData) {
  Tensor x = RandomLeaf({3}, 6);
  Tensor d = Detach(x);
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.SharesStorage(x));
  Tensor y = add(mul(x, 2.0), mul(d, 7.0));
  Backward(sum(y));
  for (double g : x.grad().ToVector()) EXPECT_DOUBLE_EQ(g, 2.0);
}

TEST(EngineTest, OpReturningItsInputDoesNotCorruptTheLeaf) {
  Tensor x = RandomLeaf({2, 3}, 7);
  Tensor c = contiguous(x);  // already contiguous: same tensor back, no node
  Tensor v = view(x, {6});   // a node on a new tensor, never on x's
  EXPECT_TRUE(x.is_leaf());
  Backward(sum(mul(v, 2.0)));
  for (double g : x.grad().ToVector()) EXPECT_DOUBLE_EQ(g, 2.0);
  (void)c;
}

TEST(EngineTest, DeepGraphDoesNotOverflowTheStack) {
  // 200k chained ops: both the backward walk and the graph's destruction are iterative.
  Tensor x = RandomLeaf({1}, 8);
  Tensor y = x;
  for (int i = 0; i < 200000; ++i) y = add(y, 1e-6);
  Backward(sum(y));
  EXPECT_DOUBLE_EQ(x.grad().item(), 1.0);
  Tensor z = x;
  for (int i = 0; i < 200000; ++i) z = mul(z, 1.0);
  z = Tensor();  // destroy an un-backwarded deep graph
}

TEST(EngineTest, BranchWithoutGradientIsSkipped) {
  Tensor x = RandomLeaf({3}, 9);
  Tensor w = RandomLeaf({3}, 10);
  // Only x's path contributes: max's gradient of w is zero where not selected, but the graph
  // still has to finish with both leaves visited.
  Tensor y = sum(mul(x, Detach(w)));
  Backward(y);
  EXPECT_FALSE(w.grad().defined());
  EXPECT_TRUE(x.grad().defined());
}

// A small two-layer block with parameters captured by the closure.
Tensor Block(const Tensor& x, const Tensor& w1, const Tensor& w2) {
  return add(x, matmul(gelu_tanh(matmul(layer_norm(x, Tensor(), Tensor(), 1e-6), w1)), w2));
}

TEST(CheckpointTest, RecomputeGivesBitIdenticalGradients) {
  Tensor w1 = RandomLeaf({6, 8}, 11), w2 = RandomLeaf({8, 6}, 12);
  auto run = [&](bool recompute) {
    Tensor x = RandomLeaf({5, 6}, 13);
    w1.zero_grad();
    w2.zero_grad();
    Tensor h = x;
    for (int layer = 0; layer < 3; ++layer) {
      if (recompute) {
        h = checkpoint([&](const std::vector<Tensor>& in) { return Block(in[0], w1, w2); }, {h},
                       {w1, w2});
      } else {
        h = Block(h, w1, w2);
      }
    }
    Backward(sum(mul(h, h)));
    return std::vector<std::vector<double>>{x.grad().ToVector(), w1.grad().ToVector(),
                                            w2.grad().ToVector()};
  };
  auto plain = run(false), recomputed = run(true);
  EXPECT_EQ(plain, recomputed);  // bit-identical
}

TEST(CheckpointTest, ParametersGetGradientsWhenTheInputIsConstant) {
  // LoRA-style: the block input needs no grad, only a parameter inside the block does.
  Tensor w = RandomLeaf({4, 4}, 14);
  Tensor x = ops::RandomNormal({2, 4}, 15, 0, kF64);  // constant
  Tensor y = checkpoint([&](const std::vector<Tensor>& in) { return matmul(in[0], w); }, {x}, {w});
  Backward(sum(y));
  ASSERT_TRUE(w.grad().defined());
  Tensor expected = ops::Matmul(ops::Transpose(x, 0, 1), Tensor::Ones({2, 4}, kF64));
  EXPECT_EQ(w.grad().ToVector(), expected.ToVector());
}

TEST(AutogradErrorsTest, RequiresGradOnIntegerTensorIsAnError) {
  Tensor i = Tensor::Zeros({2}, kI64);
  EXPECT_THROW(i.set_requires_grad(true), Error);
}

}  // namespace
}  // namespace sdpo
