#include "trainers/preference_step.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "nn/lora.h"
#include "tensor/ops.h"

namespace sdpo::trainers {

NoisedPairs NoisePairs(const PairTensors &pairs, const std::vector<TimePoint> &timepoints,
                       const std::vector<Tensor> &noise, PredictionType target) {
  const size_t b = pairs.size();
  SDPO_CHECK(b > 0 && pairs.losers.size() == b && pairs.contexts.size() == b &&
                 timepoints.size() == b && noise.size() == b,
             "NoisePairs: ", b, " winners need as many losers (", pairs.losers.size(),
             "), contexts (", pairs.contexts.size(), "), timepoints (", timepoints.size(),
             ") and noise tensors (", noise.size(), ")");
  NoisedPairs out;
  SDPO_CHECK(pairs.weights.empty() || pairs.weights.size() == b, "NoisePairs: ", b,
             " pairs need as many weights, found ", pairs.weights.size());
  out.timepoints = timepoints;
  out.weights = pairs.weights.empty() ? std::vector<double>(b, 1.0) : pairs.weights;
  SDPO_CHECK(pairs.generators.empty() || pairs.generators.size() == b, "NoisePairs: ", b,
             " pairs need as many generator ids, found ", pairs.generators.size());
  out.generators = pairs.generators.empty() ? std::vector<std::string>(b) : pairs.generators;
  std::vector<double> steps(2 * b);
  out.inputs.resize(2 * b);
  out.targets.resize(2 * b);
  out.contexts.resize(2 * b);
  for (size_t half = 0; half < 2; ++half) {
    const std::vector<Tensor> &x0s = half == 0 ? pairs.winners : pairs.losers;
    for (size_t i = 0; i < b; ++i) {
      const Tensor &x0 = x0s[i];
      SDPO_CHECK(x0.shape() == noise[i].shape() && x0.shape() == pairs.winners[i].shape(),
                 "NoisePairs: pair ", i, " winner ", pairs.winners[i].str(), ", loser ",
                 pairs.losers[i].str(), " and noise ", noise[i].str(), " must share a shape");
      const TargetMap noising = NoisingMap(timepoints[i]);
      const TargetMap tgt = TargetOf(timepoints[i], target);
      auto combine = [&](const TargetMap &m) {
        return ops::Add(ops::MulScalar(x0, m.x0), ops::MulScalar(noise[i], m.eps));
      };
      out.inputs[half * b + i] = combine(noising);
      out.targets[half * b + i] = combine(tgt);
      out.contexts[half * b + i] = pairs.contexts[i];
      steps[half * b + i] = timepoints[i].timestep;
    }
  }
  out.timesteps = Tensor::FromVector(steps, {static_cast<int64_t>(2 * b)}, kF32);
  return out;
}

Tensor PerSampleMse(const std::vector<Tensor> &preds, const std::vector<Tensor> &targets) {
  SDPO_CHECK(preds.size() == targets.size() && !preds.empty(), "PerSampleMse: ", preds.size(),
             " predictions for ", targets.size(), " targets");
  std::vector<Tensor> errors;
  for (size_t i = 0; i < preds.size(); ++i) {
    SDPO_CHECK(preds[i].shape() == targets[i].shape(), "PerSampleMse: prediction ", i, " ",
               preds[i].str(), " vs target ", targets[i].str());
    Tensor diff = sub(cast(preds[i], kF32), cast(targets[i], kF32));
    errors.push_back(reshape(mean(square(diff)), {1}));
  }
  return concat(errors, 0);
}

PairErrors ComputePairErrors(models::DiffusionModel &policy, models::DiffusionModel *reference,
                             const NoisedPairs &batch) {
  PairErrors errors;
  errors.policy_predictions = policy.ForwardList(batch.inputs, batch.timesteps, batch.contexts);
  errors.policy = PerSampleMse(errors.policy_predictions, batch.targets);
  NoGradGuard no_grad;
  if (reference != nullptr) {
    errors.reference = PerSampleMse(
        reference->ForwardList(batch.inputs, batch.timesteps, batch.contexts), batch.targets);
  } else {
    nn::LoraDisabledScope adapters_off(policy.module());
    errors.reference = PerSampleMse(
        policy.ForwardList(batch.inputs, batch.timesteps, batch.contexts), batch.targets);
  }
  return errors;
}

namespace {

// Per pair: the four errors, the time point, the pair weight, the noise projections and the
// generator errors (0 when unused, so that every rank sends the same layout).
constexpr size_t kPairFields = 15;

}  // namespace

GlobalPairs GatherPairs(const NoisedPairs &batch, const PairErrors &errors,
                        distributed::Communicator &comm) {
  const int64_t b = static_cast<int64_t>(batch.timepoints.size());
  SDPO_CHECK(b > 0 && batch.weights.size() == batch.timepoints.size() &&
                 errors.policy.shape() == Shape({2 * b}) &&
                 errors.reference.shape() == Shape({2 * b}),
             "GatherPairs: ", b, " pairs need ", b, " weights (found ", batch.weights.size(),
             ") and errors of shape [", 2 * b, "] (winners then losers), found ",
             errors.policy.str(), " and ", errors.reference.str());
  const std::vector<double> pol = errors.policy.ToVector(), ref = errors.reference.ToVector();
  for (const auto *v : {&errors.noise_dot, &errors.generator}) {
    SDPO_CHECK(v->empty() || v->size() == static_cast<size_t>(2 * b), "GatherPairs: ", b,
               " pairs need ", 2 * b, " noise projections / generator errors, found ", v->size());
  }
  const std::vector<double> zeros(2 * b, 0.0);
  const std::vector<double> &nd = errors.noise_dot.empty() ? zeros : errors.noise_dot;
  const std::vector<double> &gen = errors.generator.empty() ? zeros : errors.generator;
  std::vector<double> mine;
  mine.reserve(kPairFields * static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) {
    const TimePoint &tp = batch.timepoints[i];
    mine.insert(mine.end(), {pol[i], pol[b + i], ref[i], ref[b + i], tp.timestep, tp.alpha,
                             tp.sigma, tp.alpha_prev, tp.sigma_prev, static_cast<double>(tp.index),
                             batch.weights[i], nd[i], nd[b + i], gen[i], gen[b + i]});
  }
  const std::vector<double> flat = comm.AllGather(mine);
  GlobalPairs global;
  PairBatch &g = global.batch;
  for (size_t k = 0; k + kPairFields <= flat.size(); k += kPairFields) {
    const double *v = flat.data() + k;
    g.policy_winner.push_back(v[0]);
    g.policy_loser.push_back(v[1]);
    g.reference_winner.push_back(v[2]);
    g.reference_loser.push_back(v[3]);
    TimePoint tp;
    tp.family = batch.timepoints.front().family;
    tp.timestep = v[4];
    tp.alpha = v[5];
    tp.sigma = v[6];
    tp.alpha_prev = v[7];
    tp.sigma_prev = v[8];
    tp.index = static_cast<int>(v[9]);
    g.timepoints.push_back(tp);
    g.pair_weights.push_back(v[10]);
    if (!errors.noise_dot.empty()) {
      g.noise_dot_winner.push_back(v[11]);
      g.noise_dot_loser.push_back(v[12]);
    }
    if (!errors.generator.empty()) {
      g.generator_winner.push_back(v[13]);
      g.generator_loser.push_back(v[14]);
    }
  }
  return global;
}

PreferenceLoss ComputePreferenceLoss(const ObjectiveConfig &config, const GlobalPairs &global,
                                     int64_t offset, const Tensor &policy_errors) {
  const PairBatch &pairs = global.batch;
  const int64_t n = static_cast<int64_t>(pairs.size());
  SDPO_CHECK(policy_errors.dim() == 1 && policy_errors.size(0) % 2 == 0,
             "ComputePreferenceLoss: policy errors must be [2b] (winners then "
             "losers), got ",
             policy_errors.str());
  const int64_t b = policy_errors.size(0) / 2;
  SDPO_CHECK(pairs.policy_winner.size() == pairs.size() &&
                 pairs.policy_loser.size() == pairs.size() &&
                 pairs.reference_winner.size() == pairs.size() &&
                 pairs.reference_loser.size() == pairs.size() && offset >= 0 && offset + b <= n,
             "ComputePreferenceLoss: this rank's ", b, " pairs at offset ", offset,
             " must lie inside the global batch of ", n,
             " pairs with one error of each kind "
             "per pair");
  PreferenceLoss out;
  for (const auto *v : {&pairs.policy_winner, &pairs.policy_loser, &pairs.reference_winner,
                        &pairs.reference_loser}) {
    for (double x : *v) {
      if (!std::isfinite(x)) return out;
    }
  }
  // pairs.pair_weights: each pair's dataset weight scales its term (sdpo/objectives.h).
  out.result = EvaluateObjective(config, pairs);
  if (!std::isfinite(out.result.loss)) return out;
  out.finite = true;

  // loss = <policy_errors, g> + (L - <e, g>): the value is the objective's, and
  // the gradient w.r.t. this rank's errors is exactly the objective's analytic
  // gradient g for its pairs.
  std::vector<double> g(2 * b);
  for (int64_t i = 0; i < b; ++i) {
    g[i] = out.result.grad_policy_winner[offset + i];
    g[b + i] = out.result.grad_policy_loser[offset + i];
  }
  double dot = 0;
  for (int64_t i = 0; i < b; ++i) dot += g[i] * pairs.policy_winner[offset + i];
  for (int64_t i = 0; i < b; ++i) dot += g[b + i] * pairs.policy_loser[offset + i];
  // On the errors' device (the model may run on CUDA).
  Tensor grad =
      ops::To(Tensor::FromVector(g, {2 * b}, policy_errors.dtype()), policy_errors.device());
  Tensor linear = sum(mul(policy_errors, grad));
  out.loss = add(linear, out.result.loss - dot);
  return out;
}

}  // namespace sdpo::trainers
