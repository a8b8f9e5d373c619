// The flow samplers against the official trajectories (shared/fixtures/wan21/tiny_a.traj:
// UniPC, flow-Euler, UniPC + CFG, 6 steps, shift 5) and the official grids
// (flow_schedule.safetensors).
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/samplers/flow_samplers.h"
#include "tests/models/wan21/wan_test_util.h"

namespace sdpo::samplers {
namespace {

using wan21::testing::Load;
using wan21::testing::OpenFixture;
using wan21::testing::RelL2;

constexpr double kTol = 1e-5;

TEST(FlowGridTest, ExactlyTheOfficialGrids) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto f = OpenFixture("flow_schedule.safetensors");
  struct G {
    int steps;
    double shift;
  };
  for (const G& g : {G{50, 5.0}, G{10, 3.0}, G{6, 5.0}}) {
    const std::string key = absl::StrCat("unipc_s", g.steps, "_shift", static_cast<int>(g.shift));
    FlowGrid grid = WanFlowGrid(g.steps, g.shift);
    std::vector<float> sig = ReadAsF32(f->at(key + "_sigmas"));
    std::vector<double> ts = ReadAsF64(f->at(key + "_timesteps"));
    ASSERT_EQ(grid.sigmas.size(), sig.size()) << key;
    for (size_t i = 0; i < sig.size(); ++i) EXPECT_EQ(grid.sigmas[i], sig[i]) << key << " " << i;
    ASSERT_EQ(grid.timesteps.size(), ts.size()) << key;
    for (size_t i = 0; i < ts.size(); ++i) {
      EXPECT_EQ(grid.timesteps[i], static_cast<int64_t>(ts[i])) << key << " " << i;
    }
  }
  // The trajectory file's own grid.
  auto t = OpenFixture("tiny_a.traj.safetensors");
  FlowGrid grid = WanFlowGrid(6, 5.0);
  std::vector<float> sig = ReadAsF32(t->at("sigmas"));
  std::vector<double> ts = ReadAsF64(t->at("timesteps"));
  for (size_t i = 0; i < sig.size(); ++i) EXPECT_EQ(grid.sigmas[i], sig[i]) << i;
  for (size_t i = 0; i < ts.size(); ++i) EXPECT_EQ(grid.timesteps[i], ts[i]) << i;
  EXPECT_EQ(grid.timesteps, (std::vector<int64_t>{999, 961, 908, 833, 713, 499}));
}

// The solvers alone, driven by the official model outputs v_k: x_{k+1} from (x_k, v_k).
TEST(FlowSolverTest, OfficialUpdatesFromStoredModelOutputs) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto t = OpenFixture("tiny_a.traj.safetensors");
  for (const std::string prefix : {"unipc", "euler", "cfg"}) {
    FlowGrid grid = WanFlowGrid(6, 5.0);
    FlowUniPcSolver unipc(grid);
    FlowEulerSolver euler(grid);
    double worst = 0;
    Tensor x = Load(*t, prefix + "_x_0");
    for (int k = 0; k < 6; ++k) {
      Tensor v = Load(*t, absl::StrCat(prefix, "_v_", k));
      Tensor ref_x = Load(*t, absl::StrCat(prefix, "_x_", k));
      x = prefix == "euler" ? euler.Step(v, ref_x) : unipc.Step(v, ref_x);
      double e = RelL2(x, Load(*t, absl::StrCat(prefix, "_x_", k + 1)));
      worst = std::max(worst, e);
      EXPECT_LE(e, 1e-6) << prefix << " step " << k;
    }
    std::printf("[parity] %s solver alone (official v_k): worst x_k rel L2 %.3g\n", prefix.c_str(),
                worst);
  }
}

struct TrajCase {
  std::string prefix;
  FlowSolver solver;
  double guide;
};

class TrajectoryTest : public ::testing::TestWithParam<TrajCase> {};

