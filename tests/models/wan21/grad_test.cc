// Backward through the whole Wan2.1 model: f64 finite differences of the full tiny model along
// random directions in parameter space and per element of the inputs (padded batch of two
// different latent sizes), per-block recompute giving the same gradients, LoRA on the official
// names.
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nn/init.h"
#include "nn/lora.h"
#include "tests/autograd/gradcheck.h"
#include "tests/models/wan21/wan_test_util.h"

namespace sdpo::wan21 {
namespace {

using testing::RelL2;

WanConfig TinyConfig() {
  WanConfig c;
  c.dim = 32;
  c.ffn_dim = 48;
  c.freq_dim = 16;
  c.text_dim = 24;
  c.text_len = 8;
  c.num_heads = 2;  // head_dim 16: RoPE pairs (4, 2, 2)
  c.num_layers = 2;
  return c;
}

// Every parameter re-drawn (so biases, norm weights and the head all carry signal), f64.
std::unique_ptr<WanModel> RandomModel(const WanConfig& c, uint64_t seed) {
  auto m = std::make_unique<WanModel>(c);
  uint64_t s = seed;
  for (auto& [name, p] : m->NamedParameters()) {
    ops::CopyInto(p, ops::MulScalar(ops::RandomNormal(p.shape(), s++, 0, kF64), 0.3));
  }
  testing::ToF64(*m);
  return m;
}

Tensor Rand(const Shape& shape, uint64_t seed, double scale = 1.0) {
  return ops::MulScalar(ops::RandomNormal(shape, seed, 0, kF64), scale);
}

struct Inputs {
  std::vector<Tensor> x, ctx;
  Tensor t;
};

// Two samples of different sizes (the padded path: key mask, per-sample RoPE) and a short and a
// full-length context.
Inputs MakeInputs() {
  Inputs in;
  in.x = {Rand({16, 2, 4, 4}, 11), Rand({16, 1, 4, 6}, 12)};
  in.ctx = {Rand({3, 24}, 13), Rand({8, 24}, 14)};
  in.t = Tensor::FromVector(std::vector<double>{731.0, 42.5}, {2}, kF32);
  return in;
}

// sum_i sum(out_i * r_i) with fixed random r_i.
Tensor Loss(WanModel& m, const Inputs& in, const std::vector<Tensor>& x,
            const std::vector<Tensor>& ctx) {
  std::vector<Tensor> out = m.ForwardList(x, in.t, ctx);
  Tensor loss;
  for (size_t i = 0; i < out.size(); ++i) {
    Tensor r = ops::Cast(Rand(out[i].shape(), 100 + i), out[i].dtype());
    Tensor li = sum(mul(out[i], r));
    loss = loss.defined() ? add(loss, li) : li;
  }
  return loss;
}

std::map<std::string, Tensor> ParamGrads(WanModel& m, const Inputs& in) {
  m.ZeroGrad();
  Backward(Loss(m, in, in.x, in.ctx));
  std::map<std::string, Tensor> g;
  for (auto& [name, p] : m.NamedParameters()) {
    EXPECT_TRUE(p.grad().defined()) << "no gradient for " << name;
    if (p.grad().defined()) g[name] = ops::Clone(p.grad());
  }
  return g;
}

TEST(WanGradTest, FullModelFiniteDifferencesAlongRandomDirections) {
  const WanConfig c = TinyConfig();
  auto m = RandomModel(c, 1000);
  const Inputs in = MakeInputs();
  std::map<std::string, Tensor> grads = ParamGrads(*m, in);
  ASSERT_EQ(grads.size(), ParameterShapes(c).size());
  auto params = m->NamedParameters();
  std::vector<Tensor> original;
  for (auto& [name, p] : params) original.push_back(ops::Clone(p));
  auto loss_at = [&](const std::vector<Tensor>& u, double h) {
    NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) {
      ops::CopyInto(params[i].second, ops::Add(original[i], ops::MulScalar(u[i], h)));
    }
    return Loss(*m, in, in.x, in.ctx).item();
  };
  const double h = 1e-5;
  double worst = 0;
  for (int d = 0; d < 4; ++d) {
    std::vector<Tensor> u;
    double analytic = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      u.push_back(Rand(params[i].second.shape(), 5000 + 1000 * d + i));
      analytic += ops::Sum(ops::Mul(grads.at(params[i].first), u.back())).item();
    }
    const double numeric = (loss_at(u, h) - loss_at(u, -h)) / (2 * h);
    const double rel = std::abs(analytic - numeric) / std::max(1e-12, std::abs(numeric));
    worst = std::max(worst, rel);
    EXPECT_LE(rel, 1e-7) << "direction " << d << ": analytic " << analytic << " numeric "
                         << numeric;
  }
  // Directions confined to one tensor kind each (so no parameter hides behind the others).
  for (const std::string kind : {"modulation", "norm_q", "norm3", "head.head", "patch_embedding",
                                 "text_embedding", "time_projection", "ffn.2"}) {
    std::vector<Tensor> u;
    double analytic = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      const bool on = params[i].first.find(kind) != std::string::npos;
      u.push_back(on ? Rand(params[i].second.shape(), 9000 + i)
                     : Tensor::Zeros(params[i].second.shape(), kF64));
      if (on) analytic += ops::Sum(ops::Mul(grads.at(params[i].first), u.back())).item();
    }
    const double numeric = (loss_at(u, h) - loss_at(u, -h)) / (2 * h);
    const double rel = std::abs(analytic - numeric) / std::max(1e-12, std::abs(numeric));
    worst = std::max(worst, rel);
    EXPECT_GT(std::abs(numeric), 1e-6) << kind << " does not affect the loss";
    EXPECT_LE(rel, 1e-7) << kind << ": analytic " << analytic << " numeric " << numeric;
  }
  std::printf("[grad] f64 directional derivative, worst relative error %.3g\n", worst);
  loss_at(std::vector<Tensor>(params.size(), Tensor::Zeros({}, kF64)), 0);
}

