#include "trainers/weight_inputs.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/grad_mode.h"
#include "nn/lora.h"
#include "tensor/ops.h"
#include "trainers/preference_step.h"

namespace sdpo::trainers {

std::vector<double> NoiseProjections(const std::vector<Tensor>& preds,
                                     const std::vector<Tensor>& targets, uint64_t seed,
                                     uint64_t draw_base) {
  SDPO_CHECK(preds.size() == targets.size() && preds.size() % 2 == 0 && !preds.empty(),
             "NoiseProjections: ", preds.size(), " predictions for ", targets.size(),
             " targets (winners then losers)");
  NoGradGuard no_grad;
  const size_t b = preds.size() / 2;
  std::vector<double> out(preds.size());
  for (size_t i = 0; i < b; ++i) {
    const Tensor& w = preds[i];
    const Tensor z =
        ops::RandomNormal(w.shape(), seed, (draw_base + i) * w.numel(), kF32, w.device());
    for (size_t k : {i, b + i}) {
      SDPO_CHECK(preds[k].shape() == targets[k].shape() && preds[k].shape() == w.shape(),
                 "NoiseProjections: prediction ", k, " ", preds[k].str(), " vs target ",
                 targets[k].str());
      Tensor residual = ops::Sub(ops::Cast(preds[k], kF32), ops::Cast(targets[k], kF32));
      out[k] = ops::Mean(ops::Mul(z, residual)).ToVector()[0];
    }
  }
  return out;
}

std::vector<double> GeneratorErrors(models::DiffusionModel& policy,
                                    const std::vector<Tensor>& inputs, const Tensor& timesteps,
                                    const std::vector<Tensor>& contexts,
                                    const std::vector<Tensor>& targets,
                                    const std::vector<std::string>& pair_generators,
                                    const std::map<std::string, nn::TensorMap>& generators) {
  const size_t b = pair_generators.size();
  SDPO_CHECK(inputs.size() == 2 * b && targets.size() == 2 * b, "GeneratorErrors: ", b,
             " pairs need ", 2 * b, " inputs (found ", inputs.size(), ") and targets (found ",
             targets.size(), ")");
  std::vector<double> out(2 * b, std::numeric_limits<double>::quiet_NaN());
  std::vector<std::string> ids;
  for (const std::string& id : pair_generators) {
    if (!id.empty() && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  if (ids.empty()) return out;
  NoGradGuard no_grad;
  auto trainable = policy.module().NamedTrainableParameters();
  std::vector<Tensor> saved;
  for (const auto& [name, p] : trainable) saved.push_back(ops::Clone(p));
  for (const std::string& id : ids) {
    auto gen = generators.find(id);
    SDPO_CHECK(gen != generators.end(), "weight_source generator: no parameters for generator '",
               id, "' (TrainerConfig::generators has ", generators.size(), " entries)");
    for (const auto& [name, p] : trainable) {
      auto it = gen->second.find(name);
      SDPO_CHECK(it != gen->second.end() && it->second.shape() == p.shape(), "generator '", id,
                 "' lacks trainable parameter '", name, "' of shape ", ShapeStr(p.shape()));
      ops::CopyInto(p, it->second);
    }
    const std::vector<double> e =
        PerSampleMse(policy.ForwardList(inputs, timesteps, contexts), targets).ToVector();
    for (size_t i = 0; i < b; ++i) {
      if (pair_generators[i] != id) continue;
      out[i] = e[i];
      out[b + i] = e[b + i];
    }
  }
  for (size_t k = 0; k < trainable.size(); ++k) ops::CopyInto(trainable[k].second, saved[k]);
  return out;
}

namespace {

// The first `n` pairs of `data` on `device`.
PairTensors FirstPairs(const data::PairDataset& data, int64_t n, Device device) {
  PairTensors pairs;
  for (int64_t i = 0; i < n; ++i) {
    const data::PreferencePair p = data.Get(i);
    pairs.winners.push_back(ops::To(p.winner, device));
    pairs.losers.push_back(ops::To(p.loser, device));
    pairs.contexts.push_back(ops::To(p.context, device));
  }
  return pairs;
}

// Bucket `bucket` of `num_buckets` over [0, max timestep]: every pair noised at the grid point
// nearest the bucket's centre, with noise from (seed, bucket).
NoisedPairs NoisedAtBucket(const PairTensors& pairs, const NoiseSchedule& schedule, int bucket,
                           int num_buckets, uint64_t seed, PredictionType target, Device device) {
  const double centre = (bucket + 0.5) * schedule.max_timestep() / num_buckets;
  int best = 0;
  for (int i = 1; i < schedule.num_steps(); ++i) {
    if (std::abs(schedule.At(i).timestep - centre) <
        std::abs(schedule.At(best).timestep - centre)) {
      best = i;
    }
  }
  const size_t n = pairs.size();
  std::vector<TimePoint> tps(n, schedule.At(best));
  std::vector<Tensor> noise;
  for (size_t i = 0; i < n; ++i) {
    const Tensor& w = pairs.winners[i];
    noise.push_back(ops::RandomNormal(
        w.shape(), seed, static_cast<uint64_t>(bucket * n + i) * w.numel(), kF32, device));
  }
  return NoisePairs(pairs, tps, noise, target);
}

Device ModelParameterDevice(models::DiffusionModel& model) {
  const auto params = model.module().NamedParameters();
  return params.empty() ? Device::CPU() : params.front().second.device();
}

}  // namespace

TimestepWeightCurve MeasureTimestepCurve(models::DiffusionModel& policy,
                                         models::DiffusionModel* reference,
                                         const NoiseSchedule& schedule,
                                         const data::PairDataset& data,
                                         const ObjectiveConfig& objective, PredictionType target,
                                         int num_buckets, int num_pairs, uint64_t seed) {
  SDPO_CHECK(num_buckets > 0 && num_pairs > 0 && data.size() > 0,
             "MeasureTimestepCurve: need buckets (", num_buckets, "), pairs (", num_pairs,
             ") and data (", data.size(), " pairs)");
  const int64_t n = std::min<int64_t>(num_pairs, data.size());
  NoGradGuard no_grad;
  models::DiffusionModel& model = reference != nullptr ? *reference : policy;
  nn::LoraDisabledScope adapters_off(policy.module());
  const Device device = ModelParameterDevice(model);
  const PairTensors pairs = FirstPairs(data, n, device);
  std::vector<double> bucket_mse(num_buckets);
  for (int bucket = 0; bucket < num_buckets; ++bucket) {
    NoisedPairs batch = NoisedAtBucket(pairs, schedule, bucket, num_buckets, seed, target, device);
    const std::vector<double> e =
        PerSampleMse(model.ForwardList(batch.inputs, batch.timesteps, batch.contexts),
                     batch.targets)
            .ToVector();
    double sum = 0.0;
    for (double v : e) sum += v;
    bucket_mse[bucket] = sum / static_cast<double>(e.size());
  }
  return TimestepWeightCurve::FromErrorProfile(schedule, objective.error_type, bucket_mse,
                                               schedule.max_timestep(),
                                               objective.effective_elements);
}

std::vector<BucketStats> MeasureWeightProfile(models::DiffusionModel& policy,
                                              const NoiseSchedule& schedule,
                                              const data::PairDataset& data,
                                              const ObjectiveConfig& objective,
                                              PredictionType target, int num_buckets, int num_pairs,
                                              uint64_t seed, double tau) {
  SDPO_CHECK(num_buckets > 0 && num_pairs > 0 && data.size() > 0,
             "MeasureWeightProfile: need buckets (", num_buckets, "), pairs (", num_pairs,
             ") and data (", data.size(), " pairs)");
  const int64_t n = std::min<int64_t>(num_pairs, data.size());
  NoGradGuard no_grad;
  const Device device = ModelParameterDevice(policy);
  const PairTensors pairs = FirstPairs(data, n, device);
  WeightProfile profile(num_buckets, schedule.max_timestep());
  for (int bucket = 0; bucket < num_buckets; ++bucket) {
    NoisedPairs batch = NoisedAtBucket(pairs, schedule, bucket, num_buckets, seed, target, device);
    const std::vector<double> e =
        PerSampleMse(policy.ForwardList(batch.inputs, batch.timesteps, batch.contexts),
                     batch.targets)
            .ToVector();
    for (int64_t i = 0; i < n; ++i) {
      const TimePoint& tp = batch.timepoints[i];
      const double lw =
          LogImportanceWeight(tp, objective.error_type, e[i], objective.effective_elements);
      const double ll =
          LogImportanceWeight(tp, objective.error_type, e[n + i], objective.effective_elements);
      profile.Add(tp.timestep, lw, ll, std::exp(lw) >= tau && std::exp(ll) >= tau);
    }
  }
  return profile.Buckets();
}

}  // namespace sdpo::trainers