TEST_P(TrajectoryTest, WholeTrajectoryWithTheModel) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  const TrajCase& tc = GetParam();
  auto t = OpenFixture("tiny_a.traj.safetensors");
  auto model = wan21::testing::TinyModel();
  FlowSampleOptions opt;
  opt.solver = tc.solver;
  opt.steps = 6;
  opt.shift = 5.0;
  opt.guide_scale = tc.guide;
  FlowTrace trace;
  std::vector<Tensor> out = SampleFlow(*model, {Load(*t, "noise")}, {Load(*t, "context")},
                                       {Load(*t, "context_null")}, opt, &trace);
  ASSERT_EQ(trace.x.size(), 7u);
  ASSERT_EQ(trace.v.size(), 6u);
  double worst_x = 0, worst_v = 0;
  for (int k = 0; k <= 6; ++k) {
    double e = RelL2(trace.x[k][0], Load(*t, absl::StrCat(tc.prefix, "_x_", k)));
    worst_x = std::max(worst_x, e);
    EXPECT_LE(e, kTol) << tc.prefix << " x_" << k;
    if (k == 6) break;
    e = RelL2(trace.v[k][0], Load(*t, absl::StrCat(tc.prefix, "_v_", k)));
    worst_v = std::max(worst_v, e);
    EXPECT_LE(e, kTol) << tc.prefix << " v_" << k;
    if (tc.guide != 1.0) {
      EXPECT_LE(RelL2(trace.v_cond[k][0], Load(*t, absl::StrCat("cfg_vcond_", k))), kTol) << k;
      EXPECT_LE(RelL2(trace.v_uncond[k][0], Load(*t, absl::StrCat("cfg_vuncond_", k))), kTol) << k;
    }
  }
  const double final64 = RelL2(out[0], Load(*t, tc.prefix + "_x_6_f64", kF64));
  EXPECT_LE(final64, kTol);
  std::printf("[parity] %s trajectory: worst x_k %.3g, worst v_k %.3g, final vs f64 %.3g\n",
              tc.prefix.c_str(), worst_x, worst_v, final64);
}

INSTANTIATE_TEST_SUITE_P(Official, TrajectoryTest,
                         ::testing::Values(TrajCase{"unipc", FlowSolver::kUniPc, 1.0},
                                           TrajCase{"euler", FlowSolver::kEuler, 1.0},
                                           TrajCase{"cfg", FlowSolver::kUniPc, 5.0}),
                         [](const auto& info) { return info.param.prefix; });

// Guidance as two separate passes (the official pipeline) gives the batched result.
TEST(TrajectoryTest, SeparateGuidancePassesMatchBatched) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto t = OpenFixture("tiny_a.traj.safetensors");
  auto model = wan21::testing::TinyModel();
  FlowSampleOptions opt;
  opt.steps = 6;
  opt.guide_scale = 5.0;
  opt.batch_guidance = false;
  int calls = 0;
  opt.on_step = [&](int k, int steps) {
    EXPECT_EQ(k, calls++);
    EXPECT_EQ(steps, 6);
  };
  std::vector<Tensor> out = SampleFlow(*model, {Load(*t, "noise")}, {Load(*t, "context")},
                                       {Load(*t, "context_null")}, opt);
  EXPECT_EQ(calls, 6);
  EXPECT_LE(RelL2(out[0], Load(*t, "cfg_x_6")), kTol);
}

TEST(FlowSamplerTest, Errors) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto model = wan21::testing::TinyModel();
  FlowSampleOptions opt;
  opt.steps = 2;
  Tensor x = Tensor::Zeros({16, 1, 4, 4});
  Tensor c = Tensor::Zeros({3, 48});
  try {
    SampleFlow(*model, {x}, {c}, {}, opt);
    ADD_FAILURE() << "no error without null contexts";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("null contexts"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ParseFlowSolver("ddim"), Error);
  EXPECT_EQ(ParseFlowSolver("euler"), FlowSolver::kEuler);
  FlowEulerSolver euler(WanFlowGrid(1, 5.0));
  euler.Step(x, x);
  EXPECT_THROW(euler.Step(x, x), Error);
}

}  // namespace
}  // namespace sdpo::samplers
