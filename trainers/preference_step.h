// One preference step's loss, the only path the trainer, the GPU step benchmark
// (bench/cuda/wan_step.cc) and the tests use:
//
//   NoisePairs          the rank's pairs noised with a shared timestep and
//   noise per pair ComputePairErrors   policy and reference per-sample
//   regression errors GatherPairs         every rank's errors and time points
//   (the global micro-batch) ComputePreferenceLoss  the objective (sdpo/) on
//   the global micro-batch, as a differentiable
//                       loss in this rank's policy errors
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "models/diffusion_model.h"
#include "models/schedules.h"
#include "sdpo/objectives.h"
#include "trainers/distributed/communicator.h"

namespace sdpo::trainers {

// B preference pairs as the model sees them (latents [C, F, H, W], contexts [L,
// D]).
struct PairTensors {
  std::vector<Tensor> winners, losers, contexts;
  std::vector<double> weights;  // per-pair dataset weight; empty: 1 for every pair
  // per-pair generator (PreferencePair::generator); empty: the reference for every pair
  std::vector<std::string> generators;
  size_t size() const { return winners.size(); }
};

// 2B model inputs: winners first, then losers; pair i and pair B + i share the
// timestep and the noise (the invariant CheckSharedHalves tests).
struct NoisedPairs {
  std::vector<Tensor> inputs;         // x_t
  std::vector<Tensor> targets;        // regression target of the model's prediction type
  std::vector<Tensor> contexts;       // the pair's context, twice
  Tensor timesteps;                   // [2B] f32, the values fed to the model
  std::vector<TimePoint> timepoints;  // [B]
  std::vector<double> weights;        // [B] per-pair dataset weight
  std::vector<std::string> generators;  // [B] per-pair generator id ("" = the reference)
};

// noise[i] is shared by winner i and loser i; timepoints[i] likewise.
NoisedPairs NoisePairs(const PairTensors &pairs, const std::vector<TimePoint> &timepoints,
                       const std::vector<Tensor> &noise, PredictionType target);

// mean((pred_i - target_i)^2) per sample: [N] f32, differentiable in preds.
Tensor PerSampleMse(const std::vector<Tensor> &preds, const std::vector<Tensor> &targets);

// [2B] errors, winners then losers.
struct PairErrors {
  Tensor policy;     // differentiable in the policy's trainable parameters
  Tensor reference;  // constants
  std::vector<Tensor> policy_predictions;  // [2B] the policy's outputs behind `policy`
  // Inputs of the importance-weight sources (trainers/weight_inputs.h), [2B] or empty when
  // unused: weight_source sampled's noise projections, weight_source generator's errors.
  std::vector<double> noise_dot, generator;
};

// The policy's forward with gradients, then the reference's without: a frozen
// copy, or (null) the policy itself with its LoRA adapters switched off.
PairErrors ComputePairErrors(models::DiffusionModel &policy, models::DiffusionModel *reference,
                             const NoisedPairs &batch);

// What every rank needs to evaluate the objective on the whole global
// micro-batch: every rank's pairs, in rank order.
struct GlobalPairs {
  // Errors, time points, pair weights (batch.pair_weights) and, when the errors carry them, the
  // weight sources' inputs.
  PairBatch batch;
};

// All-gathers this rank's errors, time points, pair weights and weight-source inputs (a
// collective: every rank calls it). With a LocalCommunicator the global batch is this rank's.
GlobalPairs GatherPairs(const NoisedPairs &batch, const PairErrors &errors,
                        distributed::Communicator &comm);

struct PreferenceLoss {
  // False when an error or the objective's loss is not finite; then nothing
  // below is set (every rank decides on the same gathered values, so all skip
  // the step together).
  bool finite = false;
  ObjectiveResult result;  // on the global micro-batch
  // Scalar; its value is the objective's loss and its gradient w.r.t.
  // policy_errors is the objective's gradient for this rank's pairs. Summed
  // over ranks, the parameter gradients are those of one rank holding the whole
  // global micro-batch.
  Tensor loss;
};

// global: the gathered micro-batch; offset: the index in it of this rank's
// first pair; policy_errors: this rank's [2b] errors (winners then losers,
// requiring grad). The objective sees the whole global micro-batch (batch
// normalisations such as C&M's mean over active pairs and SDPO's
// self-normalised weights included).
PreferenceLoss ComputePreferenceLoss(const ObjectiveConfig &config, const GlobalPairs &global,
                                     int64_t offset, const Tensor &policy_errors);

}  // namespace sdpo::trainers
