// Backward through the whole CogVideoX model (2B-style and 5B-style): f64 finite differences
// along random directions in parameter space and per element of the inputs; per-block recompute
// giving the same gradients.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nn/lora.h"
#include "tests/autograd/gradcheck.h"
#include "tests/models/cogvideox/cog_test_util.h"

namespace sdpo::cogvideox {
namespace {

using testing::RelL2;

CogVideoXConfig TinyConfig(bool rope) {
  CogVideoXConfig c;
  c.num_attention_heads = 2;
  c.attention_head_dim = 8;             // 2B: D = 16 (table split 4 | 6 | 6)
  if (rope) c.attention_head_dim = 16;  // RoPE split (4, 6, 6)
  c.in_channels = 4;
  c.out_channels = 4;
  c.time_embed_dim = 8;
  c.text_embed_dim = 6;
  c.num_layers = 2;
  c.sample_width = 8;
  c.sample_height = 4;
  c.max_text_seq_length = 3;
  c.use_rotary_positional_embeddings = rope;
  return c;
}

std::unique_ptr<CogVideoXModel> RandomModel(const CogVideoXConfig& c, uint64_t seed) {
  auto m = std::make_unique<CogVideoXModel>(c);
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
  Tensor x, ctx, t;
};

// Batch 2, latent 2 x 4 x (2 x 4 patches): not the base grid of 5B (fractional positions).
Inputs MakeInputs(const CogVideoXConfig& c) {
  Inputs in;
  in.x = Rand({2, 2, c.in_channels, 4, 4}, 11);
  in.ctx = Rand({2, c.max_text_seq_length, c.text_embed_dim}, 13);
  in.t = Tensor::FromVector(std::vector<double>{731.0, 42.0}, {2}, kF32);
  return in;
}

Tensor Loss(CogVideoXModel& m, const Inputs& in) {
  Tensor out = m.ForwardBatch(in.x, in.ctx, in.t);
  Tensor r = ops::Cast(Rand(out.shape(), 100), out.dtype());
  return sum(mul(out, r));
}

std::map<std::string, Tensor> ParamGrads(CogVideoXModel& m, const Inputs& in) {
  m.ZeroGrad();
  Backward(Loss(m, in));
  std::map<std::string, Tensor> g;
  for (auto& [name, p] : m.NamedParameters()) {
    EXPECT_TRUE(p.grad().defined()) << "no gradient for " << name;
    if (p.grad().defined()) g[name] = ops::Clone(p.grad());
  }
  return g;
}

class GradTest : public ::testing::TestWithParam<bool> {};

TEST_P(GradTest, FiniteDifferencesAlongRandomDirections) {
  const CogVideoXConfig c = TinyConfig(GetParam());
  auto m = RandomModel(c, 1000);
  const Inputs in = MakeInputs(c);
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
    return Loss(*m, in).item();
  };
  const double h = 1e-5;
  double worst = 0;
  auto check = [&](const std::string& kind, uint64_t seed) {
    std::vector<Tensor> u;
    double analytic = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      const bool on = kind.empty() || params[i].first.find(kind) != std::string::npos;
      u.push_back(on ? Rand(params[i].second.shape(), seed + i)
                     : Tensor::Zeros(params[i].second.shape(), kF64));
      if (on) analytic += ops::Sum(ops::Mul(grads.at(params[i].first), u.back())).item();
    }
    const double numeric = (loss_at(u, h) - loss_at(u, -h)) / (2 * h);
    const double rel = std::abs(analytic - numeric) / std::max(1e-12, std::abs(numeric));
    worst = std::max(worst, rel);
    EXPECT_GT(std::abs(numeric), 1e-6) << "'" << kind << "' does not affect the loss";
    EXPECT_LE(rel, 1e-7) << "'" << kind << "': analytic " << analytic << " numeric " << numeric;
  };
  for (int d = 0; d < 3; ++d) check("", 5000 + 1000 * d);
  for (const char* kind :
       {"norm1.linear", "norm1.norm", "attn1.norm_q", "attn1.norm_k", "to_q", "to_out.0",
        "norm2.linear", "ff.net.2", "patch_embed.proj", "text_proj", "time_embedding", "norm_final",
        "norm_out.linear", "norm_out.norm", "proj_out"}) {
    check(kind, 9000);
  }
  std::printf("[grad] %s f64 directional derivative, worst relative error %.3g\n",
              GetParam() ? "rope" : "sincos", worst);
  loss_at(std::vector<Tensor>(params.size(), Tensor::Zeros({}, kF64)), 0);
}

