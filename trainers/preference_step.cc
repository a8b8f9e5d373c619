#include "trainers/preference_step.h"

#include "tensor/ops.h"

namespace sdpo::trainers {

NoisedPairs NoisePairs(const PairTensors& pairs, const std::vector<TimePoint>& timepoints,
                       const std::vector<Tensor>& noise, PredictionType target) {
  const size_t b = pairs.size();
  SDPO_CHECK(b > 0 && pairs.losers.size() == b && pairs.contexts.size() == b &&
                 timepoints.size() == b && noise.size() == b,
             "NoisePairs: ", b, " winners need as many losers (", pairs.losers.size(),
             "), contexts (", pairs.contexts.size(), "), timepoints (", timepoints.size(),
             ") and noise tensors (", noise.size(), ")");
  NoisedPairs out;
  out.timepoints = timepoints;
  std::vector<double> steps(2 * b);
  out.inputs.resize(2 * b);
  out.targets.resize(2 * b);
  out.contexts.resize(2 * b);
  for (size_t half = 0; half < 2; ++half) {
    const std::vector<Tensor>& x0s = half == 0 ? pairs.winners : pairs.losers;
    for (size_t i = 0; i < b; ++i) {
      const Tensor& x0 = x0s[i];
      SDPO_CHECK(x0.shape() == noise[i].shape() && x0.shape() == pairs.winners[i].shape(),
                 "NoisePairs: pair ", i, " winner ", pairs.winners[i].str(), ", loser ",
                 pairs.losers[i].str(), " and noise ", noise[i].str(), " must share a shape");
      const TargetMap noising = NoisingMap(timepoints[i]);
      const TargetMap tgt = TargetOf(timepoints[i], target);
      auto combine = [&](const TargetMap& m) {
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

Tensor PerSampleMse(const std::vector<Tensor>& preds, const std::vector<Tensor>& targets) {
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

PreferenceLoss ComputePreferenceLoss(const ObjectiveConfig& config,
                                     const std::vector<TimePoint>& timepoints,
                                     const Tensor& policy_errors,
                                     const Tensor& reference_errors) {
  const int64_t b = static_cast<int64_t>(timepoints.size());
  SDPO_CHECK(policy_errors.shape() == Shape({2 * b}) && reference_errors.shape() == Shape({2 * b}),
             "ComputePreferenceLoss: errors must be [", 2 * b, "] (winners then losers), got ",
             policy_errors.str(), " and ", reference_errors.str());
  std::vector<double> pol = policy_errors.ToVector(), ref = reference_errors.ToVector();
  PreferenceLoss out;
  out.batch.timepoints = timepoints;
  out.batch.policy_winner.assign(pol.begin(), pol.begin() + b);
  out.batch.policy_loser.assign(pol.begin() + b, pol.end());
  out.batch.reference_winner.assign(ref.begin(), ref.begin() + b);
  out.batch.reference_loser.assign(ref.begin() + b, ref.end());
  out.result = EvaluateObjective(config, out.batch);

  // loss = <policy_errors, g> + (L - <e, g>): the value is the objective's, and the gradient
  // w.r.t. the errors is exactly the objective's analytic gradient g.
  std::vector<double> g(2 * b);
  double dot = 0;
  for (int64_t i = 0; i < b; ++i) {
    g[i] = out.result.grad_policy_winner[i];
    g[b + i] = out.result.grad_policy_loser[i];
  }
  for (int64_t i = 0; i < 2 * b; ++i) dot += g[i] * pol[i];
  // On the errors' device (the model may run on CUDA).
  Tensor grad = ops::To(Tensor::FromVector(g, {2 * b}, policy_errors.dtype()),
                        policy_errors.device());
  Tensor linear = sum(mul(policy_errors, grad));
  out.loss = add(linear, out.result.loss - dot);
  return out;
}

}  // namespace sdpo::trainers
