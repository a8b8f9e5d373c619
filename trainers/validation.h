// Validation for real data (README, "Validation"): held-out preference pairs scored at every
// evaluation, and validation videos rendered from fixed prompts with fixed noise.
//
//   held-out pairs   --val_fraction=F (a seeded split of --data, recorded in the run folder as
//                    val_split.json and checked on resume) or --val_data=DATASET; each evaluation
//                    reports val_loss and val_reward_accuracy (HeldOutEvaluator)
//   videos           --validation_prompts=FILE; each evaluation writes
//                    validation/step_NNNNNN/pK.{mp4,gif} (ValidationVideoEvaluator)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/diffusion_model.h"
#include "models/schedules.h"
#include "sdpo/objectives.h"
#include "trainers/cogvideox_folder.h"
#include "trainers/data/preference_dataset.h"
#include "trainers/sampling.h"
#include "trainers/trainer.h"

namespace sdpo::trainers {

// ---- held-out pairs ---------------------------------------------------------------------------

// Pairs `indices` of another dataset, in that order (not owned; must outlive this view).
class PairSubset : public data::PairDataset {
 public:
  PairSubset(const data::PairDataset& source, std::vector<int64_t> indices);
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  data::PreferencePair Get(int64_t index) const override;

 private:
  const data::PairDataset& source_;
  std::vector<int64_t> indices_;
};

struct PairSplit {
  std::vector<int64_t> train, heldout;  // dataset indices, each ascending; disjoint
};

// Holds out ceil(fraction * num_pairs) pairs chosen by a permutation seeded with `seed` (the same
// split for the same seed and size). Throws, naming --val_fraction, unless 0 < fraction < 1 and
// at least one pair is left to train on.
PairSplit SplitPairs(int64_t num_pairs, double fraction, uint64_t seed);

// The split's record in the run folder (val_split.json: fraction, seed, pair count and the
// held-out pairs' ids). Written on a fresh run; on resume the recorded split must equal `split`
// (the same data and flags), else an error names the file and the difference.
void RecordOrCheckSplit(const std::string& path, const PairSplit& split, double fraction,
                        uint64_t seed, const std::vector<std::string>& ids, bool resume);

// The preference loss and implicit reward accuracy of the policy on held-out pairs. Every pair
// gets the same timestep and noise at every evaluation (drawn from `seed`), so evaluations are
// comparable and a resumed run reproduces them. The objective is the run's with the closed-form
// importance weights (the other weight sources need training-time inputs).
class HeldOutEvaluator : public Evaluator {
 public:
  // pairs, schedule and reference (null: the policy with its adapters off) are not owned.
  HeldOutEvaluator(const data::PairDataset& pairs, const NoiseSchedule& schedule,
                   models::DiffusionModel* reference, ObjectiveConfig objective,
                   TimestepSamplerConfig timesteps, PredictionType target, int64_t batch,
                   uint64_t seed);
  // val_loss, val_reward_accuracy (fraction of pairs with an implicit reward margin > 0, ties
  // 1/2), val_reward_margin and val_pairs.
  EvalResult Evaluate(models::DiffusionModel& policy) override;

 private:
  const data::PairDataset& pairs_;
  models::DiffusionModel* reference_;
  ObjectiveConfig objective_;
  TimestepSampler sampler_;
  PredictionType target_;
  int64_t batch_;
  uint64_t seed_;
};

// ---- validation videos ------------------------------------------------------------------------

struct ValidationPrompt {
  std::string text;
  std::string negative;  // the negative prompt of guidance
  uint64_t seed = 0;     // the noise seed, the same at every evaluation
};

// One prompt per line (blank lines skipped), or JSON Lines with "prompt" and optionally "seed"
// and "negative_prompt" (a file whose first non-blank line starts with '{'). Prompt K (0-based)
// without a seed gets seed K; without a negative prompt, `default_negative`. Errors name the
// file and line.
std::vector<ValidationPrompt> ReadValidationPrompts(const std::string& path,
                                                    const std::string& default_negative);

// A model family's way from a prompt to a validation video: its sampler (with its guidance) from
// the noise of a seed, then its VAE. One evaluator serves every family through it.
class VideoRenderer {
 public:
  virtual ~VideoRenderer() = default;
  // The video [3, T, H, W] in [-1, 1] on the CPU of contexts.prompts[0] (contexts.negative: its
  // negative prompt, used when guided) from latent noise of `latent_shape` [C, F, H, W] drawn
  // from `seed`: the same seed gives the same noise.
  virtual Tensor Render(models::DiffusionModel& policy, const SamplingContexts& contexts,
                        const Shape& latent_shape, uint64_t seed, bool progress) = 0;
};

// Wan2.1: flow sampling (Euler / UniPC, shifted sigmas) and the Wan2.1 VAE.
std::unique_ptr<VideoRenderer> MakeWanRenderer(std::unique_ptr<WanVideoDecoder> decoder,
                                               samplers::FlowSampleOptions sampling);
// CogVideoX: DDIM / DPM on the model's alphas_cumprod (as //trainers:sample) and the folder's VAE.
std::unique_ptr<VideoRenderer> MakeCogVideoXRenderer(std::unique_ptr<CogVideoXVaeRunner> vae,
                                                     std::vector<double> alphas_cumprod,
                                                     samplers::DdpmSampleOptions sampling);

struct ValidationVideoOptions {
  std::string out_dir;  // the run folder: videos go to out_dir/validation/
  Shape latent_shape;   // [C, F, H, W]
  double fps = 16;
  bool progress = true;
};

// Renders every prompt with the policy as it is (LoRA on) into
// validation/step_NNNNNN/pK.mp4 and pK.gif. Each evaluation's folder is written under a
// temporary name and renamed when complete; an evaluation whose folder exists (a resumed run's)
// is not redone. validation/prompts.jsonl lists the prompts for the report.
class ValidationVideoEvaluator : public Evaluator {
 public:
  // contexts[k]: prompt k's embedding; negatives[k]: its negative prompt's (used when guided).
  ValidationVideoEvaluator(std::vector<ValidationPrompt> prompts, std::vector<Tensor> contexts,
                           std::vector<Tensor> negatives, std::unique_ptr<VideoRenderer> renderer,
                           ValidationVideoOptions options);
  EvalResult Evaluate(models::DiffusionModel& policy) override { return EvaluateAt(policy, 0); }
  // validation_videos: the number of videos of this step's folder.
  EvalResult EvaluateAt(models::DiffusionModel& policy, int64_t step) override;

  static std::string StepDir(const std::string& out_dir, int64_t step);

 private:
  std::vector<ValidationPrompt> prompts_;
  std::vector<Tensor> contexts_, negatives_;
  std::unique_ptr<VideoRenderer> renderer_;
  ValidationVideoOptions options_;
};

// Several evaluators as one: their values in order.
class EvaluatorList : public Evaluator {
 public:
  explicit EvaluatorList(std::vector<std::unique_ptr<Evaluator>> evaluators)
      : evaluators_(std::move(evaluators)) {}
  EvalResult Evaluate(models::DiffusionModel& policy) override { return EvaluateAt(policy, 0); }
  EvalResult EvaluateAt(models::DiffusionModel& policy, int64_t step) override;

 private:
  std::vector<std::unique_ptr<Evaluator>> evaluators_;
};

}  // namespace sdpo::trainers
