#include "models/samplers/flow_samplers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "autograd/grad_mode.h"
#include "models/schedules.h"
#include "tensor/ops.h"

namespace sdpo::samplers {
namespace {

// a * x + b * y (b * y omitted when y is undefined), in x's dtype.
Tensor Axpby(double a, const Tensor& x, double b, const Tensor& y) {
  Tensor out = ops::MulScalar(x, a);
  if (y.defined()) out = ops::Sub(out, ops::MulScalar(y, -b));
  return out;
}

}  // namespace

FlowGrid WanFlowGrid(int steps, double shift) {
  SDPO_CHECK(steps >= 1, "WanFlowGrid: steps must be >= 1, got ", steps);
  SDPO_CHECK(shift > 0, "WanFlowGrid: shift must be positive, got ", shift);
  FlowGrid g;
  for (double s : WanUniPcSigmas(steps, shift)) g.sigmas.push_back(static_cast<float>(s));
  g.timesteps = WanUniPcTimesteps(steps, shift);
  return g;
}

// ----------------------------------------------------------------------------- Euler

Tensor FlowEulerSolver::Step(const Tensor& v, const Tensor& x) {
  SDPO_CHECK(step_ < grid_.steps(), "FlowEulerSolver: all ", grid_.steps(), " steps are done");
  SDPO_CHECK(v.shape() == x.shape(), "FlowEulerSolver: v ", v.str(), " vs x ", x.str());
  const float dt = grid_.sigmas[step_ + 1] - grid_.sigmas[step_];
  ++step_;
  return ops::Add(x, ops::MulScalar(ops::Cast(v, x.dtype()), dt));
}

// ----------------------------------------------------------------------------- UniPC

FlowUniPcSolver::FlowUniPcSolver(FlowGrid grid, int solver_order, bool lower_order_final)
    : grid_(std::move(grid)),
      order_(solver_order),
      lower_order_final_(lower_order_final),
      model_outputs_(solver_order) {
  SDPO_CHECK(solver_order == 1 || solver_order == 2,
             "FlowUniPcSolver: solver order 1 or 2 is implemented, got ", solver_order);
  SDPO_CHECK(grid_.steps() >= 1 && grid_.sigmas.size() == grid_.timesteps.size() + 1,
             "FlowUniPcSolver: the grid needs steps + 1 sigmas");
}

double FlowUniPcSolver::Lambda(int index) const {
  const double sigma = grid_.sigmas[index];
  if (sigma == 0.0) return std::numeric_limits<double>::infinity();
  return std::log(1.0 - sigma) - std::log(sigma);
}

Tensor FlowUniPcSolver::Predictor(const Tensor& x, int order) const {
  const int k = step_;
  const double sigma_t = grid_.sigmas[k + 1], sigma_s0 = grid_.sigmas[k];
  const double alpha_t = 1.0 - sigma_t;
  const double lambda_t = Lambda(k + 1), lambda_s0 = Lambda(k);
  const double h = lambda_t - lambda_s0;
  const Tensor& m0 = model_outputs_.back();
  const double hh = -h;
  const double h_phi_1 = std::expm1(hh);  // -1 at the final step (sigma_t = 0)
  const double b_h = std::expm1(hh);      // bh2
  Tensor out = Axpby(sigma_t / sigma_s0, x, -alpha_t * h_phi_1, m0);
  if (order == 2) {
    const double rk = (Lambda(k - 1) - lambda_s0) / h;
    const Tensor& m1 = model_outputs_[model_outputs_.size() - 2];
    Tensor d1 = ops::Div(ops::Sub(m1, m0), ops::ScalarLike(rk, m0));
    // rhos_p = [0.5] (the official simplified order-2 predictor)
    out = ops::Sub(out, ops::MulScalar(ops::MulScalar(d1, 0.5), alpha_t * b_h));
  }
  return out;
}

Tensor FlowUniPcSolver::Corrector(const Tensor& model_t, const Tensor& last_x, int order) const {
  const int k = step_;  // corrects the step k - 1 -> k
  const double sigma_t = grid_.sigmas[k], sigma_s0 = grid_.sigmas[k - 1];
  const double alpha_t = 1.0 - sigma_t;
  const double lambda_t = Lambda(k), lambda_s0 = Lambda(k - 1);
  const double h = lambda_t - lambda_s0;
  const Tensor& m0 = model_outputs_.back();
  const double hh = -h;
  const double h_phi_1 = std::expm1(hh);
  const double b_h = std::expm1(hh);
  // b_i = i! * phi_i(hh) / B_h with phi_1' = h_phi_1 / hh - 1, phi_{i+1}' = phi_i' / hh - 1/(i+1)!
  std::vector<double> b;
  double h_phi_k = h_phi_1 / hh - 1.0;
  double factorial = 1.0;
  for (int i = 1; i <= order; ++i) {
    b.push_back(h_phi_k * factorial / b_h);
    factorial *= i + 1;
    h_phi_k = h_phi_k / hh - 1.0 / factorial;
  }
  Tensor corr;  // sum_k rhos_c[k] D1_k over the older outputs
  double rho_last;
  if (order == 1) {
    rho_last = 0.5;
  } else {
    const double rk = (Lambda(k - 2) - lambda_s0) / h;
    const Tensor& m1 = model_outputs_[model_outputs_.size() - 2];
    Tensor d1 = ops::Div(ops::Sub(m1, m0), ops::ScalarLike(rk, m0));
    // R = [[1, 1], [rk, 1]], R rho = b.
    const double rho0 = (b[0] - b[1]) / (1.0 - rk);
    rho_last = b[0] - rho0;
    corr = ops::MulScalar(d1, rho0);
  }
  Tensor d1_t = ops::Sub(model_t, m0);
  Tensor res = ops::MulScalar(d1_t, rho_last);
  if (corr.defined()) res = ops::Add(corr, res);
  Tensor out = Axpby(sigma_t / sigma_s0, last_x, -alpha_t * h_phi_1, m0);
  return ops::Sub(out, ops::MulScalar(res, alpha_t * b_h));
}

Tensor FlowUniPcSolver::Step(const Tensor& v, const Tensor& x_in) {
  SDPO_CHECK(step_ < grid_.steps(), "FlowUniPcSolver: all ", grid_.steps(), " steps are done");
  SDPO_CHECK(v.shape() == x_in.shape(), "FlowUniPcSolver: v ", v.str(), " vs x ", x_in.str());
  const Tensor vv = ops::Cast(v, x_in.dtype());
  // x0 prediction of the flow model: x - sigma v.
  const Tensor x0 = ops::Sub(x_in, ops::MulScalar(vv, grid_.sigmas[step_]));
  Tensor x = x_in;
  if (step_ > 0 && last_sample_.defined()) x = Corrector(x0, last_sample_, this_order_);
  for (int i = 0; i + 1 < order_; ++i) model_outputs_[i] = model_outputs_[i + 1];
  model_outputs_.back() = x0;
  int order = lower_order_final_ ? std::min(order_, grid_.steps() - step_) : order_;
  this_order_ = std::min(order, lower_order_nums_ + 1);
  last_sample_ = x;
  Tensor next = Predictor(x, this_order_);
  if (lower_order_nums_ < order_) ++lower_order_nums_;
  ++step_;
  return next;
}

// ----------------------------------------------------------------------------- sampling loop

const char* FlowSolverName(FlowSolver solver) {
  return solver == FlowSolver::kEuler ? "euler" : "unipc";
}

FlowSolver ParseFlowSolver(const std::string& name) {
  if (name == "euler") return FlowSolver::kEuler;
  if (name == "unipc") return FlowSolver::kUniPc;
  SDPO_FAIL("unknown flow solver \"", name, "\" (known: euler, unipc)");
}

std::vector<Tensor> SampleFlow(models::DiffusionModel& model, const std::vector<Tensor>& noise,
                               const std::vector<Tensor>& contexts,
                               const std::vector<Tensor>& null_contexts,
                               const FlowSampleOptions& options, FlowTrace* trace) {
  SDPO_CHECK(model.family() == ScheduleFamily::kFlow, "SampleFlow: the model's family is \"",
             ScheduleFamilyName(model.family()), "\", not \"flow\"");
  const size_t n = noise.size();
  SDPO_CHECK(n > 0 && contexts.size() == n, "SampleFlow: ", n,
             " noise tensors need as many contexts, got ", contexts.size());
  const bool guided = options.guide_scale != 1.0;
  SDPO_CHECK(!guided || null_contexts.size() == n, "SampleFlow: guide_scale ", options.guide_scale,
             " needs ", n, " null contexts, got ", null_contexts.size());
  NoGradGuard no_grad;
  const FlowGrid grid = WanFlowGrid(options.steps, options.shift);
  std::vector<FlowEulerSolver> euler;
  std::vector<FlowUniPcSolver> unipc;
  for (size_t i = 0; i < n; ++i) {
    if (options.solver == FlowSolver::kEuler)
      euler.emplace_back(grid);
    else
      unipc.emplace_back(grid);
  }
  std::vector<Tensor> x = noise;
  if (trace) *trace = FlowTrace();
  auto timesteps = [&](int k, size_t count) {
    return Tensor::FromVector(std::vector<double>(count, static_cast<double>(grid.timesteps[k])),
                              {static_cast<int64_t>(count)}, kF32);
  };
  for (int k = 0; k < grid.steps(); ++k) {
    std::vector<Tensor> v, vc, vu;
    if (!guided) {
      v = model.ForwardList(x, timesteps(k, n), contexts);
    } else if (options.batch_guidance) {
      std::vector<Tensor> xs = x, cs = contexts;
      xs.insert(xs.end(), x.begin(), x.end());
      cs.insert(cs.end(), null_contexts.begin(), null_contexts.end());
      std::vector<Tensor> both = model.ForwardList(xs, timesteps(k, 2 * n), cs);
      vc.assign(both.begin(), both.begin() + n);
      vu.assign(both.begin() + n, both.end());
    } else {
      vc = model.ForwardList(x, timesteps(k, n), contexts);
      vu = model.ForwardList(x, timesteps(k, n), null_contexts);
    }
    if (guided) {
      for (size_t i = 0; i < n; ++i) {
        v.push_back(ops::Add(vu[i], ops::MulScalar(ops::Sub(vc[i], vu[i]), options.guide_scale)));
      }
    }
    if (trace) {
      trace->x.push_back(x);
      trace->v.push_back(v);
      if (guided) {
        trace->v_cond.push_back(vc);
        trace->v_uncond.push_back(vu);
      }
    }
    for (size_t i = 0; i < n; ++i) {
      x[i] = options.solver == FlowSolver::kEuler ? euler[i].Step(v[i], x[i])
                                                  : unipc[i].Step(v[i], x[i]);
    }
    if (options.on_step) options.on_step(k, grid.steps());
  }
  if (trace) trace->x.push_back(x);
  return x;
}

}  // namespace sdpo::samplers
