// The held-out split (deterministic by seed, disjoint, recorded and checked on resume), the
// held-out evaluator (fixed draws: the same numbers at every evaluation of the same weights,
// others after training; on the emulated CUDA device the CPU's), the validation prompt files and
// the video evaluator's use of a model family's renderer (seeds and embeddings per prompt, once
// per step).
#include "trainers/validation.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "gtest/gtest.h"
#include "models/wan21/model.h"
#include "nn/lora.h"
#include "tensor/cuda/cuda_available.h"
#include "tests/error_testing.h"
#include "tests/trainers/tiny_wan.h"

namespace sdpo::trainers {
namespace {

using sdpo::testing::ExpectErrorContains;
using sdpo::testing::FreshTmpDir;

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(SplitPairs, DeterministicDisjointAndComplete) {
  const PairSplit a = SplitPairs(50, 0.2, 3), b = SplitPairs(50, 0.2, 3);
  EXPECT_EQ(a.heldout, b.heldout);
  EXPECT_EQ(a.heldout.size(), 10u);
  EXPECT_EQ(a.train.size(), 40u);
  std::set<int64_t> all(a.train.begin(), a.train.end());
  for (int64_t i : a.heldout) EXPECT_TRUE(all.insert(i).second) << "pair " << i << " in both";
  EXPECT_EQ(all.size(), 50u);
  EXPECT_EQ(*all.begin(), 0);
  EXPECT_EQ(*all.rbegin(), 49);
  EXPECT_NE(SplitPairs(50, 0.2, 4).heldout, a.heldout) << "the seed must choose the pairs";
  EXPECT_EQ(SplitPairs(7, 0.01, 0).heldout.size(), 1u) << "a fraction rounds up to one pair";
}

TEST(SplitPairs, RefusesFractionsWithoutTrainingPairs) {
  ExpectErrorContains([] { SplitPairs(4, 0.9, 0); }, {"--val_fraction=0.9", "leaves none"});
  ExpectErrorContains([] { SplitPairs(4, 1.0, 0); }, {"--val_fraction=1", "0 < F < 1"});
  ExpectErrorContains([] { SplitPairs(4, 0.0, 0); }, {"0 < F < 1"});
}

TEST(RecordOrCheckSplit, WritesThenRefusesAnotherSplitOnResume) {
  const std::string path = FreshTmpDir("split") + "/val_split.json";
  const std::vector<std::string> ids = {"a", "b", "c", "d", "e"};
  const PairSplit split = SplitPairs(5, 0.4, 1);
  RecordOrCheckSplit(path, split, 0.4, 1, ids, /*resume=*/false);
  RecordOrCheckSplit(path, split, 0.4, 1, ids, /*resume=*/true);  // the same: accepted
  PairSplit other = split;
  std::swap(other.heldout[0], other.train[0]);
  ExpectErrorContains([&] { RecordOrCheckSplit(path, other, 0.4, 1, ids, true); },
                      {"val_split.json records a held-out split", "(other pairs)"});
}

TEST(PairSubset, MapsIndices) {
  testing::SyntheticPairs pairs(6);
  PairSubset subset(pairs, {4, 1});
  ASSERT_EQ(subset.size(), 2);
  EXPECT_EQ(subset.Get(0).winner.ToVector(), pairs.Get(4).winner.ToVector());
  EXPECT_EQ(subset.Get(1).loser.ToVector(), pairs.Get(1).loser.ToVector());
  ExpectErrorContains([&] { PairSubset(pairs, {6}); }, {"index 6 outside the 6 pairs"});
}

TEST(HeldOutEvaluator, FixedDrawsGiveTheSameNumbersAndTrainingMovesThem) {
  auto model = testing::MakeTinyLoraModel();
  testing::SyntheticPairs pairs(5);
  const TrainerConfig tc = testing::TinyRunConfig("", 1);
  const NoiseSchedule schedule = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  HeldOutEvaluator eval(pairs, schedule, nullptr, tc.objective, tc.timesteps, tc.target,
                        /*batch=*/2, /*seed=*/9);
  const EvalResult a = eval.Evaluate(*model), b = eval.Evaluate(*model);
  EXPECT_EQ(a.Get("val_loss"), b.Get("val_loss"));
  EXPECT_EQ(a.Get("val_pairs"), 5);
  // LoRA starts at zero (policy = reference): every margin is 0, the accuracy 1/2 (ties).
  EXPECT_EQ(a.Get("val_reward_accuracy"), 0.5);
  for (const auto& [name, p] : model->NamedTrainableParameters()) {
    if (name.find("lora_B") != std::string::npos) {
      std::vector<float> v(static_cast<size_t>(p.numel()), 0.05f);
      ops::CopyInto(p, Tensor::FromVector(v, p.shape()));
    }
  }
  const EvalResult c = eval.Evaluate(*model);
  EXPECT_NE(c.Get("val_loss"), a.Get("val_loss"));
  EXPECT_NE(c.Get("val_reward_accuracy"), 0.5);
}

// The evaluator on the (emulated) CUDA device: the CPU's numbers to f32 rounding. The margins
// are beta (= 50) times differences of per-sample MSEs of order 1 whose f32 sums round at a
// relative 1e-6 or so: 4 of them give at most about 50 * 4 * 1e-6 = 2e-4; the loss moves by at
// most half the margin's change.
TEST(HeldOutEvaluator, OnTheDeviceMatchesTheCpu) {
  if (!CudaAvailable()) GTEST_SKIP() << CudaUnavailableReason();
  auto cpu_model = testing::MakeTinyLoraModel();
  auto gpu_model = testing::MakeTinyLoraModel();
  for (auto* m : {cpu_model.get(), gpu_model.get()}) {
    for (const auto& [name, p] : m->NamedTrainableParameters()) {
      if (name.find("lora_B") == std::string::npos) continue;
      std::vector<float> v(static_cast<size_t>(p.numel()));
      for (size_t i = 0; i < v.size(); ++i) v[i] = 0.01f * static_cast<float>(i % 7) - 0.03f;
      ops::CopyInto(p, Tensor::FromVector(v, p.shape()));
    }
  }
  PlaceModels(*gpu_model, nullptr, Device::CUDA(0), kF32);
  testing::SyntheticPairs pairs(4);
  const TrainerConfig tc = testing::TinyRunConfig("", 1);
  const NoiseSchedule schedule = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  HeldOutEvaluator eval(pairs, schedule, nullptr, tc.objective, tc.timesteps, tc.target, 3, 9);
  const EvalResult cpu = eval.Evaluate(*cpu_model), gpu = eval.Evaluate(*gpu_model);
  EXPECT_NEAR(gpu.Get("val_reward_margin"), cpu.Get("val_reward_margin"), 2e-4);
  EXPECT_NEAR(gpu.Get("val_loss"), cpu.Get("val_loss"), 1e-4);
  EXPECT_NE(cpu.Get("val_reward_margin"), 0.0) << "the adapters must move the policy";
}

TEST(ReadValidationPrompts, PlainLinesAndJsonLines) {
  const std::string dir = FreshTmpDir("prompts");
  Write(dir + "/plain.txt", "a cat\n\n  a dog  \n");
  const auto plain = ReadValidationPrompts(dir + "/plain.txt", "ugly");
  ASSERT_EQ(plain.size(), 2u);
  EXPECT_EQ(plain[1].text, "a dog");
  EXPECT_EQ(plain[1].seed, 1u);
  EXPECT_EQ(plain[1].negative, "ugly");
  Write(dir + "/p.jsonl",
        "{\"prompt\": \"a cat\", \"seed\": 42, \"negative_prompt\": \"\"}\n"
        "{\"prompt\": \"a dog\"}\n");
  const auto json = ReadValidationPrompts(dir + "/p.jsonl", "ugly");
  ASSERT_EQ(json.size(), 2u);
  EXPECT_EQ(json[0].seed, 42u);
  EXPECT_EQ(json[0].negative, "");
  EXPECT_EQ(json[1].seed, 1u);
  EXPECT_EQ(json[1].negative, "ugly");
}

TEST(ReadValidationPrompts, ErrorsNameTheLine) {
  const std::string dir = FreshTmpDir("bad_prompts");
  Write(dir + "/a.jsonl", "{\"prompt\": \"a cat\"}\n{\"text\": \"a dog\"}\n");
  ExpectErrorContains([&] { ReadValidationPrompts(dir + "/a.jsonl", ""); },
                      {"a.jsonl line 2", "unknown key \"text\""});
  Write(dir + "/b.jsonl", "{\"prompt\": \"a cat\", \"seed\": -1}\n");
  ExpectErrorContains([&] { ReadValidationPrompts(dir + "/b.jsonl", ""); },
                      {"line 1", "\"seed\" must be an integer >= 0"});
  Write(dir + "/c.jsonl", "{\"prompt\": \" \"}\n");
  ExpectErrorContains([&] { ReadValidationPrompts(dir + "/c.jsonl", ""); },
                      {"line 1", "empty prompt"});
  Write(dir + "/empty.txt", "\n\n");
  ExpectErrorContains([&] { ReadValidationPrompts(dir + "/empty.txt", ""); }, {"no prompts"});
  ExpectErrorContains([&] { ReadValidationPrompts(dir + "/missing.txt", ""); },
                      {"missing.txt", "cannot open"});
}

// A renderer that records what the evaluator asks of it (the model-family part of validation)
// and returns a grey video.
class RecordingRenderer : public VideoRenderer {
 public:
  struct Call {
    uint64_t seed;
    Shape latent_shape;
    double context, negative;  // the first value of each embedding
  };
  explicit RecordingRenderer(std::vector<Call>* calls) : calls_(calls) {}
  Tensor Render(models::DiffusionModel& /*policy*/, const SamplingContexts& contexts,
                const Shape& latent_shape, uint64_t seed, bool /*progress*/) override {
    EXPECT_EQ(contexts.prompts.size(), 1u);
    calls_->push_back(
        {seed, latent_shape, contexts.prompts[0].ToVector()[0], contexts.negative.ToVector()[0]});
    return Tensor::Full({3, 5, 16, 16}, 0.25);
  }

