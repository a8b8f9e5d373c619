// The trainer end to end on a tiny Wan2.1-architecture model and synthetic pairs: training
// lowers the loss, resume is bit-exact, the batch builder shares t and noise, NaN steps are
// skipped and then stop the run, and the run leaves its outputs.
#include "trainers/trainer.h"

#include <filesystem>
#include <fstream>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/cogvideox/checkpoint.h"
#include "models/wan21/model.h"
#include "nn/init.h"
#include "nn/lora.h"
#include "tests/trainers/tiny_wan.h"
#include "trainers/model_factory.h"
#include "trainers/preference_step.h"

namespace sdpo::trainers {
namespace {

using ::testing::HasSubstr;
using testing::SyntheticPairs;

wan21::WanConfig TinyConfig() { return testing::TinyWanConfig(); }

std::unique_ptr<wan21::WanModel> MakeModel() { return testing::MakeTinyLoraModel(); }

TrainerConfig Config(const std::string& out, int64_t steps) {
  return testing::TinyRunConfig(out, steps);
}

std::string TempDir(const std::string& name) {
  auto p = std::filesystem::path(::testing::TempDir()) / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

std::vector<std::vector<double>> Params(const Trainer& t) {
  std::vector<std::vector<double>> out;
  for (const auto& [name, p] : t.TrainableParameters()) out.push_back(p.ToVector());
  return out;
}

NoiseSchedule Flow() { return NoiseSchedule::Flow(FlowScheduleConfig::Wan21()); }

TEST(TrainerTest, ResumeIsBitIdentical) {
  SyntheticPairs data(5);  // odd size: the cursor crosses an epoch boundary
  auto straight_model = MakeModel();
  Trainer straight(Config(TempDir("straight"), 6), Flow(), *straight_model, nullptr, data, nullptr);
  straight.Run();

  std::string dir = TempDir("resumed");
  {
    auto m = MakeModel();
    Trainer first(Config(dir, 3), Flow(), *m, nullptr, data, nullptr);
    first.Run();  // writes the checkpoint at step 3
  }
  auto m = MakeModel();  // fresh weights: everything must come from the checkpoint
  Trainer second(Config(dir, 6), Flow(), *m, nullptr, data, nullptr);
  second.Resume(Trainer::CheckpointPath(dir));
  EXPECT_EQ(second.step(), 3);
  second.Run();
  EXPECT_EQ(Params(straight), Params(second));
}

TEST(TrainerTest, TrainingRaisesTheImplicitAccuracyOnItsPairs) {
  SyntheticPairs data(4);
  auto model = MakeModel();
  TrainerConfig c = Config(TempDir("learn"), 30);
  c.batch = 4;
  c.objective = ObjectiveConfig::DiffusionDpo();
  c.objective.beta = 200;
  Trainer t(c, Flow(), *model, nullptr, data, nullptr);
  t.Run();
  const auto& h = t.history();
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += h[i].metrics.reward_margin / 5;
  for (size_t i = h.size() - 5; i < h.size(); ++i) last += h[i].metrics.reward_margin / 5;
  EXPECT_GT(last, first);  // the policy moves towards winners, away from losers
  for (const char* f : {"metrics.jsonl", "summary.json", "report.md", "loss.svg",
                        "weight_profile.svg", "checkpoint.safetensors"}) {
    EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(c.out_dir) / f)) << f;
  }
}

TEST(TrainerTest, ResumeRejectsAnotherSeed) {
  SyntheticPairs data(4);
  std::string dir = TempDir("seed");
  {
    auto m = MakeModel();
    Trainer t(Config(dir, 1), Flow(), *m, nullptr, data, nullptr);
    t.Run();
  }
  auto m = MakeModel();
  TrainerConfig c = Config(dir, 2);
  c.seed = 12;
  Trainer t(c, Flow(), *m, nullptr, data, nullptr);
  try {
    t.Resume(Trainer::CheckpointPath(dir));
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("seed"));
  }
}

// A pair source whose data turns NaN: steps are skipped, then the run stops with a message.
class NanPairs : public SyntheticPairs {
 public:
  NanPairs() : SyntheticPairs(4) {}
  data::PreferencePair Get(int64_t i) const override {
    data::PreferencePair p = SyntheticPairs::Get(i);
    p.winner = ops::MulScalar(p.winner, NAN);
    return p;
  }
};

