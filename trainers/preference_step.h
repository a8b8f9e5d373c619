// The model-agnostic pieces of one preference step: noising a batch of pairs with a shared
// timestep and shared noise for winner and loser, per-sample regression errors, and the
// objective (sdpo/) turned into a differentiable loss.
#pragma once

#include <vector>

#include "autograd/ops.h"
#include "sdpo/objectives.h"
#include "models/schedules.h"

namespace sdpo::trainers {

// B preference pairs as the model sees them (latents [C, F, H, W], contexts [L, D]).
struct PairTensors {
  std::vector<Tensor> winners, losers, contexts;
  std::vector<double> weights;  // per-pair dataset weight (1 when absent)
  size_t size() const { return winners.size(); }
};

// 2B model inputs: winners first, then losers; pair i and pair B + i share the timestep and the
// noise (the invariant CheckSharedHalves tests).
struct NoisedPairs {
  std::vector<Tensor> inputs;     // x_t
  std::vector<Tensor> targets;    // regression target of the model's prediction type
  std::vector<Tensor> contexts;   // the pair's context, twice
  Tensor timesteps;               // [2B] f32, the values fed to the model
  std::vector<TimePoint> timepoints;  // [B]
};

// noise[i] is shared by winner i and loser i; timepoints[i] likewise.
NoisedPairs NoisePairs(const PairTensors& pairs, const std::vector<TimePoint>& timepoints,
                       const std::vector<Tensor>& noise, PredictionType target);

// mean((pred_i - target_i)^2) per sample: [N] f32, differentiable in preds.
Tensor PerSampleMse(const std::vector<Tensor>& preds, const std::vector<Tensor>& targets);

struct PreferenceLoss {
  Tensor loss;            // scalar; its gradient w.r.t. the policy errors is the objective's
  ObjectiveResult result;
  PairBatch batch;        // what the objective saw (for metrics)
};

// policy_errors: [2B] (winners then losers, requires grad); reference_errors: [2B] constants.
// The objective's gradient flows into policy_errors only (weights and reference are constants).
PreferenceLoss ComputePreferenceLoss(const ObjectiveConfig& config,
                                     const std::vector<TimePoint>& timepoints,
                                     const Tensor& policy_errors, const Tensor& reference_errors);

}  // namespace sdpo::trainers
