#include "bench/cuda/wan_step.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "models/schedules.h"
#include "models/wan21/model.h"
#include "nn/init.h"
#include "nn/lora.h"
#include "nn/optim.h"
#include "sdpo/objectives.h"
#include "tensor/kernel_profiler.h"
#include "tensor/ops.h"
#include "trainers/preference_step.h"

namespace sdpo::bench {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Cheap random weights drawn on the device (Philox: the same values on every device):
// 1-D norm weights 1 + 0.1 N, other 1-D tensors 0.02 N, the rest N / sqrt(fan_in).
void RandomizeParameters(nn::Module& m, uint64_t seed) {
  uint64_t s = seed * 1000003;
  for (auto& [name, p] : m.NamedParameters()) {
    const Shape& shape = p.shape();
    Tensor r = ops::RandomNormal(shape, s++, 0, p.dtype(), p.device());
    if (shape.size() <= 1) {
      const bool norm = name.find("norm") != std::string::npos;
      r = norm ? ops::AddScalar(ops::MulScalar(r, 0.1), 1.0) : ops::MulScalar(r, 0.02);
    } else {
      const double fan_in = static_cast<double>(p.numel()) / static_cast<double>(shape[0]);
      r = ops::MulScalar(r, 1.0 / std::sqrt(std::max(1.0, fan_in)));
    }
    ops::CopyInto(p, r);
  }
}

}  // namespace

std::string WanMemoryPlan::str() const {
  char b[320];
  const double g = 1024.0 * 1024.0 * 1024.0;
  std::snprintf(b, sizeof(b),
                "memory plan: master f32 %.1f + gradients %.1f + AdamW moments %.1f + reference "
                "bf16 %.1f + bf16 weight copies %.1f + activations ~%.1f (estimate) = ~%.1f GiB",
                master / g, gradients / g, moments / g, reference / g, weight_casts / g,
                activations / g, total() / g);
  return b;
}

WanMemoryPlan PlanWanStepMemory(const wan21::WanConfig& c, int64_t tokens, int64_t samples,
                                int64_t parameters, int64_t trainable, bool lora,
                                bool recompute) {
  WanMemoryPlan p;
  const double n = static_cast<double>(parameters), t = static_cast<double>(trainable);
  const double blocks = static_cast<double>(c.num_layers);
  p.master = 4 * n;
  p.gradients = 4 * t;
  p.moments = 8 * t;
  p.reference = lora ? 0.0 : 2 * n;
  // Every Linear saves the bf16 copy of its weight for the backward pass.
  p.weight_casts = 2 * n * (recompute ? 1.0 / blocks : 1.0);
  const double per_token_block =
      2.0 * (18.0 * static_cast<double>(c.dim) + 2.0 * static_cast<double>(c.ffn_dim));
  const double rows = static_cast<double>(tokens) * static_cast<double>(samples);
  // With recompute: every block's input (bf16) plus one block's saved tensors.
  p.activations = recompute ? rows * (blocks * 2.0 * static_cast<double>(c.dim) + per_token_block)
                            : rows * blocks * per_token_block;
  return p;
}

double WanForwardFlops(const wan21::WanConfig& c, int64_t tokens) {
  const double L = static_cast<double>(tokens), Lt = static_cast<double>(c.text_len);
  const double d = static_cast<double>(c.dim), ffn = static_cast<double>(c.ffn_dim);
  const double patch = static_cast<double>(c.patch_size[0] * c.patch_size[1] * c.patch_size[2]);
  const double per_block = 8 * L * d * d + 4 * L * L * d              // self-attention
                           + 4 * L * d * d + 4 * Lt * d * d + 4 * L * Lt * d  // cross-attention
                           + 4 * L * d * ffn;                          // FFN
  return static_cast<double>(c.num_layers) * per_block +
         2 * L * patch * static_cast<double>(c.in_dim) * d +
         2 * L * d * static_cast<double>(c.patch_out()) +
         2 * Lt * (static_cast<double>(c.text_dim) * d + d * d);
}

