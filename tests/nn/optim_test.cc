#include "nn/optim.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/lr_schedule.h"
#include "tests/nn/test_util.h"

namespace sdpo::nn {
namespace {

using testing::AllClose;
using testing::ExpectErrorContains;
using testing::Randn;

const std::vector<std::vector<double>> kGrads = {{0.5, 0.1}, {-0.3, 0.2}, {0.05, -0.4}};

Tensor Param(DType dtype) {
  Tensor p = Tensor::FromVector(std::vector<double>{1.0, -2.0}, {2}, dtype);
  p.set_requires_grad(true);
  return p;
}

void SetGrad(Tensor& p, const std::vector<double>& g) {
  p.set_grad(Tensor::FromVector(g, {2}, p.dtype()));
}

TEST(AdamWTest, MatchesHandComputedSteps) {
  // Reference values computed by hand (PyTorch's AdamW update written out in Python):
  // lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
  const double want[3][2] = {{0.899000002, -2.097999990000001},
                             {0.8789511989397751, -2.1924201864887465},
                             {0.8578611543744845, -2.1708483215338017}};
  for (bool fused : {true, false}) {
    for (DType dtype : {kF64, kF32}) {
      Tensor p = Param(dtype);
      AdamWOptions o;
      o.lr = 0.1;
      o.weight_decay = 0.01;
      o.fused = fused;
      AdamW opt({{"p", p}}, o);
      for (int t = 0; t < 3; ++t) {
        SetGrad(p, kGrads[t]);
        opt.Step();
        double tol = dtype == kF64 ? 1e-14 : 2e-7;
        EXPECT_NEAR(p.at({0}), want[t][0], tol) << "fused " << fused << " step " << t + 1;
        EXPECT_NEAR(p.at({1}), want[t][1], tol) << "fused " << fused << " step " << t + 1;
      }
      EXPECT_EQ(opt.step(), 3);
      TensorMap sd = opt.StateDict();
      EXPECT_EQ(sd.at("p.exp_avg").dtype(), dtype);
      EXPECT_NEAR(sd.at("p.exp_avg").at({0}), 0.0185, 1e-7);
      EXPECT_NEAR(sd.at("p.exp_avg_sq").at({1}), 0.00020994001, 1e-10);
      EXPECT_EQ(sd.at("p.step").item(), 3);
    }
  }
}

TEST(AdamWTest, BiasCorrectionMakesFirstStepLrSized) {
  for (double scale : {1e-6, 1.0, 1e4}) {
    Tensor p = Param(kF64);
    AdamWOptions o;
    o.lr = 0.01;
    o.weight_decay = 0;
    o.eps = 0;
    AdamW opt({{"p", p}}, o);
    SetGrad(p, {scale, -scale});
    opt.Step();
    EXPECT_NEAR(p.at({0}), 1.0 - 0.01, 1e-12);
    EXPECT_NEAR(p.at({1}), -2.0 + 0.01, 1e-12);
  }
}

TEST(AdamWTest, DecayFilterSkipsAndUngradedParamsDoNotAdvance) {
  Tensor w = Param(kF64), b = Param(kF64), idle = Param(kF64);
  AdamWOptions o;
  o.lr = 0.1;
  o.weight_decay = 0.5;
  o.decays = [](const std::string& name) { return name != "b"; };
  AdamW opt({{"w", w}, {"b", b}, {"idle", idle}}, o);
  SetGrad(w, {0, 0});
  SetGrad(b, {0, 0});
  opt.Step();
  EXPECT_NEAR(w.at({0}), 1.0 * (1 - 0.1 * 0.5), 1e-15);  // decay only (zero gradient)
  EXPECT_EQ(b.at({0}), 1.0);
  EXPECT_EQ(idle.at({0}), 1.0);
  TensorMap sd = opt.StateDict();
  EXPECT_EQ(sd.at("idle.step").item(), 0);
  EXPECT_EQ(sd.count("idle.exp_avg"), 0u);
  EXPECT_EQ(sd.at("w.step").item(), 1);
  opt.ZeroGrad();
  EXPECT_FALSE(w.grad().defined());
}

TEST(AdamWTest, StateDictResumesExactly) {
  SetInitSeed(3);
  Linear a(4, 3);
  auto grads = [](int step, const Tensor& p) {
    return ops::MulScalar(Randn(p.shape(), 100 + step), 1.0 + step);
  };
  AdamWOptions o;
  o.lr = 1e-2;
  AdamW opt_a(a.NamedParameters(), o);
  for (int s = 0; s < 3; ++s) {
    for (auto& [n, p] : a.NamedParameters()) Tensor(p).set_grad(grads(s, p));
    opt_a.Step();
  }
  // Snapshot model and optimizer, continue both runs, compare bit for bit.
  TensorMap model, state;
  for (auto& [k, v] : a.StateDict()) model[k] = ops::Clone(v);
  for (auto& [k, v] : opt_a.StateDict()) state[k] = ops::Clone(v);
  SetInitSeed(99);
  Linear b(4, 3);
  b.LoadStateDict(model);
  AdamW opt_b(b.NamedParameters(), o);
  opt_b.LoadStateDict(state);
  EXPECT_EQ(opt_b.step(), 3);
  for (int s = 3; s < 5; ++s) {
    for (auto& [n, p] : a.NamedParameters()) Tensor(p).set_grad(grads(s, p));
    for (auto& [n, p] : b.NamedParameters()) Tensor(p).set_grad(grads(s, p));
    opt_a.Step();
    opt_b.Step();
  }
  EXPECT_EQ(a.weight().ToVector(), b.weight().ToVector());
  EXPECT_EQ(a.bias().ToVector(), b.bias().ToVector());
}

TEST(AdamWTest, LoadStateDictErrors) {
  Tensor p = Param(kF32);
  AdamW opt({{"p", p}});
  SetGrad(p, {1, 1});
  opt.Step();
  TensorMap sd = opt.StateDict();
  TensorMap extra = sd;
  extra["q.exp_avg"] = Tensor::Zeros({2});
  ExpectErrorContains([&] { opt.LoadStateDict(extra); }, {"unexpected 'q.exp_avg'"});
  opt.LoadStateDict(extra, /*strict=*/false);
  TensorMap missing = sd;
  missing.erase("p.exp_avg_sq");
  ExpectErrorContains([&] { opt.LoadStateDict(missing); }, {"missing 'p.exp_avg_sq'"});
  TensorMap wrong = sd;
  wrong["p.exp_avg"] = Tensor::Zeros({3});
  ExpectErrorContains([&] { opt.LoadStateDict(wrong); }, {"'p.exp_avg'", "[3]", "[2]"});
  ExpectErrorContains([&] { AdamW dup({{"p", p}, {"p", p}}); }, {"'p' appears twice"});
}

TEST(SGDTest, MomentumAndNesterovMatchHandComputedSteps) {
  const double want[2][2] = {{0.862474, -1.9132790000000002}, {0.824775646, -1.8526329410000002}};
  for (bool nesterov : {false, true}) {
    Tensor p = Param(kF64);
    SGDOptions o;
    o.lr = 0.1;
    o.momentum = 0.9;
    o.weight_decay = 0.1;
    o.nesterov = nesterov;
    SGD opt({{"p", p}}, o);
    for (const auto& g : kGrads) {
      SetGrad(p, g);
      opt.Step();
    }
    EXPECT_NEAR(p.at({0}), want[nesterov][0], 1e-14);
    EXPECT_NEAR(p.at({1}), want[nesterov][1], 1e-14);
    EXPECT_EQ(opt.StateDict().count("p.momentum_buffer"), 1u);
  }
  // Plain SGD: p - lr g.
  Tensor p = Param(kF32);
  SGD opt({{"p", p}}, SGDOptions{0.5});
  SetGrad(p, {2, -2});
  opt.Step();
  EXPECT_EQ(p.ToVector(), (std::vector<double>{0.0, -1.0}));
}

TEST(ClipGradNormTest, ReturnsNormAndClips) {
  Tensor a = Param(kF32), b = Tensor::Zeros({1}), c = Param(kF32);
  b.set_requires_grad(true);
  SetGrad(a, {3, 4});
  b.set_grad(Tensor::FromVector(std::vector<double>{12}, {1}));
  // c has no gradient: counts as zero.
  EXPECT_NEAR(GradNorm({a, b, c}), 13, 1e-12);
  EXPECT_NEAR(ClipGradNorm({a, b, c}, 20), 13, 1e-12);
  EXPECT_EQ(a.grad().ToVector(), (std::vector<double>{3, 4}));
  EXPECT_NEAR(ClipGradNorm({a, b, c}, 6.5), 13, 1e-12);
  EXPECT_NEAR(GradNorm({a, b}), 6.5, 1e-5);
  EXPECT_NEAR(a.grad().at({0}), 1.5, 1e-6);
  // Non-finite: reported, gradients untouched.
  SetGrad(a, {std::numeric_limits<double>::quiet_NaN(), 1});
  EXPECT_TRUE(std::isnan(ClipGradNorm({a, b}, 1.0)));
  EXPECT_EQ(a.grad().at({1}), 1);
}

TEST(GradAccumulatorTest, MicroBatchesAverageToTheFullBatchGradient) {
  GradAccumulator acc(3);
  EXPECT_DOUBLE_EQ(acc.loss_scale(), 1.0 / 3);
  SetInitSeed(8);
  Linear l(3, 2);
  Tensor x = Randn({6, 3}, 9);
  // Full batch: mean over 6 rows.
  Backward(mean(square(l.Forward(x))));
  Tensor full = ops::Clone(l.weight().grad());
  l.ZeroGrad();
  bool stepped = false;
  for (int k = 0; k < 3; ++k) {
    Tensor part = ops::Narrow(x, 0, 2 * k, 2);
    Backward(mul(mean(square(l.Forward(part))), acc.loss_scale()));
    stepped = acc.Tick();
    EXPECT_EQ(stepped, k == 2);
  }
  EXPECT_EQ(acc.micro_step(), 0);
  EXPECT_TRUE(AllClose(l.weight().grad(), full, 1e-5, 1e-7));
  EXPECT_FALSE(acc.Tick());
  EXPECT_EQ(acc.micro_step(), 1);
}

TEST(LrScheduleTest, Boundaries) {
  LrSchedule c;
  c.base_lr = 2e-4;
  EXPECT_EQ(c.At(0), 2e-4);
  EXPECT_EQ(c.At(1000000), 2e-4);

  LrSchedule w;
  w.kind = LrScheduleKind::kConstantWithWarmup;
  w.base_lr = 1.0;
  w.warmup_steps = 4;
  EXPECT_EQ(w.At(0), 0.0);
  EXPECT_EQ(w.At(1), 0.25);
  EXPECT_EQ(w.At(3), 0.75);
  EXPECT_EQ(w.At(4), 1.0);
  EXPECT_EQ(w.At(100), 1.0);

  LrSchedule cos;
  cos.kind = LrScheduleKind::kCosineWithWarmup;
  cos.base_lr = 1.0;
  cos.warmup_steps = 10;
  cos.total_steps = 110;
  EXPECT_EQ(cos.At(0), 0.0);
  EXPECT_EQ(cos.At(5), 0.5);
  EXPECT_EQ(cos.At(10), 1.0);           // peak right after warmup
  EXPECT_NEAR(cos.At(60), 0.5, 1e-15);  // half way
  EXPECT_NEAR(cos.At(35), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-15);
  EXPECT_NEAR(cos.At(110), 0.0, 1e-15);
  EXPECT_NEAR(cos.At(500), 0.0, 1e-15);  // stays at the floor
  cos.min_lr_ratio = 0.1;
  EXPECT_NEAR(cos.At(110), 0.1, 1e-15);
  EXPECT_NEAR(cos.At(60), 0.55, 1e-15);
  EXPECT_EQ(cos.At(10), 1.0);
  // No warmup: the first step has the full rate.
  cos.warmup_steps = 0;
  EXPECT_EQ(cos.At(0), 1.0);

  EXPECT_EQ(ParseLrScheduleKind("cosine"), LrScheduleKind::kCosineWithWarmup);
  EXPECT_EQ(ParseLrScheduleKind("constant_with_warmup"), LrScheduleKind::kConstantWithWarmup);
  ExpectErrorContains([] { ParseLrScheduleKind("linear"); }, {"'linear'"});
  LrSchedule bad;
  bad.kind = LrScheduleKind::kCosineWithWarmup;
  bad.warmup_steps = 10;
  bad.total_steps = 5;
  ExpectErrorContains([&] { bad.At(0); }, {"total_steps >= warmup_steps"});
}

}  // namespace
}  // namespace sdpo::nn