TEST(WanGradTest, InputGradientsElementwise) {
  const WanConfig c = TinyConfig();
  auto m = RandomModel(c, 2000);
  m->SetRequiresGrad(false);
  const Inputs in = MakeInputs();
  std::vector<Tensor> leaves;
  for (const Tensor& x : in.x) leaves.push_back(ops::Clone(x).set_requires_grad(true));
  for (const Tensor& x : in.ctx) leaves.push_back(ops::Clone(x).set_requires_grad(true));
  sdpo::testing::GradCheckOptions opt;
  opt.max_elements = 24;
  auto fn = [&](const std::vector<Tensor>& v) {
    std::vector<Tensor> out = m->ForwardList({v[0], v[1]}, in.t, {v[2], v[3]});
    return concat({flatten(out[0]), flatten(out[1])}, 0);
  };
  sdpo::testing::GradCheckResult r = sdpo::testing::GradCheck(fn, leaves, opt);
  EXPECT_TRUE(r.ok) << r.message;
  std::printf("[grad] inputs (latents, contexts) elementwise: max error %.3g of tolerance\n",
              r.max_error);
}

TEST(WanGradTest, RecomputeGivesIdenticalGradients) {
  for (DType dtype : {kF64, kF32}) {
    const WanConfig c = TinyConfig();
    auto m = RandomModel(c, 3000);
    if (dtype == kF32) {
      m->CastParameters(kF32);
      m->SetComputeDType(kF32);
    }
    const Inputs in = MakeInputs();
    m->SetRecompute(false);
    auto base = ParamGrads(*m, in);
    m->SetRecompute(true);
    EXPECT_TRUE(m->recompute());
    auto again = ParamGrads(*m, in);
    // Same graph, same summation order: identical gradients (bitwise when the kernels are; the
    // CPU attention's softmax sums depend on a scratch buffer's alignment, so allow rounding).
    const double tol = dtype == kF64 ? 1e-14 : 1e-6;
    double worst = 0;
    for (const auto& [name, g] : base) {
      const double e = RelL2(again.at(name), g);
      worst = std::max(worst, e);
      EXPECT_LE(e, tol) << DTypeName(dtype) << " " << name;
    }
    // The recompute graph holds one node per block.
    m->SetRecompute(true);
    Tensor loss = Loss(*m, in, in.x, in.ctx);
    int checkpoints = 0;
    for (const std::string& op : sdpo::testing::GraphOpNames(loss))
      checkpoints += op == "checkpoint";
    EXPECT_EQ(checkpoints, c.num_layers);
    std::printf("[grad] %s recompute on vs off: worst gradient rel L2 %.3g\n", DTypeName(dtype),
                worst);
  }
}

TEST(WanGradTest, LoraOnOfficialNames) {
  const WanConfig c = TinyConfig();
  auto m = RandomModel(c, 4000);
  nn::LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 4;
  lc.targets = {"blocks.*.self_attn.{q,k,v,o}", "blocks.*.cross_attn.{q,k,v,o}",
                "blocks.*.ffn.{0,2}"};
  std::vector<std::string> adapted = nn::AttachLora(*m, lc);
  EXPECT_EQ(adapted.size(), static_cast<size_t>(c.num_layers * 10));
  EXPECT_EQ(adapted[0], "blocks.0.self_attn.q");
  for (auto& [name, p] : m->NamedTrainableParameters()) {
    EXPECT_TRUE(name.find(".lora_A.") != std::string::npos ||
                name.find(".lora_B.") != std::string::npos)
        << name;
  }
  const Inputs in = MakeInputs();
  std::vector<Tensor> before;
  {
    NoGradGuard ng;
    before = m->ForwardList(in.x, in.t, in.ctx);
  }
  // B = 0 at attach: the output is unchanged; one backward reaches every adapter.
  m->ZeroGrad();
  Backward(Loss(*m, in, in.x, in.ctx));
  int with_grad = 0;
  for (auto& [name, p] : m->NamedTrainableParameters()) with_grad += p.grad().defined();
  EXPECT_EQ(with_grad, static_cast<int>(2 * adapted.size()));
  // Recompute also reaches the adapters, with the same gradients.
  std::map<std::string, Tensor> g0;
  for (auto& [name, p] : m->NamedTrainableParameters()) g0[name] = ops::Clone(p.grad());
  m->SetRecompute(true);
  m->ZeroGrad();
  Backward(Loss(*m, in, in.x, in.ctx));
  for (auto& [name, p] : m->NamedTrainableParameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_LE(testing::MaxAbsDiff(p.grad(), g0.at(name)),
              1e-14 * (1 + testing::MaxAbsDiff(g0.at(name), ops::MulScalar(g0.at(name), 0))))
        << name;
  }
  // Adapters off = the base model.
  for (auto& [name, p] : m->NamedTrainableParameters()) {
    ops::CopyInto(p, ops::MulScalar(ops::RandomNormal(p.shape(), 77, 0, kF64), 0.1));
  }
  NoGradGuard ng;
  std::vector<Tensor> adapted_out = m->ForwardList(in.x, in.t, in.ctx);
  EXPECT_GT(RelL2(adapted_out[0], before[0]), 1e-4);
  {
    nn::LoraDisabledScope off(*m);
    std::vector<Tensor> base = m->ForwardList(in.x, in.t, in.ctx);
    EXPECT_LE(RelL2(base[0], before[0]), 1e-14);
    EXPECT_LE(RelL2(base[1], before[1]), 1e-14);
  }
}

}  // namespace
}  // namespace sdpo::wan21