TEST_P(GradTest, InputGradientsElementwise) {
  const CogVideoXConfig c = TinyConfig(GetParam());
  auto m = RandomModel(c, 2000);
  m->SetRequiresGrad(false);
  const Inputs in = MakeInputs(c);
  std::vector<Tensor> leaves = {ops::Clone(in.x).set_requires_grad(true),
                                ops::Clone(in.ctx).set_requires_grad(true)};
  sdpo::testing::GradCheckOptions opt;
  opt.max_elements = 24;
  auto fn = [&](const std::vector<Tensor>& v) {
    return flatten(m->ForwardBatch(v[0], v[1], in.t));
  };
  sdpo::testing::GradCheckResult r = sdpo::testing::GradCheck(fn, leaves, opt);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST_P(GradTest, RecomputeGivesIdenticalGradients) {
  for (DType dtype : {kF64, kF32}) {
    const CogVideoXConfig c = TinyConfig(GetParam());
    auto m = RandomModel(c, 3000);
    if (dtype == kF32) {
      m->CastParameters(kF32);
      m->SetComputeDType(kF32);
    }
    const Inputs in = MakeInputs(c);
    m->SetRecompute(false);
    auto base = ParamGrads(*m, in);
    m->SetRecompute(true);
    EXPECT_TRUE(m->recompute());
    auto again = ParamGrads(*m, in);
    const double tol = dtype == kF64 ? 1e-14 : 1e-6;
    double worst = 0;
    for (const auto& [name, g] : base) {
      const double e = RelL2(again.at(name), g);
      worst = std::max(worst, e);
      EXPECT_LE(e, tol) << DTypeName(dtype) << " " << name;
    }
    Tensor loss = Loss(*m, in);
    int checkpoints = 0;
    for (const std::string& op : sdpo::testing::GraphOpNames(loss)) {
      checkpoints += op == "checkpoint";
    }
    EXPECT_EQ(checkpoints, c.num_layers);
    std::printf("[grad] %s %s recompute on vs off: worst gradient rel L2 %.3g\n",
                GetParam() ? "rope" : "sincos", DTypeName(dtype), worst);
  }
}

INSTANTIATE_TEST_SUITE_P(Both, GradTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return std::string(i.param ? "Rope5B" : "SinCos2B");
                         });

// LoRA on the diffusers names: the output is unchanged at attach, one backward (with or without
// recompute, same gradients) reaches every adapter, and disabling adapters gives the base model.
TEST(LoraTest, DiffusersNames) {
  const CogVideoXConfig c = TinyConfig(true);
  auto m = RandomModel(c, 4000);
  nn::LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 4;
  lc.targets = {"transformer_blocks.*.attn1.{to_q,to_k,to_v,to_out.0}",
                "transformer_blocks.*.ff.net.{0.proj,2}"};
  const Inputs in = MakeInputs(c);
  Tensor before;
  {
    NoGradGuard ng;
    before = m->ForwardBatch(in.x, in.ctx, in.t);
  }
  std::vector<std::string> adapted = nn::AttachLora(*m, lc);
  EXPECT_EQ(adapted.size(), static_cast<size_t>(c.num_layers * 6));
  m->ZeroGrad();
  Backward(Loss(*m, in));
  std::map<std::string, Tensor> g0;
  for (auto& [name, p] : m->NamedTrainableParameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    g0[name] = ops::Clone(p.grad());
  }
  EXPECT_EQ(g0.size(), 2 * adapted.size());
  m->SetRecompute(true);
  m->ZeroGrad();
  Backward(Loss(*m, in));
  for (auto& [name, p] : m->NamedTrainableParameters()) {
    // lora_A gradients are zero at attach (B = 0): compare absolutely.
    const double scale = std::sqrt(ops::Sum(ops::Mul(g0.at(name), g0.at(name))).item());
    const Tensor diff = ops::Sub(p.grad(), g0.at(name));
    EXPECT_LE(std::sqrt(ops::Sum(ops::Mul(diff, diff)).item()), 1e-14 * (1 + scale)) << name;
  }
  for (auto& [name, p] : m->NamedTrainableParameters()) {
    ops::CopyInto(p, ops::MulScalar(ops::RandomNormal(p.shape(), 77, 0, kF64), 0.1));
  }
  NoGradGuard ng;
  EXPECT_GT(RelL2(m->ForwardBatch(in.x, in.ctx, in.t), before), 1e-4);
  nn::LoraDisabledScope off(*m);
  EXPECT_LE(RelL2(m->ForwardBatch(in.x, in.ctx, in.t), before), 1e-14);
}

}  // namespace
}  // namespace sdpo::cogvideox
