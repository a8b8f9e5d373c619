// The trainer's pair weights and importance-weight sources on a tiny Wan2.1 model: dataset
// weights change training (unit weights change no bit), the generator source swaps the
// generator's parameters in and restores them bit for bit, and the sampled and timestep-curve
// sources give weights above one and resume bit-exactly.
#include <algorithm>
#include <filesystem>
#include <limits>

#include "gtest/gtest.h"
#include "models/wan21/model.h"
#include "nn/init.h"
#include "nn/lora.h"
#include "tensor/ops.h"
#include "tests/trainers/tiny_wan.h"
#include "trainers/preference_step.h"
#include "trainers/trainer.h"
#include "trainers/weight_inputs.h"

namespace sdpo::trainers {
namespace {

using testing::SyntheticPairs;

std::unique_ptr<wan21::WanModel> MakeModel() {
  nn::SetInitSeed(5);
  auto model = std::make_unique<wan21::WanModel>(testing::TinyWanConfig());
  nn::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 4;
  lora.targets = {"blocks.*.self_attn.{q,k,v,o}", "blocks.*.ffn.{0,2}"};
  nn::AttachLora(*model, lora);
  return model;
}

// SyntheticPairs with dataset weights (cycled) and a generator id on every pair.
class WeightedPairs : public data::PairDataset {
 public:
  WeightedPairs(int64_t n, std::vector<double> weights, std::string generator = "")
      : base_(n), weights_(std::move(weights)), generator_(std::move(generator)) {}
  int64_t size() const override { return base_.size(); }
  data::PreferencePair Get(int64_t i) const override {
    data::PreferencePair p = base_.Get(i);
    if (!weights_.empty()) p.weight = weights_[i % weights_.size()];
    p.generator = generator_;
    return p;
  }

