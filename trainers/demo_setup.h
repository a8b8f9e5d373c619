// The embedded demo behind `bazel run //trainers:sdpo -- --model=wan21` with no checkpoint and
// no data: a tiny Wan2.1-architecture model pretrained on the synthetic blob world
// (trainers/demo/), preference pairs made the paper's way (two samples of the base model per
// prompt, ranked by the world's reward), and a held-out evaluation (mean reward, win rate
// against the base model on the same noise).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/samplers/flow_samplers.h"
#include "models/wan21/model.h"
#include "trainers/demo/world.h"
#include "trainers/trainer.h"

namespace sdpo::trainers {

using demo::DemoPrompt;
using demo::DemoWorld;

// The demo model's architecture (a small Wan2.1: 3 blocks of width 64).
wan21::WanConfig DemoModelConfig(const DemoWorld& world);

// Where the committed base model lives, relative to the workspace root (and to runfiles).
inline constexpr char kDemoBaseModelPath[] = "trainers/demo/base_model.safetensors";

// Sampling settings shared by pair generation, evaluation and //trainers:sample.
samplers::FlowSampleOptions DemoSampleOptions();

// Samples one latent per (prompt, seed) with the model as it is (adapters as set), on the
// model's device; the samples are returned on the CPU.
std::vector<Tensor> SampleDemo(models::DiffusionModel& model, const DemoWorld& world,
                               const std::vector<DemoPrompt>& prompts,
                               const std::vector<uint64_t>& seeds,
                               const samplers::FlowSampleOptions& options);

struct DemoPairStats {
  int64_t pairs = 0;
  double mean_reward_winner = 0, mean_reward_loser = 0, mean_gap = 0;
};

// pairs_per_prompt pairs for each training prompt: two base-model samples (different noise),
// the higher-reward one is the winner. Pairs with a reward gap below min_gap are dropped.
std::vector<data::PreferencePair> GenerateDemoPairs(models::DiffusionModel& base, const DemoWorld& world,
                                int pairs_per_prompt, double min_gap, uint64_t seed,
                                DemoPairStats* stats);

// Held-out evaluation: mean reward of the policy's samples on held-out prompts and the win rate
// against the base model (adapters off) on the same noise. Base samples are computed once.
class DemoEvaluator : public Evaluator {
 public:
  DemoEvaluator(const DemoWorld& world, int samples_per_prompt, uint64_t seed);
  EvalResult Evaluate(models::DiffusionModel& policy) override;

 private:
  const DemoWorld& world_;
  std::vector<DemoPrompt> prompts_;
  std::vector<uint64_t> seeds_;
  std::vector<double> base_rewards_;  // filled on the first call (adapters off)
};

}  // namespace sdpo::trainers