TEST(TrainerTest, NonFiniteStepsAreSkippedThenStopTheRun) {
  NanPairs data;
  auto model = MakeModel();
  TrainerConfig c = Config("", 10);
  c.max_bad_steps = 3;
  Trainer t(c, Flow(), *model, nullptr, data, nullptr);
  auto before = Params(t);
  EXPECT_TRUE(t.Step().skipped);
  EXPECT_TRUE(t.Step().skipped);
  try {
    t.Step();
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("3 consecutive steps"));
  }
  EXPECT_EQ(Params(t), before);  // no update from a bad step
}

TEST(PreferenceStepTest, WinnerAndLoserShareTimestepAndNoise) {
  SyntheticPairs data(3);
  PairTensors pairs;
  std::vector<TimePoint> tps;
  std::vector<Tensor> noise;
  NoiseSchedule s = Flow();
  for (int i = 0; i < 3; ++i) {
    data::PreferencePair p = data.Get(i);
    pairs.winners.push_back(p.winner);
    pairs.losers.push_back(p.loser);
    pairs.contexts.push_back(p.context);
    tps.push_back(s.At(100 * (i + 1)));
    noise.push_back(ops::RandomNormal(p.winner.shape(), 3, i * 1000));
  }
  NoisedPairs b = NoisePairs(pairs, tps, noise, PredictionType::kV);
  // x_t - sigma * eps = alpha * x0: recovering the noise from both halves gives the same noise.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(b.timesteps.at({i}), b.timesteps.at({3 + i}));
    for (int half = 0; half < 2; ++half) {
      const Tensor& x0 = half == 0 ? pairs.winners[i] : pairs.losers[i];
      Tensor eps = ops::Div(ops::Sub(b.inputs[half * 3 + i], ops::MulScalar(x0, tps[i].alpha)),
                            ops::ScalarLike(tps[i].sigma, x0));
      std::vector<double> a = eps.ToVector(), n = noise[i].ToVector();
      for (size_t k = 0; k < a.size(); ++k) ASSERT_NEAR(a[k], n[k], 1e-5);
    }
  }
  std::vector<float> steps = b.timesteps.ToFloatVector();
  CheckSharedHalves(steps.data(), 3, 1, "timesteps");
}

// A global batch of two pairs, as GatherPairs leaves it.
GlobalPairs TwoPairs(const std::vector<double>& pol, const std::vector<double>& ref) {
  NoisedPairs batch;
  batch.timepoints = {Flow().At(300), Flow().At(600)};
  batch.weights = {1.0, 1.0};
  PairErrors errors;
  errors.policy = Tensor::FromVector(pol, {4}, kF64);
  errors.reference = Tensor::FromVector(ref, {4}, kF64);
  distributed::LocalCommunicator local;
  return GatherPairs(batch, errors, local);
}

TEST(PreferenceStepTest, LossGradientIsTheObjectivesGradient) {
  const std::vector<double> pol_values = {0.5, 0.7, 0.9, 0.4}, ref = {0.6, 0.6, 0.8, 0.5};
  GlobalPairs global = TwoPairs(pol_values, ref);
  Tensor pol = Tensor::FromVector(pol_values, {4}, kF64);
  pol.set_requires_grad(true);
  ObjectiveConfig cfg = ObjectiveConfig::DiffusionDpo();
  PreferenceLoss l = ComputePreferenceLoss(cfg, global, /*offset=*/0, pol);
  ASSERT_TRUE(l.finite);
  EXPECT_NEAR(l.loss.item(), l.result.loss, 1e-12);
  Backward(l.loss);
  std::vector<double> g = pol.grad().ToVector();
  EXPECT_DOUBLE_EQ(g[0], l.result.grad_policy_winner[0]);
  EXPECT_DOUBLE_EQ(g[3], l.result.grad_policy_loser[1]);
}

// Data parallelism through the one loss path: two ranks holding one pair each, at offsets 0 and
// 1 of the gathered batch, backpropagate the one-rank gradient's entries for their pairs.
TEST(PreferenceStepTest, EachRankGetsTheOneRankGradientOfItsPairs) {
  const std::vector<double> pol_values = {0.5, 0.7, 0.9, 0.4}, ref = {0.6, 0.6, 0.8, 0.5};
  GlobalPairs global = TwoPairs(pol_values, ref);
  ObjectiveConfig cfg = ObjectiveConfig::Sdpo();
  cfg.sdpo_reading = SdpoReading::kSelfNormalized;  // a batch-wide normalisation
  Tensor whole = Tensor::FromVector(pol_values, {4}, kF64);
  whole.set_requires_grad(true);
  Backward(ComputePreferenceLoss(cfg, global, 0, whole).loss);
  const std::vector<double> expected = whole.grad().ToVector();  // w0 w1 l0 l1
  ASSERT_NE(expected[0], expected[1]);
  for (int64_t rank = 0; rank < 2; ++rank) {
    // This rank's errors: its winner, then its loser.
    Tensor mine =
        Tensor::FromVector(std::vector<double>{pol_values[rank], pol_values[2 + rank]}, {2}, kF64);
    mine.set_requires_grad(true);
    PreferenceLoss l = ComputePreferenceLoss(cfg, global, rank, mine);
    ASSERT_TRUE(l.finite);
    Backward(l.loss);
    std::vector<double> g = mine.grad().ToVector();
    EXPECT_DOUBLE_EQ(g[0], expected[rank]) << "rank " << rank;
    EXPECT_DOUBLE_EQ(g[1], expected[2 + rank]) << "rank " << rank;
  }
}

