// Parity of the CogVideoX forward with the diffusers fixtures (tiny_2b: sin-cos positions;
// tiny_5b: 3-D RoPE), every stored intermediate, in float32 and float64.
#include <cstdio>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/models/cogvideox/cog_test_util.h"

namespace sdpo::cogvideox {
namespace {

using testing::Load;
using testing::RelL2;

const char* kIntermediates[] = {
    "t_sinusoid",
    "t_emb",
    "text_proj",
    "patch_embed",
    "block0_norm1_hidden_states",
    "block0_norm1_encoder_hidden_states",
    "block0_norm1_gate",
    "block0_norm1_enc_gate",
    "block0_attn1_norm_q",
    "block0_attn1_norm_k",
    "block0_attn1_hidden_states",
    "block0_attn1_encoder_hidden_states",
    "block0_norm2_hidden_states",
    "block0_norm2_encoder_hidden_states",
    "block0_norm2_gate",
    "block0_norm2_enc_gate",
    "block0_ff",
    "block0_hidden_states",
    "block0_encoder_hidden_states",
    "block1_hidden_states",
    "block1_encoder_hidden_states",
    "norm_final",
    "norm_out",
    "proj_out",
    "out_sample",
};

bool Loose(const std::string& name) {
  return name == "t_sinusoid" || name == "t_emb" || name.find("gate") != std::string::npos;
}

struct Param {
  std::string model, test_case;
  bool f64;
};

class FixtureTest : public ::testing::TestWithParam<Param> {};

TEST_P(FixtureTest, MatchesDiffusers) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  const Param& prm = GetParam();
  auto model = testing::TinyModel(prm.model);
  const DType dt = prm.f64 ? kF64 : kF32;
  if (prm.f64) testing::ToF64(*model);
  auto f = testing::OpenFixture(prm.model + "." + prm.test_case + ".safetensors");
  ASSERT_NE(f, nullptr);
  Tensor x = Load(*f, "in_hidden_states", dt);
  Tensor ctx = Load(*f, "in_encoder_hidden_states", dt);
  Tensor t = Load(*f, "in_timestep");
  Capture cap;
  ForwardOptions opt;
  opt.capture = &cap;
  Tensor out;
  {
    NoGradGuard ng;
    out = model->ForwardBatch(x, ctx, t, opt);
  }
  EXPECT_EQ(out.dtype(), dt);
  const std::string sfx = prm.f64 ? "_f64" : "";
  const double tight = prm.f64 ? 1e-10 : 1e-5, loose = prm.f64 ? 1e-10 : 5e-5;
  double worst = 0;
  std::string worst_name;
  for (const char* name : kIntermediates) {
    ASSERT_TRUE(cap.count(name)) << name;
    Tensor ref = Load(*f, std::string(name) + sfx, kF64);
    const double err = RelL2(cap.at(name), ref);
    EXPECT_LE(err, Loose(name) ? loose : tight) << prm.model << "." << prm.test_case << " " << name;
    if (!Loose(name) && err > worst) {
      worst = err;
      worst_name = name;
    }
    if (std::string(name) == "out_sample") {
      std::printf("%s.%s %s out_sample rel L2 %.3e\n", prm.model.c_str(), prm.test_case.c_str(),
                  prm.f64 ? "f64" : "f32", err);
    }
  }
  std::printf("  worst non-sinusoid intermediate: %s %.3e\n", worst_name.c_str(), worst);
  // The raw patch conv [B*F, D, h, w] against our tokens [B, F*h*w, D].
  Tensor pc = Load(*f, "patch_conv" + sfx, kF64);
  const int64_t bf = pc.size(0), d = pc.size(1), h = pc.size(2), w = pc.size(3);
  Tensor ours = ops::Reshape(cap.at("video_tokens"), {bf, h, w, d});
  EXPECT_LE(RelL2(ops::Contiguous(ops::Permute(ours, {0, 3, 1, 2})), pc), tight);
  if (!model->config().use_rotary_positional_embeddings) {
    EXPECT_LE(RelL2(cap.at("pos_embedding"), Load(*f, "pos_embedding" + sfx, kF64)), tight);
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, FixtureTest,
    ::testing::Values(Param{"tiny_2b", "case1", false}, Param{"tiny_2b", "case2", false},
                      Param{"tiny_5b", "case1", false}, Param{"tiny_5b", "case2", false},
                      Param{"tiny_2b", "case1", true}, Param{"tiny_2b", "case2", true},
                      Param{"tiny_5b", "case1", true}, Param{"tiny_5b", "case2", true}),
    [](const ::testing::TestParamInfo<Param>& i) {
      return i.param.model + "_" + i.param.test_case + (i.param.f64 ? "_f64" : "_f32");
    });

// The RoPE tables the model computes (pipeline resize-crop grid) equal the ones the diffusers
// pipeline passed, and feeding the pipeline's tables gives the same output.
TEST(RopeTest, TablesMatchPipeline) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  const CogVideoXConfig c = testing::TinyConfig("tiny_5b");
  for (const char* cs : {"case1", "case2"}) {
    auto f = testing::OpenFixture(std::string("tiny_5b.") + cs + ".safetensors");
    Tensor x = Load(*f, "in_hidden_states");
    const int64_t frames = x.size(1), h = x.size(3) / 2, w = x.size(4) / 2;
    for (bool f64 : {false, true}) {
      const std::string sfx = f64 ? "_f64" : "";
      nn::RotaryTables r = RopeTables(c, frames, h, w, 7, RopeGrid::kPipeline, f64 ? kF64 : kF32);
      EXPECT_EQ(r.start, 7);
      const double tol = f64 ? 1e-12 : 1e-6;
      EXPECT_LE(RelL2(r.cos, testing::HalfTable(Load(*f, "in_rope_cos" + sfx, kF64))), tol) << cs;
      EXPECT_LE(RelL2(r.sin, testing::HalfTable(Load(*f, "in_rope_sin" + sfx, kF64))), tol) << cs;
    }
  }
  // case2: grid 2x2 on base 3x4 -> positions h (0, 1.5), w (0, 1.5) (round(0.5) = 0).
  auto p = RopePositions(c, 2, 2, 2, RopeGrid::kPipeline);
  EXPECT_EQ(p[0], (std::vector<double>{0, 1}));
  EXPECT_EQ(p[1], (std::vector<double>{0, 1.5}));
  EXPECT_EQ(p[2], (std::vector<double>{0, 1.5}));
  auto s = RopePositions(c, 2, 2, 2, RopeGrid::kSlice);
  EXPECT_EQ(s[1], (std::vector<double>{0, 1}));
}

TEST(RopeTest, PipelineTablesGiveSameOutput) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  auto model = testing::TinyModel("tiny_5b");
  auto f = testing::OpenFixture("tiny_5b.case2.safetensors");
  nn::RotaryTables r;
  r.cos = testing::HalfTable(Load(*f, "in_rope_cos"));
  r.sin = testing::HalfTable(Load(*f, "in_rope_sin"));
  ForwardOptions opt;
  opt.rope = &r;
  NoGradGuard ng;
  Tensor out =
      model->ForwardBatch(Load(*f, "in_hidden_states"), Load(*f, "in_encoder_hidden_states"),
                          Load(*f, "in_timestep"), opt);
  EXPECT_LE(RelL2(out, Load(*f, "out_sample", kF64)), 1e-5);
}

// The DiffusionModel entry point: per-sample [F, C, H, W] latents and float timesteps.
TEST(DiffusionModelTest, ForwardMatchesFixture) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  auto model = testing::TinyModel("tiny_2b");
  auto f = testing::OpenFixture("tiny_2b.case2.safetensors");
  Tensor x = Load(*f, "in_hidden_states"), ctx = Load(*f, "in_encoder_hidden_states");
  std::vector<Tensor> xs, cs;
  for (int64_t i = 0; i < 2; ++i) {
    xs.push_back(ops::Contiguous(ops::Select(x, 0, i)));
    cs.push_back(ops::Contiguous(ops::Select(ctx, 0, i)));
  }
  Tensor t = ops::Cast(Load(*f, "in_timestep"), kF32);
  models::DiffusionModel& dm = *model;
  EXPECT_EQ(dm.family(), ScheduleFamily::kDdpm);
  NoGradGuard ng;
  Tensor out = dm.Forward(xs, t, cs);
  EXPECT_LE(RelL2(out, Load(*f, "out_sample", kF64)), 1e-5);
  std::vector<Tensor> list = dm.ForwardList(xs, t, cs);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[1].shape(), xs[1].shape());
}

}  // namespace
}  // namespace sdpo::cogvideox
