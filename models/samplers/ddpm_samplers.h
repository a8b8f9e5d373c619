// DDPM samplers of CogVideoX for any models::DiffusionModel of family "ddpm" (v-prediction):
// diffusers `CogVideoXDDIMScheduler` (deterministic; eta is ignored, as there) and
// `CogVideoXDPMScheduler` (DPM-Solver++(2M) SDE, stochastic), on the "trailing" timestep grid.
//
// Conventions (diffusers): the step from t goes to prev = t - T / steps (integer division), which
// is not the next listed timestep when T % steps != 0; abar_prev = final_alpha_cumprod (1 with
// set_alpha_to_one) only when prev < 0. x0 = sqrt(abar_t) x - sqrt(1 - abar_t) v. Scalar
// coefficients are computed in f64 and rounded to the samples' dtype before each multiply, as
// torch does for a float64 0-d tensor times a float32 tensor. At t with abar_t = 0 (zero
// terminal SNR) the DPM multipliers take their limits (0, -sqrt(abar_prev), sqrt(1 - abar_prev))
// without NaN.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "models/diffusion_model.h"
#include "tensor/tensor.h"

namespace sdpo::samplers {

// Inference grid: timesteps (noisiest first) and the prev timesteps the steps use.
struct DdpmGrid {
  std::vector<int64_t> timesteps, prev_timesteps;
  int steps() const { return static_cast<int>(timesteps.size()); }
};
// round(arange(T, 0, -T / steps)) - 1 (half to even) and t - T / steps.
DdpmGrid CogVideoXTrailingGrid(int steps, int num_train_steps = 1000);

// One sample's DDIM integration.
class CogVideoXDdimSolver {
 public:
  CogVideoXDdimSolver(std::vector<double> alphas_cumprod, DdpmGrid grid,
                      double final_alpha_cumprod = 1.0);
  // Step `step_index()`: v is the model output at (x, timesteps[step_index()]). Returns x_prev.
  Tensor Step(const Tensor& v, const Tensor& x);
  const Tensor& pred_original_sample() const { return x0_; }
  int step_index() const { return step_; }
  int64_t timestep() const { return grid_.timesteps.at(step_); }
  const DdpmGrid& grid() const { return grid_; }

 private:
  std::vector<double> ac_;
  DdpmGrid grid_;
  double final_ac_;
  int step_ = 0;
  Tensor x0_;
};

// One sample's DPM-Solver++(2M) SDE integration. The caller passes the Gaussian noise each step
// uses (diffusers draws one tensor per step, and a second one, the one used, on second-order
// steps; NeedsSecondDraw says which).
class CogVideoXDpmSolver {
 public:
  CogVideoXDpmSolver(std::vector<double> alphas_cumprod, DdpmGrid grid,
                     double final_alpha_cumprod = 1.0);
  Tensor Step(const Tensor& v, const Tensor& x, const Tensor& noise);
  // Whether the current step runs the second-order branch (step > 0 and prev >= 0).
  bool NeedsSecondDraw() const;
  const Tensor& pred_original_sample() const { return x0_; }
  int step_index() const { return step_; }
  int64_t timestep() const { return grid_.timesteps.at(step_); }
  const DdpmGrid& grid() const { return grid_; }

 private:
  double Abar(int64_t t) const;
  std::vector<double> ac_;
  DdpmGrid grid_;
  double final_ac_;
  int step_ = 0;
  Tensor x0_, old_x0_;
};

enum class DdpmSolver { kDdim, kDpm };

struct DdpmSampleOptions {
  DdpmSolver solver = DdpmSolver::kDdim;
  int steps = 50;
  // v = v_uncond + g (v_cond - v_uncond); 1 runs the conditional pass only.
  double guidance_scale = 6.0;
  uint64_t noise_seed = 0;  // DPM noise (ops::RandomNormal, counter-based)
  std::function<void(int, int)> on_step;
};

// Samples latents (all of one shape) from initial noise with a DiffusionModel of family "ddpm"
// and a schedule's alphas_cumprod. Runs without gradients. Returns [B, ...latent shape].
Tensor SampleDdpm(models::DiffusionModel& model, const std::vector<double>& alphas_cumprod,
                  const std::vector<Tensor>& noise, const std::vector<Tensor>& contexts,
                  const std::vector<Tensor>& null_contexts, const DdpmSampleOptions& options);

}  // namespace sdpo::samplers
