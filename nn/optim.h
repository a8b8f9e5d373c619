// Optimisers (AdamW, SGD with momentum) and training utilities: global gradient-norm clipping,
// gradient scaling and accumulation.
//
// Optimisers update the master parameters (f32; f64 in tests) in place from their .grad.
// Their state (per-parameter step and moments, f32 or f64 like the master) is a TensorMap
// keyed by parameter name, so a run resumes exactly:
//   "step"                  i64 scalar: number of Step() calls
//   "<param>.step"          i64 scalar: updates applied to that parameter
//   "<param>.exp_avg"       AdamW first moment      (shape of the parameter)
//   "<param>.exp_avg_sq"    AdamW second moment
//   "<param>.momentum_buffer"  SGD momentum
// A trainer checkpoint stores it next to the model's tensors under an "optimizer." prefix.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"

namespace sdpo::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Optimizer {
 public:
  // `params`: name -> parameter (e.g. module.NamedTrainableParameters()); names are unique.
  Optimizer(NamedTensors params, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient; parameters without one are skipped
  // (their state does not advance). Runs without recording a graph.
  void Step();
  void ZeroGrad();  // drops the parameters' gradients

  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  int64_t step() const { return step_; }
  int64_t num_params() const { return static_cast<int64_t>(states_.size()); }

  // The live state (tensors shared, not copied). See the key layout above.
  TensorMap StateDict() const;
  // Restores state saved by StateDict (values converted to the state dtype). strict: unknown
  // keys, or a parameter with steps but no moments, are errors naming the keys.
  void LoadStateDict(const TensorMap& state, bool strict = true);

 protected:
  struct ParamState {
    std::string name;
    Tensor param;
    int64_t step = 0;
    std::vector<Tensor> slots;  // one per SlotNames() entry, undefined until first used
  };
  // Per-parameter state tensors, in the order of `slots`.
  virtual std::vector<std::string> SlotNames() const = 0;
  // Updates s.param from grad (already in the state dtype, contiguous); s.step was incremented.
  virtual void Update(ParamState& s, const Tensor& grad) = 0;
  // f64 for f64 parameters, else f32.
  static DType StateDType(const Tensor& param);
  Tensor& Slot(ParamState& s, size_t i);  // created as zeros on first use

  std::vector<ParamState> states_;
  double lr_;
  int64_t step_ = 0;
};

struct AdamWOptions {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
  // Which parameters decay (by name); null: all.
  std::function<bool(const std::string&)> decays;
  // One fused update per tensor: a loop on the CPU, the device's kernel elsewhere (f32; see
  // Kernels::FusedAdamW). false: the device-generic tensor-op path.
  bool fused = true;
};

// AdamW (Loshchilov & Hutter; PyTorch's update):
//   p <- p * (1 - lr * wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
class AdamW : public Optimizer {
 public:
  AdamW(NamedTensors params, const AdamWOptions& options = {});
  const AdamWOptions& options() const { return options_; }

 protected:
  std::vector<std::string> SlotNames() const override { return {"exp_avg", "exp_avg_sq"}; }
  void Update(ParamState& s, const Tensor& grad) override;

 private:
  AdamWOptions options_;
};

// One fused CPU AdamW update of n contiguous f32 elements whose parameter has had `step` (>= 1)
// updates, decayed or not: the arithmetic AdamW::Step applies to a CPU f32 tensor, element for
// element. For optimisers with their own state layout (ZeRO-1 shards, trainers/distributed/zero.h).
void AdamWUpdate(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                 const AdamWOptions& options, double lr, int64_t step, bool decay);

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;  // L2, added to the gradient (PyTorch SGD)
  bool nesterov = false;
};

// PyTorch's SGD: g <- g + wd p; b <- g (first step) or momentum b + (1 - dampening) g;
// g <- nesterov ? g + momentum b : b; p <- p - lr g.
class SGD : public Optimizer {
 public:
  SGD(NamedTensors params, const SGDOptions& options = {});

 protected:
  std::vector<std::string> SlotNames() const override { return {"momentum_buffer"}; }
  void Update(ParamState& s, const Tensor& grad) override;

 private:
  SGDOptions options_;
};

// The L2 norm of all gradients together (accumulated in f64); parameters without a gradient
// count as zero.
double GradNorm(const std::vector<Tensor>& params);

// Global gradient-norm clipping: when the norm exceeds max_norm, every gradient is scaled by
// max_norm / (norm + 1e-6). Returns the norm before clipping. A non-finite norm leaves the
// gradients untouched (the caller should skip the step).
double ClipGradNorm(const std::vector<Tensor>& params, double max_norm);

// Multiplies every gradient by `factor` in place.
void ScaleGrads(const std::vector<Tensor>& params, double factor);

// Gradient accumulation over micro-batches: scale each micro-batch loss by loss_scale() (so
// the accumulated gradient is the mean), call Backward, then Tick(); step the optimiser (and
// zero the gradients) when Tick() returns true. Gradients accumulate in .grad by themselves.
class GradAccumulator {
 public:
  explicit GradAccumulator(int64_t micro_steps);
  double loss_scale() const { return 1.0 / static_cast<double>(micro_steps_); }
  bool Tick();
  int64_t micro_step() const { return count_; }  // micro-batches done in the current step
  int64_t micro_steps() const { return micro_steps_; }

 private:
  int64_t micro_steps_;
  int64_t count_ = 0;
};

}  // namespace sdpo::nn