double WanStepFlops(const wan21::WanConfig& c, int64_t tokens, int64_t samples) {
  return 4.0 * static_cast<double>(samples) * WanForwardFlops(c, tokens);
}

WanStepResult RunWanStep(const WanStepOptions& o) {
  auto log = [&](const std::string& s) {
    if (o.log) o.log(s);
  };
  auto sync = [&] {
    if (o.sync) o.sync();
  };
  const wan21::WanConfig& c = o.config;
  WanStepResult res;
  const double t_setup = Now();

  // --- models -------------------------------------------------------------------------------
  std::unique_ptr<wan21::WanModel> policy, reference;
  {
    nn::SkipInitGuard skip;
    policy = std::make_unique<wan21::WanModel>(c);
  }
  policy->ToDevice(o.device);
  RandomizeParameters(*policy, o.seed);
  policy->SetComputeDType(o.compute_dtype);
  policy->SetRopeF64(o.rope_f64);
  policy->SetRecompute(o.recompute);
  if (o.lora) {
    policy->SetRequiresGrad(false);
    nn::LoraConfig lc;
    lc.rank = o.lora_rank;
    lc.alpha = static_cast<double>(o.lora_rank);
    lc.targets = {"blocks.*.self_attn.{q,k,v,o}", "blocks.*.cross_attn.{q,k,v,o}",
                  "blocks.*.ffn.{0,2}"};
    nn::AttachLora(*policy, lc);
    policy->ToDevice(o.device);  // adapters are created on the CPU
    // lora_B starts at zero; give it values so that the adapters change the output.
    uint64_t s = o.seed * 7919 + 17;
    for (auto& [name, p] : policy->NamedTrainableParameters()) {
      ops::CopyInto(p, ops::MulScalar(ops::RandomNormal(p.shape(), s++, 0, p.dtype(), p.device()),
                                      0.01));
    }
  } else {
    {
      nn::SkipInitGuard skip;
      reference = std::make_unique<wan21::WanModel>(c);
    }
    reference->ToDevice(o.device);
    reference->CastParameters(o.compute_dtype);
    reference->SetComputeDType(o.compute_dtype);
    reference->SetRopeF64(o.rope_f64);
    reference->LoadStateDict(policy->StateDict());
    reference->SetRequiresGrad(false);
  }
  res.num_parameters = policy->NumParameters();
  res.num_trainable = policy->NumParameters(/*trainable_only=*/true);
  auto named = policy->NamedTrainableParameters();
  std::vector<Tensor> params;
  for (auto& np : named) params.push_back(np.second);
  nn::AdamWOptions ao;
  ao.lr = 1e-5;
  nn::AdamW optimizer(named, ao);

  // --- data (on the device) -----------------------------------------------------------------
  trainers::PairTensors pairs;
  std::vector<TimePoint> tps;
  std::vector<Tensor> noise;
  NoiseSchedule schedule = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  const Shape latent = {c.in_dim, o.frames, o.height, o.width};
  const int64_t latent_numel = c.in_dim * o.frames * o.height * o.width;
  uint64_t ds = o.seed * 31 + 5;
  for (int64_t i = 0; i < o.pairs; ++i) {
    pairs.winners.push_back(ops::RandomNormal(latent, ds, 0, kF32, o.device));
    pairs.losers.push_back(ops::RandomNormal(latent, ds, latent_numel, kF32, o.device));
    pairs.contexts.push_back(
        ops::MulScalar(ops::RandomNormal({c.text_len, c.text_dim}, ds + 1, 0, kF32, o.device), 0.1));
    pairs.weights.push_back(1.0);
    noise.push_back(ops::RandomNormal(latent, ds + 2, 0, kF32, o.device));
    tps.push_back(schedule.At(static_cast<int>((300 + 400 * i) % 1000)));
    ds += 3;
  }
  trainers::NoisedPairs batch = trainers::NoisePairs(pairs, tps, noise, PredictionType::kV);
  res.tokens_per_sample = (o.frames / c.patch_size[0]) * (o.height / c.patch_size[1]) *
                          (o.width / c.patch_size[2]);
  ObjectiveConfig objective;  // SDPO, the trainer's default
  distributed::LocalCommunicator comm(o.device);  // one process: the global batch is this one
  objective.beta = o.beta;
  sync();
  res.setup_s = Now() - t_setup;
  log("setup " + std::to_string(res.setup_s) + " s, parameters " +
      std::to_string(res.num_parameters) + " (trainable " + std::to_string(res.num_trainable) +
      "), tokens/sample " + std::to_string(res.tokens_per_sample));
  res.plan = PlanWanStepMemory(c, res.tokens_per_sample, 2 * o.pairs, res.num_parameters,
                               res.num_trainable, o.lora, o.recompute);
  log(res.plan.str());

  // --- steps --------------------------------------------------------------------------------
  // One step; appends its time, loss, gradient norm and errors to res.
  auto run_step = [&] {
    sync();
    const double t0 = Now();
    optimizer.ZeroGrad();
    const trainers::PairErrors errors =
        trainers::ComputePairErrors(*policy, reference.get(), batch);
    const trainers::GlobalPairs global = trainers::GatherPairs(batch, errors, comm);
    const trainers::PreferenceLoss loss =
        trainers::ComputePreferenceLoss(objective, global, /*offset=*/0, errors.policy);
    SDPO_CHECK(loss.finite, "RunWanStep: non-finite errors or loss");
    Backward(loss.loss);
    const double grad_norm = nn::ClipGradNorm(params, 1.0);
    optimizer.Step();
    optimizer.ZeroGrad();
    sync();
    const double dt = Now() - t0;
    res.step_s.push_back(dt);
    res.losses.push_back(loss.result.loss);
    res.grad_norms.push_back(grad_norm);
    const PairBatch& seen = global.batch;
    res.policy_errors.push_back(seen.policy_winner);
    res.policy_errors.back().insert(res.policy_errors.back().end(), seen.policy_loser.begin(),
                                    seen.policy_loser.end());
    res.reference_errors.push_back(seen.reference_winner);
    res.reference_errors.back().insert(res.reference_errors.back().end(),
                                       seen.reference_loser.begin(), seen.reference_loser.end());
  };
  int total = o.warmup + o.steps;
  for (int step = 0; step < total; ++step) {
    run_step();
    const double dt = res.step_s.back();
    log("step " + std::to_string(step + 1) + "/" + std::to_string(total) +
        (step < o.warmup ? " (warm-up)" : "") + ": " + std::to_string(dt) + " s, loss " +
        std::to_string(res.losses.back()) + ", grad norm " + std::to_string(res.grad_norms.back()));
    if (step == 0 && o.budget_s > 0) {
      const double left = o.budget_s - res.setup_s - dt;
      const int fit = static_cast<int>(left / std::max(dt, 1e-6)) - 1;
      const int timed = std::max(1, std::min(o.steps, fit - (o.warmup - 1)));
      const int warm = std::max(1, std::min(o.warmup, fit - timed));
      if (warm + timed < total) {
        total = warm + timed;
        log("budget: " + std::to_string(warm) + " warm-up + " + std::to_string(timed) +
            " timed steps");
      }
      res.warmup_done = warm;
    }
  }
  if (o.budget_s <= 0) res.warmup_done = o.warmup;
  std::vector<double> timed(res.step_s.begin() + std::min<size_t>(res.warmup_done,
                                                                    res.step_s.size() - 1),
                            res.step_s.end());
  std::sort(timed.begin(), timed.end());
  res.median_s = timed.size() % 2 ? timed[timed.size() / 2]
                                  : 0.5 * (timed[timed.size() / 2 - 1] + timed[timed.size() / 2]);
  res.min_s = timed.front();
  if (o.profile) {
    SDPO_CHECK(o.sync != nullptr, "RunWanStep: profile needs a sync hook");
    KernelProfiler profiler(o.sync);
    run_step();
    res.profile = profiler.Report(res.step_s.back());
    res.step_s.pop_back();  // the profiled step is slower: not a timed step
  }
  return res;
}

}  // namespace sdpo::bench
