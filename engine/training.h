// Preference fine-tuning steps on pairs the host provides (docs/embedding.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/objective.h"
#include "sdpo/metrics.h"
#include "trainers/data/preference_dataset.h"
#include "trainers/trainer.h"

namespace sdpo::engine {

// A winner/loser pair: clean latents [C, F, H, W] and the prompt's text embedding [L, D], f32
// on the CPU; weight 1 unless the data says otherwise.
using PreferencePair = data::PreferencePair;
// The host's pairs: size() and Get(i) (called from a prefetching thread as well, so Get must be
// thread-safe). InMemoryPairs holds a vector of them.
using PairSource = data::PairDataset;
using InMemoryPairs = data::InMemoryPairDataset;
// One step's record: step, lr, grad_norm, seconds, skipped (NaN/Inf) and the metrics (loss,
// reward_accuracy, implicit_accuracy, reward_margin, errors, importance weights...).
using StepRecord = trainers::StepRecord;
using StepMetrics = sdpo::StepMetrics;

struct TrainOptions {
  ObjectiveConfig objective = MakeObjective("sdpo");
  int64_t steps = 100;     // the learning-rate schedule's length
  int64_t batch = 4;       // pairs per micro-batch
  int64_t grad_accum = 1;  // micro-batches per step
  double lr = 1e-3;
  std::string lr_schedule = "constant";  // constant | constant_with_warmup | cosine
  int64_t warmup = 0;
  double weight_decay = 0;
  double max_grad_norm = 1.0;                      // <= 0: no clipping
  std::string timestep_sampling = "uniform_grid";  // uniform_grid | uniform_sigma | logit_normal
  uint64_t seed = 0;                               // data order, timesteps, noise
  int64_t max_bad_steps = 5;                       // consecutive NaN/Inf steps before Step() throws
  // Empty: nothing is written. Else metrics.jsonl on every step (and what Save writes).
  std::string out_dir;
};

class Training {
 public:
  // policy: with LoRA adapters attached (the reference is the same model with them off), or
  // fully trainable with `reference` a frozen copy loaded from the same checkpoint. The models
  // and `pairs` must outlive the Training; the models run on the policy's Runtime.
  Training(Model& policy, const PairSource& pairs, const TrainOptions& options,
           Model* reference = nullptr);
  ~Training();

  // One optimizer step (grad_accum micro-batches).
  StepRecord Step();
  int64_t step() const;
  const std::vector<StepRecord>& history() const;

  // The full training state (adapters or weights, optimizer, data cursor), bit-exact to resume.
  void Save(const std::string& path) const;
  void Resume(const std::string& path);

 private:
  Model& policy_;
  std::unique_ptr<trainers::Trainer> trainer_;
};

}  // namespace sdpo::engine
