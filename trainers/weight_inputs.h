// What the importance-weight sources other than the closed form need from the models
// (ObjectiveConfig::weight_source, docs/objectives.md section 3):
//   sampled         the projection of the reverse step's noise z on each sample's residual;
//   generator       each sample's error under the policy that generated its pair;
//   timestep_curve  a curve w(t) from the error profile measured before training.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/diffusion_model.h"
#include "models/schedules.h"
#include "nn/module.h"
#include "sdpo/importance.h"
#include "sdpo/metrics.h"
#include "sdpo/objectives.h"
#include "trainers/data/preference_dataset.h"

namespace sdpo::trainers {

// [2B] (winners then losers): mean over the elements of z_i * (pred - target), with z_i a
// standard normal draw per PAIR (winner and loser share it, like the forward noise), drawn from
// (seed, draw_base + i) as the trainer's other counter-based draws. No gradient.
std::vector<double> NoiseProjections(const std::vector<Tensor>& preds,
                                     const std::vector<Tensor>& targets, uint64_t seed,
                                     uint64_t draw_base);

// [2B] errors of each pair's generator on the same inputs. Generator "" is the reference model:
// its entries are NaN, for the caller to fill with the reference errors. Any other id must be in
// `generators` (trainable parameters by name), which are loaded into the policy for one no-grad
// forward and restored bit for bit: call it before the policy's forward with gradient.
std::vector<double> GeneratorErrors(models::DiffusionModel& policy,
                                    const std::vector<Tensor>& inputs, const Tensor& timesteps,
                                    const std::vector<Tensor>& contexts,
                                    const std::vector<Tensor>& targets,
                                    const std::vector<std::string>& pair_generators,
                                    const std::map<std::string, nn::TensorMap>& generators);

// weight_source=timestep_curve: the reference model's mean error per t bucket, measured on the
// first `num_pairs` pairs of `data` (winners and losers) at the middle grid point of each of
// `num_buckets` buckets with noise from `seed`, turned into the self-normalised curve.
// `reference` null: the policy with its LoRA adapters off.
TimestepWeightCurve MeasureTimestepCurve(models::DiffusionModel& policy,
                                         models::DiffusionModel* reference,
                                         const NoiseSchedule& schedule,
                                         const data::PairDataset& data,
                                         const ObjectiveConfig& objective, PredictionType target,
                                         int num_buckets, int num_pairs, uint64_t seed);

// The closed-form importance-weight profile of `policy` (its adapters as they are) over t:
// for each of `num_buckets` buckets, the first `num_pairs` pairs of `data` noised at the grid
// point nearest the bucket's centre (noise from `seed`), and each sample's log w =
// LogImportanceWeight of its error (objective.error_type, objective.effective_elements).
// A pair counts as masked when either weight is below `tau` (DPO-C&M's rule, for the mask-rate
// column). What //trainers:weight_profile --checkpoint plots for a trained policy.
std::vector<BucketStats> MeasureWeightProfile(models::DiffusionModel& policy,
                                              const NoiseSchedule& schedule,
                                              const data::PairDataset& data,
                                              const ObjectiveConfig& objective,
                                              PredictionType target, int num_buckets, int num_pairs,
                                              uint64_t seed, double tau);

}  // namespace sdpo::trainers
