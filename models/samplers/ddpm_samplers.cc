#include "models/samplers/ddpm_samplers.h"

#include <cmath>
#include <utility>

#include "autograd/ops.h"
#include "models/schedules.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace sdpo::samplers {
namespace {

// s * x with s rounded to x's dtype first (torch: f64 0-d tensor times an f32 tensor).
Tensor Scale(const Tensor& x, double s) { return ops::MulScalar(x, s); }

double At(const std::vector<double>& ac, int64_t t) {
  SDPO_CHECK(t >= 0 && t < static_cast<int64_t>(ac.size()), "DDPM sampler: timestep ", t,
             " outside the schedule [0, ", ac.size(), ")");
  return ac[t];
}

// x0 = sqrt(abar) x - sqrt(1 - abar) v.
Tensor PredX0(const Tensor& x, const Tensor& v, double abar) {
  return ops::Sub(Scale(x, std::sqrt(abar)), Scale(ops::Cast(v, x.dtype()), std::sqrt(1 - abar)));
}

void CheckGrid(const std::vector<double>& ac, const DdpmGrid& g) {
  SDPO_CHECK(!g.timesteps.empty() && g.timesteps.size() == g.prev_timesteps.size(),
             "DDPM sampler: the grid needs one prev timestep per timestep");
  for (int64_t t : g.timesteps) At(ac, t);
}

}  // namespace

DdpmGrid CogVideoXTrailingGrid(int steps, int num_train_steps) {
  DdpmGrid g;
  g.timesteps = DdpmTrailingTimesteps(steps, num_train_steps);
  g.prev_timesteps = DdpmTrailingPrevTimesteps(steps, num_train_steps);
  return g;
}

CogVideoXDdimSolver::CogVideoXDdimSolver(std::vector<double> ac, DdpmGrid grid, double final_ac)
    : ac_(std::move(ac)), grid_(std::move(grid)), final_ac_(final_ac) {
  CheckGrid(ac_, grid_);
}

Tensor CogVideoXDdimSolver::Step(const Tensor& v, const Tensor& x) {
  SDPO_CHECK(step_ < grid_.steps(), "CogVideoXDdimSolver: all ", grid_.steps(), " steps are done");
  const int64_t t = grid_.timesteps[step_], prev = grid_.prev_timesteps[step_];
  const double a = At(ac_, t), ap = prev >= 0 ? At(ac_, prev) : final_ac_;
  x0_ = PredX0(x, v, a);
  const double at = std::sqrt((1 - ap) / (1 - a));
  const double bt = std::sqrt(ap) - std::sqrt(a) * at;
  ++step_;
  return ops::Add(Scale(x, at), Scale(x0_, bt));
}

CogVideoXDpmSolver::CogVideoXDpmSolver(std::vector<double> ac, DdpmGrid grid, double final_ac)
    : ac_(std::move(ac)), grid_(std::move(grid)), final_ac_(final_ac) {
  CheckGrid(ac_, grid_);
}

double CogVideoXDpmSolver::Abar(int64_t t) const { return t >= 0 ? At(ac_, t) : final_ac_; }

bool CogVideoXDpmSolver::NeedsSecondDraw() const {
  return step_ > 0 && step_ < grid_.steps() && grid_.prev_timesteps[step_] >= 0;
}