 private:
  SyntheticPairs base_;
  std::vector<double> weights_;
  std::string generator_;
};

TrainerConfig Config(int64_t steps, const std::string& out = "") {
  TrainerConfig c;
  c.steps = steps;
  c.batch = 3;
  c.lr.base_lr = 1e-3;
  c.seed = 11;
  c.progress = false;
  c.out_dir = out;
  c.objective = ObjectiveConfig::DiffusionDpo();
  c.objective.beta = 50;
  return c;
}

std::vector<std::vector<double>> Params(const Trainer& t) {
  std::vector<std::vector<double>> out;
  for (const auto& [name, p] : t.TrainableParameters()) out.push_back(p.ToVector());
  return out;
}

NoiseSchedule Flow() { return NoiseSchedule::Flow(FlowScheduleConfig::Wan21()); }

std::vector<std::vector<double>> Train(const data::PairDataset& data, const TrainerConfig& c) {
  auto model = MakeModel();
  Trainer t(c, Flow(), *model, nullptr, data, nullptr);
  for (int64_t s = 0; s < c.steps; ++s) t.Step();
  return Params(t);
}

TEST(WeightSourcesTest, PairWeightsChangeTrainingAndUnitWeightsChangeNoBit) {
  const TrainerConfig c = Config(3);
  const auto plain = Train(WeightedPairs(6, {}), c);
  EXPECT_EQ(Train(WeightedPairs(6, {1.0}), c), plain);
  const auto weighted = Train(WeightedPairs(6, {0.0, 1.0, 5.0}), c);
  EXPECT_NE(weighted, plain);
  // Scaling every weight by the same factor changes nothing: the mean is normalised by the sum.
  EXPECT_EQ(Train(WeightedPairs(6, {0.0, 2.0, 10.0}), c), weighted);
}

TEST(WeightSourcesTest, GeneratorErrorsSwapTheGeneratorInAndRestoreThePolicy) {
  auto model = MakeModel();
  SyntheticPairs data(2);
  PairTensors pairs;
  for (int i = 0; i < 2; ++i) {
    data::PreferencePair p = data.Get(i);
    pairs.winners.push_back(p.winner);
    pairs.losers.push_back(p.loser);
    pairs.contexts.push_back(p.context);
  }
  const NoiseSchedule s = Flow();
  std::vector<Tensor> noise = {ops::RandomNormal(pairs.winners[0].shape(), 3, 0),
                               ops::RandomNormal(pairs.winners[0].shape(), 3, 1000)};
  NoisedPairs batch = NoisePairs(pairs, {s.At(400), s.At(700)}, noise, PredictionType::kV);
  std::map<std::string, nn::TensorMap> generators;
  std::vector<std::vector<double>> before;
  for (const auto& [name, p] : model->NamedTrainableParameters()) {
    before.push_back(p.ToVector());
    generators["g1"][name] = ops::AddScalar(p, 0.05);  // a different policy
  }
  const std::vector<double> own =
      PerSampleMse(model->ForwardList(batch.inputs, batch.timesteps, batch.contexts), batch.targets)
          .ToVector();
  const std::vector<double> gen = GeneratorErrors(
      *model, batch.inputs, batch.timesteps, batch.contexts, batch.targets, {"g1", ""}, generators);
  // Pair 0 (winner 0, loser 2) from g1: its errors differ from the policy's; pair 1 is the
  // reference's, left for the caller (NaN).
  EXPECT_NE(gen[0], own[0]);
  EXPECT_NE(gen[2], own[2]);
  EXPECT_TRUE(std::isnan(gen[1]) && std::isnan(gen[3]));
  std::vector<std::vector<double>> after;
  for (const auto& [name, p] : model->NamedTrainableParameters()) after.push_back(p.ToVector());
  EXPECT_EQ(after, before);
  EXPECT_THROW(GeneratorErrors(*model, batch.inputs, batch.timesteps, batch.contexts, batch.targets,
                               {"missing", ""}, generators),
               Error);
}

// Largest log weight seen over a run's steps.
double MaxLogWeight(const Trainer& t) {
  double m = -std::numeric_limits<double>::infinity();
  for (const StepRecord& r : t.history()) {
    m = std::max({m, r.metrics.log_weight_winner.max, r.metrics.log_weight_loser.max});
  }
  return m;
}

TEST(WeightSourcesTest, SampledGeneratorAndCurveSourcesGiveWeightsAboveOne) {
  SyntheticPairs plain(6);
  for (WeightSource source :
       {WeightSource::kSampled, WeightSource::kGenerator, WeightSource::kTimestepCurve}) {
    SCOPED_TRACE(WeightSourceName(source));
    TrainerConfig c = Config(4);
    c.objective = ObjectiveConfig::Sdpo();
    c.objective.beta = 50;
    c.objective.weight_source = source;
    c.objective.effective_elements = 200;
    auto model = MakeModel();
    // generator: the pairs come from the reference (id ""), so log w = D k (e_ref - e_pol).
    Trainer t(c, Flow(), *model, nullptr, plain, nullptr);
    for (int s = 0; s < 4; ++s) t.Step();
    EXPECT_GT(MaxLogWeight(t), 0.0);
    // The closed form never exceeds one.
    c.objective.weight_source = WeightSource::kClosedForm;
    auto closed_model = MakeModel();
    Trainer closed(c, Flow(), *closed_model, nullptr, plain, nullptr);
    for (int s = 0; s < 4; ++s) closed.Step();
    EXPECT_LE(MaxLogWeight(closed), 0.0);
  }
}

TEST(WeightSourcesTest, SampledAndCurveSourcesResumeBitExactly) {
  SyntheticPairs data(5);
  for (WeightSource source : {WeightSource::kSampled, WeightSource::kTimestepCurve}) {
    SCOPED_TRACE(WeightSourceName(source));
    auto dir = std::filesystem::path(::testing::TempDir()) / WeightSourceName(source);
    std::filesystem::remove_all(dir);
    TrainerConfig c = Config(4, dir.string());
    c.objective = ObjectiveConfig::Sdpo();
    c.objective.weight_source = source;
    c.objective.effective_elements = 200;
    TrainerConfig straight_config = c;
    straight_config.out_dir.clear();
    const auto straight = Train(data, straight_config);
    {
      TrainerConfig first = c;
      first.steps = 2;
      auto m = MakeModel();
      Trainer t(first, Flow(), *m, nullptr, data, nullptr);
      t.Run();
    }
    auto m = MakeModel();
    Trainer second(c, Flow(), *m, nullptr, data, nullptr);
    second.Resume(Trainer::CheckpointPath(c.out_dir));
    second.Run();
    EXPECT_EQ(Params(second), straight);
  }
}

}  // namespace
}  // namespace sdpo::trainers
