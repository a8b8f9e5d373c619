// CogVideoX DDIM and DPM samplers against the diffusers 6-step trajectories of tiny_2b: each
// step from the fixture's state and model output (f32 and f64), and the whole loop with the
// model.
#include <cstdio>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "models/samplers/ddpm_samplers.h"
#include "models/schedules.h"
#include "tests/models/cogvideox/cog_test_util.h"

namespace sdpo::cogvideox {
namespace {

using samplers::CogVideoXDdimSolver;
using samplers::CogVideoXDpmSolver;
using testing::Load;
using testing::RelL2;

std::vector<double> Abar2B() {
  return NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B()).alphas_cumprod();
}

TEST(SamplerTest, GridMatchesFixture) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  auto f = testing::OpenFixture("tiny_2b.ddim6.safetensors");
  samplers::DdpmGrid g = samplers::CogVideoXTrailingGrid(6);
  EXPECT_EQ(g.timesteps, (std::vector<int64_t>{999, 832, 666, 499, 332, 166}));
  EXPECT_EQ(g.prev_timesteps, (std::vector<int64_t>{833, 666, 500, 333, 166, 0}));
  std::vector<double> ts = Load(*f, "timesteps", kF64).ToVector();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(static_cast<int64_t>(ts[i]), g.timesteps[i]);
}

// Each step from the fixture's x_i and model_output_i.
class StepTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StepTest, EachStepMatches) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  const bool dpm = GetParam() == "dpm6";
  auto f = testing::OpenFixture("tiny_2b." + GetParam() + ".safetensors");
  for (bool f64 : {false, true}) {
    const DType dt = f64 ? kF64 : kF32;
    const std::string sfx = f64 ? "_f64" : "";
    CogVideoXDdimSolver ddim(Abar2B(), samplers::CogVideoXTrailingGrid(6));
    CogVideoXDpmSolver dpms(Abar2B(), samplers::CogVideoXTrailingGrid(6));
    double worst = 0;
    for (int i = 0; i < 6; ++i) {
      const std::string xi = "x_" + std::to_string(i) + (i > 0 ? sfx : "");
      Tensor x = Load(*f, xi, dt);
      Tensor v = Load(*f, "model_output_" + std::to_string(i) + sfx, dt);
      Tensor next, x0;
      if (dpm) {
        EXPECT_EQ(dpms.NeedsSecondDraw(), i > 0);
        next = dpms.Step(v, x, Load(*f, "noise_" + std::to_string(i), dt));
        x0 = dpms.pred_original_sample();
      } else {
        next = ddim.Step(v, x);
        x0 = ddim.pred_original_sample();
      }
      EXPECT_EQ(next.dtype(), dt);
      const double tol = f64 ? 1e-12 : 1e-6;
      const double e = RelL2(next, Load(*f, "x_" + std::to_string(i + 1) + sfx, kF64));
      worst = std::max(worst, e);
      EXPECT_LE(e, tol) << GetParam() << " step " << i << (f64 ? " f64" : " f32");
      EXPECT_LE(RelL2(x0, Load(*f, "pred_original_sample_" + std::to_string(i) + sfx, kF64)), tol)
          << GetParam() << " x0 step " << i;
    }
    std::printf("[sampler] %s %s per-step worst rel L2 %.3g\n", GetParam().c_str(),
                f64 ? "f64" : "f32", worst);
  }
}

INSTANTIATE_TEST_SUITE_P(Both, StepTest, ::testing::Values("ddim6", "dpm6"));

// The whole loop with the model (f32), as the pipeline runs it.
TEST(SamplerTest, FullTrajectoriesWithModel) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  auto model = testing::TinyModel("tiny_2b");
  for (const std::string name : {"ddim6", "dpm6"}) {
    auto f = testing::OpenFixture("tiny_2b." + name + ".safetensors");
    Tensor ctx = Load(*f, "in_encoder_hidden_states");
    Tensor x = Load(*f, "x_0");
    samplers::DdpmGrid g = samplers::CogVideoXTrailingGrid(6);
    CogVideoXDdimSolver ddim(Abar2B(), g);
    CogVideoXDpmSolver dpms(Abar2B(), g);
    NoGradGuard ng;
    for (int i = 0; i < 6; ++i) {
      Tensor t = Tensor::FromVector(std::vector<int64_t>{g.timesteps[i]}, {1}, kI64);
      Tensor v = model->ForwardBatch(x, ctx, t);
      EXPECT_LE(RelL2(v, Load(*f, "model_output_" + std::to_string(i), kF64)), 1e-5)
          << name << " step " << i;
      x = name == "dpm6" ? dpms.Step(v, x, Load(*f, "noise_" + std::to_string(i)))
                         : ddim.Step(v, x);
    }
    const double e = RelL2(x, Load(*f, "x_6", kF64));
    EXPECT_LE(e, 1e-5) << name;
    std::printf("[sampler] %s full loop with the model: final x rel L2 %.3g\n", name.c_str(), e);
  }
}

// SampleDdpm through the DiffusionModel interface (DDIM, no guidance) equals the fixture loop.
TEST(SamplerTest, SampleDdpmDdim) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  auto model = testing::TinyModel("tiny_2b");
  auto f = testing::OpenFixture("tiny_2b.ddim6.safetensors");
  samplers::DdpmSampleOptions o;
  o.steps = 6;
  o.guidance_scale = 1.0;
  Tensor x0 = Load(*f, "x_0");
  Tensor ctx = Load(*f, "in_encoder_hidden_states");
  Tensor out = samplers::SampleDdpm(*model, Abar2B(), {ops::Select(x0, 0, 0)},
                                    {ops::Select(ctx, 0, 0)}, {}, o);
  EXPECT_LE(RelL2(out, Load(*f, "x_6", kF64)), 1e-5);
}

}  // namespace
}  // namespace sdpo::cogvideox