Tensor CogVideoXDpmSolver::Step(const Tensor& v, const Tensor& x, const Tensor& noise) {
  SDPO_CHECK(step_ < grid_.steps(), "CogVideoXDpmSolver: all ", grid_.steps(), " steps are done");
  SDPO_CHECK(noise.defined() && noise.shape() == x.shape(), "CogVideoXDpmSolver: noise ",
             noise.defined() ? noise.str() : "undefined", " must have the shape of x ", x.str());
  const int64_t t = grid_.timesteps[step_], prev = grid_.prev_timesteps[step_];
  const double a = Abar(t), ap = Abar(prev);
  auto lambda = [](double ab) { return std::log(std::sqrt(ab / (1 - ab))); };
  const double lam = lambda(a), lam_next = lambda(ap);
  const double h = lam_next - lam;
  const double m1 = std::sqrt((1 - ap) / (1 - a)) * std::exp(-h);
  const double m2 = std::expm1(-2 * h) * std::sqrt(ap);
  const double mn = std::sqrt(1 - ap) * std::sqrt(1 - std::exp(-2 * h));
  Tensor x0 = PredX0(x, v, a);
  Tensor nz = ops::Cast(noise, x.dtype());
  Tensor d = x0;
  if (step_ > 0 && prev >= 0 && old_x0_.defined()) {
    const double lam_prev = lambda(Abar(grid_.timesteps[step_ - 1]));
    const double r = (lam - lam_prev) / h;
    const double inv = 1 / (2 * r);
    d = ops::Sub(Scale(x0, 1 + inv), Scale(old_x0_, inv));
  }
  Tensor out = ops::Add(ops::Sub(Scale(x, m1), Scale(d, m2)), Scale(nz, mn));
  x0_ = x0;
  old_x0_ = x0;
  ++step_;
  return out;
}

Tensor SampleDdpm(models::DiffusionModel& model, const std::vector<double>& alphas_cumprod,
                  const std::vector<Tensor>& noise, const std::vector<Tensor>& contexts,
                  const std::vector<Tensor>& null_contexts, const DdpmSampleOptions& options) {
  SDPO_CHECK(model.family() == ScheduleFamily::kDdpm, "SampleDdpm: the model's family is \"",
             ScheduleFamilyName(model.family()), "\", expected \"ddpm\"");
  const int64_t b = static_cast<int64_t>(noise.size());
  SDPO_CHECK(b > 0 && static_cast<int64_t>(contexts.size()) == b, "SampleDdpm: ", b,
             " noise tensors need as many contexts, got ", contexts.size());
  const bool guide = options.guidance_scale != 1.0;
  SDPO_CHECK(!guide || static_cast<int64_t>(null_contexts.size()) == b,
             "SampleDdpm: guidance_scale ", options.guidance_scale, " needs ", b,
             " null contexts, got ", null_contexts.size());
  NoGradGuard no_grad;
  const DdpmGrid grid = CogVideoXTrailingGrid(options.steps);
  CogVideoXDdimSolver ddim(alphas_cumprod, grid);
  CogVideoXDpmSolver dpm(alphas_cumprod, grid);
  Tensor x = b == 1 ? ops::Unsqueeze(noise[0], 0) : ops::Stack(noise, 0);
  for (int i = 0; i < grid.steps(); ++i) {
    const double t = static_cast<double>(grid.timesteps[i]);
    std::vector<Tensor> xs;
    for (int64_t j = 0; j < b; ++j) xs.push_back(ops::Select(x, 0, j));
    Tensor tt = Tensor::FromVector(std::vector<double>(b, t), {b}, kF32);
    Tensor v = ops::Cast(model.Forward(xs, tt, contexts), x.dtype());
    if (guide) {
      Tensor vu = ops::Cast(model.Forward(xs, tt, null_contexts), x.dtype());
      v = ops::Add(vu, ops::MulScalar(ops::Sub(v, vu), options.guidance_scale));
    }
    if (options.solver == DdpmSolver::kDdim) {
      x = ddim.Step(v, x);
    } else {
      // Step i draws counters [(i + 1) n, (i + 2) n): disjoint from every other step's and from
      // the initial noise callers draw at [0, n) from the same seed.
      const uint64_t n_x = static_cast<uint64_t>(x.numel());
      Tensor n = ops::RandomNormal(x.shape(), options.noise_seed,
                                   (static_cast<uint64_t>(i) + 1) * n_x, x.dtype(), x.device());
      x = dpm.Step(v, x, n);
    }
    if (options.on_step) options.on_step(i, grid.steps());
  }
  return x;
}

}  // namespace sdpo::samplers
