// One SDPO training step of a Wan2.1 DiT through the trainer's step path
// (trainers/preference_step.h: ComputePairErrors, GatherPairs, ComputePreferenceLoss), on any
// device, then Backward, ClipGradNorm and the AdamW step (LoRA: the reference is the same weights
// with the adapters off; full fine-tuning: a frozen bf16 copy). Device-agnostic (no CUDA
// header): the CUDA benchmark (`cuda_check wan_step`, wan_step_cli.cc) passes its own
// synchronisation hook, and tests/models/wan21/wan_cuda_step_test.cc runs it on the CPU and on
// the emulated CUDA device.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/wan21/config.h"
#include "tensor/tensor.h"

namespace sdpo::bench {

struct WanStepOptions {
  wan21::WanConfig config = wan21::WanConfig::Preset("1.3b");
  Device device = Device::CPU();
  DType compute_dtype = kBF16;  // master weights stay f32
  int64_t frames = 6, height = 60, width = 104;  // latent [in_dim, F, H, W]
  int64_t pairs = 1;                             // batch = 2 * pairs (winners + losers)
  bool lora = false;
  int64_t lora_rank = 64;
  bool recompute = false;
  bool rope_f64 = false;
  // The objective's beta. 1 keeps the log-sigmoid out of saturation: with random weights the
  // policy (bf16 casts of f32 masters) and its frozen bf16 copy differ by rounding only, and
  // beta 500 amplified that into a saturated loss with zero gradients (timing unaffected).
  double beta = 1.0;
  int warmup = 2;
  int steps = 5;
  // > 0: after the first step, timed steps are cut so that the whole run fits (at least 1).
  double budget_s = 0;
  uint64_t seed = 1;
  // After the timed steps, one more step under a KernelProfiler (CUDA only; needs `sync`): its
  // per-kernel table goes to WanStepResult::profile.
  bool profile = false;
  std::function<void()> sync;                  // waits for the device (null: nothing)
  std::function<void(const std::string&)> log;  // progress lines (null: none)
};

// The memory plan of one step, printed before step 0 (bytes): exact for the weights and the
// optimizer state; activations estimated per token and block (bf16 saved tensors: about 18 x dim
// + 2 x ffn_dim elements, calibrated on the Wan2.1-1.3B step measured on an H200, docs/gpu.md).
struct WanMemoryPlan {
  double master = 0;       // f32 weights (trainable and frozen)
  double gradients = 0;    // f32, trainable only
  double moments = 0;      // AdamW exp_avg + exp_avg_sq, f32
  double reference = 0;    // the frozen bf16 copy (full fine-tuning)
  double weight_casts = 0; // bf16 copies of the weights kept for backward (one block with recompute)
  double activations = 0;  // estimate
  double total() const {
    return master + gradients + moments + reference + weight_casts + activations;
  }
  std::string str() const;  // one line, GiB
};
WanMemoryPlan PlanWanStepMemory(const wan21::WanConfig& config, int64_t tokens, int64_t samples,
                                int64_t parameters, int64_t trainable, bool lora, bool recompute);

struct WanStepResult {
  int64_t tokens_per_sample = 0;
  int64_t num_parameters = 0, num_trainable = 0;
  double setup_s = 0;
  std::vector<double> step_s;  // every step, warm-ups included
  int warmup_done = 0;
  std::vector<double> losses, grad_norms;  // every step
  std::vector<std::vector<double>> policy_errors, reference_errors;  // every step, [2 * pairs]
  double median_s = 0, min_s = 0;          // over the timed steps
  std::string profile;                     // the profiled step's table (options.profile)
  WanMemoryPlan plan;                      // printed before step 0
};

// Matmul FLOPs of one Wan forward of one sample (shared/research/models.md section 5).
double WanForwardFlops(const wan21::WanConfig& config, int64_t tokens);
// Model FLOPs of one step: policy 3 x fwd per sample, reference 1 x fwd per sample.
double WanStepFlops(const wan21::WanConfig& config, int64_t tokens, int64_t samples);

WanStepResult RunWanStep(const WanStepOptions& options);

}  // namespace sdpo::bench
