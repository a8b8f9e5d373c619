// Flow-matching samplers for any models::DiffusionModel of family "flow" (Wan2.1): flow-Euler
// and the official UniPC (Wan2.1 `FlowUniPCMultistepScheduler`: bh2, solver order 2,
// predict-x0, predictor-corrector, lower order at the final step), on the official shifted
// sigma grid with truncated integer model timesteps (models/schedules.h WanUniPcSigmas /
// WanUniPcTimesteps), with classifier-free guidance.
//
// Conventions (official): x_s = (1 - s) x0 + s eps, the model predicts v = eps - x0 at the
// timestep int64(1000 s); the sigmas the solvers use are the float32 values the official
// scheduler holds; x0 = x - s v.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/diffusion_model.h"
#include "tensor/tensor.h"

namespace sdpo::samplers {

// The sampling grid: sigmas [steps + 1] (float32 values, terminal 0) and the model timesteps
// [steps] (int64(1000 sigma), truncated).
struct FlowGrid {
  std::vector<float> sigmas;
  std::vector<int64_t> timesteps;
  int steps() const { return static_cast<int>(timesteps.size()); }
};
// The official UniPC grid: shift(linspace(0.999, 0, steps + 1)[:-1]) and a terminal 0.
FlowGrid WanFlowGrid(int steps, double shift);

// One sample's flow-Euler integration: x_{k+1} = x_k + (s_{k+1} - s_k) v_k (the difference of
// the float32 sigmas taken in float32).
class FlowEulerSolver {
 public:
  explicit FlowEulerSolver(FlowGrid grid) : grid_(std::move(grid)) {}
  // Step `step_index()`: v is the model output at (x, sigmas[step_index()]).
  Tensor Step(const Tensor& v, const Tensor& x);
  int step_index() const { return step_; }
  const FlowGrid& grid() const { return grid_; }

 private:
  FlowGrid grid_;
  int step_ = 0;
};

// One sample's UniPC state (official FlowUniPCMultistepScheduler.step semantics: the corrector
// for the previous step runs at the start of a step on the fresh model output, then the
// predictor; the returned x is what the model sees next; the final step (order 1, to sigma 0)
// returns the x0 prediction). Scalar coefficients are computed in f64 from the float32 sigmas;
// tensor arithmetic runs in the tensors' dtype.
class FlowUniPcSolver {
 public:
  explicit FlowUniPcSolver(FlowGrid grid, int solver_order = 2, bool lower_order_final = true);
  Tensor Step(const Tensor& v, const Tensor& x);
  int step_index() const { return step_; }
  const FlowGrid& grid() const { return grid_; }

 private:
  double Lambda(int index) const;  // log(alpha / sigma) at grid point `index` (+inf at sigma 0)
  Tensor Predictor(const Tensor& x, int order) const;
  // Corrects the previous step's predictor output with the fresh x0 prediction model_t.
  Tensor Corrector(const Tensor& model_t, const Tensor& last_x, int order) const;

  FlowGrid grid_;
  int order_;
  bool lower_order_final_;
  int step_ = 0;
  int lower_order_nums_ = 0;
  int this_order_ = 0;
  std::vector<Tensor> model_outputs_;  // x0 predictions, newest last
  Tensor last_sample_;
};

enum class FlowSolver { kEuler, kUniPc };
const char* FlowSolverName(FlowSolver solver);  // "euler" | "unipc"
FlowSolver ParseFlowSolver(const std::string& name);

struct FlowSampleOptions {
  FlowSolver solver = FlowSolver::kUniPc;
  int steps = 50;      // official T2V default
  double shift = 5.0;  // official T2V default
  // v = v_uncond + g (v_cond - v_uncond); 1 runs the conditional pass only.
  double guide_scale = 5.0;
  // Run the conditional and unconditional passes as one batch (else two forwards, as the
  // official pipeline does; the results agree to float rounding).
  bool batch_guidance = true;
  // Called after each step with (step index, steps).
  std::function<void(int, int)> on_step;
};

// What the model saw and returned at each step ([step][sample]); x has steps + 1 entries (the
// last is the final sample). v is the guided output; v_cond / v_uncond are filled with guidance.
struct FlowTrace {
  std::vector<std::vector<Tensor>> x, v, v_cond, v_uncond;
};

// Samples one latent per noise tensor (any sizes; the model's ForwardList pads them). contexts
// are per sample; null_contexts (the negative prompt's embedding) are needed when
// guide_scale != 1. Runs without gradients. Returns the final samples.
std::vector<Tensor> SampleFlow(models::DiffusionModel& model, const std::vector<Tensor>& noise,
                               const std::vector<Tensor>& contexts,
                               const std::vector<Tensor>& null_contexts,
                               const FlowSampleOptions& options, FlowTrace* trace = nullptr);

}  // namespace sdpo::samplers
