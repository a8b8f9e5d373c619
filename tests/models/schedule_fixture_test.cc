// The schedules against the official schedulers' own numbers:
//   fixtures/cogvideox/schedule.safetensors (diffusers CogVideoXDDIMScheduler, 2B and 5B configs)
//   fixtures/wan21/flow_schedule.safetensors (Wan2.1 FlowUniPCMultistepScheduler, dpm++ grid).
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "models/schedules.h"
#include "tests/fixtures_path.h"

namespace sdpo {
namespace {

std::unique_ptr<SafetensorsFile> OpenFixture(const std::string& relative) {
  const std::string dir = testing::FixturesDir();
  if (dir.empty()) return nullptr;
  const std::string path = testing::FixturePath(relative);
  EXPECT_FALSE(path.empty()) << "fixture " << relative << " missing under " << dir;
  if (path.empty()) return nullptr;
  return SafetensorsFile::Open(path);
}

std::vector<int64_t> ReadI64(const SafetensorsFile& f, const std::string& name) {
  const TensorEntry& e = f.at(name);
  EXPECT_EQ(e.dtype, SafetensorsDType::kI64) << name;
  const std::vector<double> v = ReadAsF64(e);
  return std::vector<int64_t>(v.begin(), v.end());
}

TEST(ScheduleFixtureTest, CogVideoXAlphasCumprodAndTimesteps) {
  auto f = OpenFixture("cogvideox/schedule.safetensors");
  if (!f) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  for (const std::string model : {"2b", "5b"}) {
    SCOPED_TRACE(model);
    const NoiseSchedule s = NoiseSchedule::Ddpm(model == "2b" ? DdpmScheduleConfig::CogVideoX2B()
                                                              : DdpmScheduleConfig::CogVideoX5B());
    const std::vector<double> ref = ReadAsF64(f->at(model + "_alphas_cumprod"));
    const std::vector<float> ref32 = ReadAsF32(f->at(model + "_alphas_cumprod_as_f32"));
    const std::vector<double>& ab = s.alphas_cumprod();
    ASSERT_EQ(ref.size(), ab.size());
    ASSERT_EQ(ref32.size(), ab.size());
    double worst = 0.0;
    int f32_mismatch = 0;
    for (size_t t = 0; t < ab.size(); ++t) {
      worst = std::max(worst, std::abs(ab[t] - ref[t]) / std::max(ref[t], 1e-300));
      if (ref[t] == 0.0) {
        EXPECT_EQ(ab[t], 0.0) << t;
      }
      f32_mismatch += static_cast<float>(ab[t]) != ref32[t];
    }
    EXPECT_LT(worst, 1e-12) << "worst relative error of alphas_cumprod";
    EXPECT_EQ(f32_mismatch, 0) << "float32-rounded values differing";
    for (int steps : {50, 10}) {
      EXPECT_EQ(DdpmTrailingTimesteps(steps),
                ReadI64(*f, absl::StrCat(model, "_timesteps_", steps)));
      EXPECT_EQ(DdpmTrailingPrevTimesteps(steps),
                ReadI64(*f, absl::StrCat(model, "_prev_timesteps_", steps)));
    }
  }
}

TEST(ScheduleFixtureTest, WanFlowGrids) {
  auto f = OpenFixture("wan21/flow_schedule.safetensors");
  if (!f) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  const std::vector<float> init = ReadAsF32(f->at("unipc_init_sigmas"));
  ASSERT_EQ(init.size(), 1000u);
  // sigma_max as the official scheduler holds it: float32(0.999).
  EXPECT_EQ(static_cast<double>(*std::max_element(init.begin(), init.end())),
            static_cast<double>(0.999f));
  EXPECT_EQ(*std::min_element(init.begin(), init.end()), 0.0f);
  struct Grid {
    int steps;
    double shift;
  };
  for (const Grid& g : {Grid{50, 5.0}, Grid{10, 3.0}, Grid{6, 5.0}}) {
    const std::string key = absl::StrCat("s", g.steps, "_shift", static_cast<int>(g.shift));
    SCOPED_TRACE(key);
    const std::vector<double> sig = WanUniPcSigmas(g.steps, g.shift);
    const std::vector<float> ref = ReadAsF32(f->at(absl::StrCat("unipc_", key, "_sigmas")));
    ASSERT_EQ(ref.size(), sig.size());
    for (size_t i = 0; i < sig.size(); ++i) {
      EXPECT_EQ(static_cast<float>(sig[i]), ref[i]) << i;
    }
    EXPECT_EQ(WanUniPcTimesteps(g.steps, g.shift),
              ReadI64(*f, absl::StrCat("unipc_", key, "_timesteps")));
    const std::vector<double> tf = ReadAsF64(f->at(absl::StrCat("unipc_", key, "_t_float")));
    ASSERT_EQ(tf.size(), static_cast<size_t>(g.steps));
    for (int i = 0; i < g.steps; ++i) EXPECT_NEAR(1000.0 * sig[i], tf[i], 1e-10) << i;
    const std::vector<double> dp = ReadAsF64(f->at(absl::StrCat("dpmpp_", key, "_sigmas")));
    const std::vector<double> ours = WanDpmppSigmas(g.steps, g.shift);
    ASSERT_EQ(dp.size(), ours.size());
    for (size_t i = 0; i < dp.size(); ++i) EXPECT_NEAR(ours[i], dp[i], 1e-15) << i;
  }
}

}  // namespace
}  // namespace sdpo