 private:
  std::vector<Call>* calls_;
};

TEST(ValidationVideoEvaluator, RendersEachPromptFromItsSeedOncePerStep) {
  const std::string out = FreshTmpDir("validation_renderer");
  std::vector<RecordingRenderer::Call> calls;
  std::vector<ValidationPrompt> prompts(2);
  prompts[0].text = "a";
  prompts[0].seed = 0;
  prompts[1].text = "b";
  prompts[1].seed = 7;
  std::vector<Tensor> contexts = {Tensor::Full({2, 4}, 1.0), Tensor::Full({2, 4}, 2.0)};
  std::vector<Tensor> negatives = {Tensor::Full({2, 4}, -1.0), Tensor::Full({2, 4}, -2.0)};
  ValidationVideoOptions options;
  options.out_dir = out;
  options.latent_shape = {4, 2, 2, 2};
  options.fps = 8;
  options.progress = false;
  ValidationVideoEvaluator eval(prompts, contexts, negatives,
                                std::make_unique<RecordingRenderer>(&calls), options);
  auto model = testing::MakeTinyLoraModel();
  EXPECT_EQ(eval.EvaluateAt(*model, 0).Get("validation_videos"), 2);
  EXPECT_EQ(eval.EvaluateAt(*model, 3).Get("validation_videos"), 2);
  ASSERT_EQ(calls.size(), 4u);
  for (size_t i = 0; i < calls.size(); ++i) {
    const size_t k = i % 2;  // prompt k, at both steps the same seed and embeddings
    EXPECT_EQ(calls[i].seed, prompts[k].seed);
    EXPECT_EQ(calls[i].latent_shape, options.latent_shape);
    EXPECT_EQ(calls[i].context, k == 0 ? 1.0 : 2.0);
    EXPECT_EQ(calls[i].negative, k == 0 ? -1.0 : -2.0);
  }
  for (const char* file : {"step_000000/p0.mp4", "step_000000/p1.gif", "step_000003/p1.mp4"}) {
    EXPECT_TRUE(std::filesystem::is_regular_file(out + "/validation/" + file)) << file;
  }
  // A step whose folder exists (a resumed run's) is not rendered again.
  EXPECT_EQ(eval.EvaluateAt(*model, 3).Get("validation_videos"), 2);
  EXPECT_EQ(calls.size(), 4u);
}

}  // namespace
}  // namespace sdpo::trainers