TEST(PreferenceStepTest, GatherCarriesErrorsTimePointsAndPairWeights) {
  NoisedPairs batch;
  batch.timepoints = {Flow().At(250)};
  batch.weights = {5.0};
  PairErrors errors;
  errors.policy = Tensor::FromVector(std::vector<double>{0.25, 0.75}, {2}, kF64);
  errors.reference = Tensor::FromVector(std::vector<double>{0.5, 0.125}, {2}, kF64);
  distributed::LocalCommunicator local;
  GlobalPairs g = GatherPairs(batch, errors, local);
  ASSERT_EQ(g.batch.size(), 1u);
  EXPECT_EQ(g.batch.policy_winner[0], 0.25);
  EXPECT_EQ(g.batch.policy_loser[0], 0.75);
  EXPECT_EQ(g.batch.reference_winner[0], 0.5);
  EXPECT_EQ(g.batch.reference_loser[0], 0.125);
  EXPECT_EQ(g.batch.timepoints[0].timestep, batch.timepoints[0].timestep);
  EXPECT_EQ(g.batch.timepoints[0].sigma, batch.timepoints[0].sigma);
  EXPECT_EQ(g.batch.timepoints[0].index, batch.timepoints[0].index);
  EXPECT_EQ(g.batch.pair_weights, std::vector<double>{5.0});
}

TEST(PreferenceStepTest, NonFiniteErrorsMakeTheLossNotFinite) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  GlobalPairs global = TwoPairs({0.5, nan, 0.9, 0.4}, {0.6, 0.6, 0.8, 0.5});
  Tensor pol = Tensor::FromVector(std::vector<double>{0.5, 0.9}, {2}, kF64);
  EXPECT_FALSE(ComputePreferenceLoss(ObjectiveConfig::Sdpo(), global, 0, pol).finite);
}

// CogVideoX through the same interface: the v-prediction DDPM path, LoRA on diffusers names,
// and the [C, F, H, W] dataset layout adapted to the model's [F, C, H, W].
class CogPairs : public data::PairDataset {
 public:
  int64_t size() const override { return 4; }
  data::PreferencePair Get(int64_t i) const override {
    data::PreferencePair p;
    p.id = std::to_string(i);
    p.winner = ops::MulScalar(ops::RandomNormal({4, 2, 4, 4}, 91, i * 128), 0.5);
    p.loser = ops::Add(p.winner, ops::RandomNormal({4, 2, 4, 4}, 92, i * 128));
    p.context = ops::RandomNormal({3, 8}, 93, i * 24);
    return p;
  }
};

TEST(TrainerTest, TrainsATinyCogVideoXWithTheDdpmSchedule) {
  const cogvideox::CogVideoXConfig c = testing::TinyCogVideoXConfig();
  nn::SetInitSeed(3);
  std::string path = TempDir("cog") + "/tiny.safetensors";
  cogvideox::SaveWeights(cogvideox::CogVideoXModel(c), path);

  TrainModel m = LoadTrainModel("cogvideox-2b", path);
  EXPECT_EQ(m.model->family(), ScheduleFamily::kDdpm);
  m.model->module().SetRequiresGrad(false);
  nn::LoraConfig lora;
  lora.rank = 2;
  lora.alpha = 2;
  lora.targets = m.lora_targets;
  EXPECT_FALSE(nn::AttachLora(m.model->module(), lora).empty());
  CogPairs data;
  TrainerConfig tc = Config(TempDir("cogrun"), 6);
  tc.objective.beta = 500;
  Trainer t(tc, *m.schedule, *m.model, nullptr, data, nullptr);
  auto before = Params(t);
  t.Run();
  EXPECT_NE(Params(t), before);
  for (const StepRecord& r : t.history()) {
    EXPECT_FALSE(r.skipped);
    EXPECT_TRUE(std::isfinite(r.metrics.loss));
  }
}

}  // namespace
}  // namespace sdpo::trainers
