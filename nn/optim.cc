#include "nn/optim.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tensor/kernels.h"
#include "tensor/thread_pool.h"

namespace sdpo::nn {

// ----------------------------------------------------------------------------- Optimizer

Optimizer::Optimizer(NamedTensors params, double lr) : lr_(lr) {
  std::set<std::string> seen;
  for (auto& [name, p] : params) {
    SDPO_CHECK(p.defined() && IsFloating(p.dtype()), "Optimizer: parameter '", name,
               "' must be a defined floating-point tensor");
    SDPO_CHECK(p.is_leaf(), "Optimizer: parameter '", name, "' is not a leaf tensor");
    SDPO_CHECK(seen.insert(name).second, "Optimizer: parameter name '", name, "' appears twice");
    ParamState s;
    s.name = name;
    s.param = p;
    states_.push_back(std::move(s));
  }
}

DType Optimizer::StateDType(const Tensor& param) { return param.dtype() == kF64 ? kF64 : kF32; }

Tensor& Optimizer::Slot(ParamState& s, size_t i) {
  if (s.slots.size() < SlotNames().size()) s.slots.resize(SlotNames().size());
  Tensor& t = s.slots[i];
  if (!t.defined() || t.shape() != s.param.shape() || t.dtype() != StateDType(s.param) ||
      t.device() != s.param.device()) {
    t = Tensor::Zeros(s.param.shape(), StateDType(s.param), s.param.device());
  }
  return t;
}

void Optimizer::Step() {
  NoGradGuard no_grad;
  for (ParamState& s : states_) {
    Tensor g = s.param.grad();
    if (!g.defined()) continue;
    SDPO_CHECK(g.shape() == s.param.shape(), "Optimizer: gradient of '", s.name, "' has shape ",
               ShapeStr(g.shape()), ", the parameter ", ShapeStr(s.param.shape()));
    ++s.step;
    Update(s, ops::Contiguous(ops::Cast(g, StateDType(s.param))));
  }
  ++step_;
}

void Optimizer::ZeroGrad() {
  for (ParamState& s : states_) s.param.zero_grad();
}

TensorMap Optimizer::StateDict() const {
  TensorMap out;
  out["step"] = Tensor::Scalar(static_cast<double>(step_), kI64);
  std::vector<std::string> slots = SlotNames();
  for (const ParamState& s : states_) {
    out[absl::StrCat(s.name, ".step")] = Tensor::Scalar(static_cast<double>(s.step), kI64);
    for (size_t i = 0; i < s.slots.size() && i < slots.size(); ++i) {
      if (s.slots[i].defined()) out[absl::StrCat(s.name, ".", slots[i])] = s.slots[i];
    }
  }
  return out;
}

void Optimizer::LoadStateDict(const TensorMap& state, bool strict) {
  std::vector<std::string> slots = SlotNames();
  std::set<std::string> used;
  std::vector<std::string> problems;
  auto read_step = [&](const std::string& key, int64_t* out) {
    auto it = state.find(key);
    if (it == state.end()) return false;
    SDPO_CHECK(it->second.numel() == 1, "Optimizer::LoadStateDict: '", key,
               "' must hold one value, got ", it->second.str());
    *out = static_cast<int64_t>(std::llround(it->second.item()));
    used.insert(key);
    return true;
  };
  // Validate everything first; then assign.
  std::vector<int64_t> steps(states_.size(), 0);
  std::vector<std::vector<Tensor>> values(states_.size());
  int64_t global = 0;
  if (!read_step("step", &global) && strict) problems.push_back("missing 'step'");
  for (size_t k = 0; k < states_.size(); ++k) {
    const ParamState& s = states_[k];
    if (!read_step(absl::StrCat(s.name, ".step"), &steps[k]) && strict) {
      problems.push_back(absl::StrCat("missing '", s.name, ".step'"));
    }
    values[k].resize(slots.size());
    for (size_t i = 0; i < slots.size(); ++i) {
      std::string key = absl::StrCat(s.name, ".", slots[i]);
      auto it = state.find(key);
      if (it == state.end()) {
        if (strict && steps[k] > 0) problems.push_back(absl::StrCat("missing '", key, "'"));
        continue;
      }
      SDPO_CHECK(it->second.shape() == s.param.shape(), "Optimizer::LoadStateDict: '", key,
                 "' has shape ", ShapeStr(it->second.shape()), ", the parameter ",
                 ShapeStr(s.param.shape()));
      values[k][i] = it->second;
      used.insert(key);
    }
  }
  if (strict) {
    for (const auto& [key, t] : state) {
      if (!used.count(key)) problems.push_back(absl::StrCat("unexpected '", key, "'"));
    }
  }
  SDPO_CHECK(problems.empty(), "Optimizer::LoadStateDict: ", absl::StrJoin(problems, ", "));
  step_ = global;
  for (size_t k = 0; k < states_.size(); ++k) {
    ParamState& s = states_[k];
    s.step = steps[k];
    s.slots.assign(slots.size(), Tensor());
    for (size_t i = 0; i < slots.size(); ++i) {
      if (!values[k][i].defined()) continue;
      Tensor t = Tensor::Empty(s.param.shape(), StateDType(s.param), s.param.device());
      ops::CopyInto(t, values[k][i]);
      s.slots[i] = t;
    }
  }
}

// ----------------------------------------------------------------------------- AdamW

AdamW::AdamW(NamedTensors params, const AdamWOptions& options)
    : Optimizer(std::move(params), options.lr), options_(options) {
  SDPO_CHECK(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1,
             "AdamW: betas must be in [0, 1), got ", options.beta1, ", ", options.beta2);
  SDPO_CHECK(options.eps >= 0 && options.weight_decay >= 0,
             "AdamW: eps and weight_decay must be "
             "non-negative");
}

namespace {
template <typename T>
void AdamWLoop(T* p, const T* g, T* m, T* v, int64_t n, double keep, double b1, double b2,
               double step_size, double bc2_sqrt, double eps) {
  ParallelFor(n, 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const double gi = g[i];
      const double mi = b1 * m[i] + (1 - b1) * gi;
      const double vi = b2 * v[i] + (1 - b2) * gi * gi;
      m[i] = static_cast<T>(mi);
      v[i] = static_cast<T>(vi);
      const double pi = static_cast<double>(p[i]) * keep -
                        step_size * static_cast<double>(m[i]) /
                            (std::sqrt(static_cast<double>(v[i])) / bc2_sqrt + eps);
      p[i] = static_cast<T>(pi);
    }
  });
}
}  // namespace

namespace {
struct AdamWCoefficients {
  double keep, step_size, bc2_sqrt;
};
AdamWCoefficients Coefficients(const AdamWOptions& o, double lr, int64_t step, bool decay) {
  const double wd = decay ? o.weight_decay : 0.0;
  const double t = static_cast<double>(step);
  return {1 - lr * wd, lr / (1 - std::pow(o.beta1, t)), std::sqrt(1 - std::pow(o.beta2, t))};
}
}  // namespace

void AdamWUpdate(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                 const AdamWOptions& options, double lr, int64_t step, bool decay) {
  SDPO_CHECK(step >= 1, "AdamWUpdate: step must be at least 1, got ", step);
  const AdamWCoefficients c = Coefficients(options, lr, step, decay);
  AdamWLoop(param, grad, exp_avg, exp_avg_sq, n, c.keep, options.beta1, options.beta2, c.step_size,
            c.bc2_sqrt, options.eps);
}

void AdamW::Update(ParamState& s, const Tensor& grad) {
  const AdamWOptions& o = options_;
  const bool decay = !o.decays || o.decays(s.name);
  const AdamWCoefficients c = Coefficients(o, lr_, s.step, decay);
  const double keep = c.keep, step_size = c.step_size, bc2_sqrt = c.bc2_sqrt;
  Tensor& m = Slot(s, 0);
  Tensor& v = Slot(s, 1);
  const Tensor& p = s.param;
  if (o.fused && p.device().is_cpu() && p.is_contiguous() && p.dtype() == m.dtype()) {
    if (p.dtype() == kF32) {
      AdamWLoop(p.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(), p.numel(),
                keep, o.beta1, o.beta2, step_size, bc2_sqrt, o.eps);
    } else {
      AdamWLoop(p.data<double>(), grad.data<double>(), m.data<double>(), v.data<double>(),
                p.numel(), keep, o.beta1, o.beta2, step_size, bc2_sqrt, o.eps);
    }
    return;
  }
  if (o.fused && !p.device().is_cpu() && p.is_contiguous() && p.dtype() == kF32 &&
      m.dtype() == kF32 && grad.dtype() == kF32) {
    const Kernels::AdamWStep h{lr_, o.beta1, o.beta2, o.eps, decay ? o.weight_decay : 0.0, s.step};
    if (KernelsFor(p.device()).FusedAdamW(p, grad, m, v, h)) return;
  }
  // Device-generic path with tensor ops, in the state dtype.
  ops::CopyInto(m, ops::Add(ops::MulScalar(m, o.beta1), ops::MulScalar(grad, 1 - o.beta1)));
  ops::CopyInto(
      v, ops::Add(ops::MulScalar(v, o.beta2), ops::MulScalar(ops::Square(grad), 1 - o.beta2)));
  Tensor denom = ops::AddScalar(ops::MulScalar(ops::Sqrt(v), 1.0 / bc2_sqrt), o.eps);
  Tensor pm = ops::MulScalar(ops::Cast(p, m.dtype()), keep);
  ops::CopyInto(p, ops::Sub(pm, ops::MulScalar(ops::Div(m, denom), step_size)));
}

// ----------------------------------------------------------------------------- SGD

SGD::SGD(NamedTensors params, const SGDOptions& options)
    : Optimizer(std::move(params), options.lr), options_(options) {
  SDPO_CHECK(options.momentum >= 0 && options.weight_decay >= 0,
             "SGD: momentum and weight_decay "
             "must be non-negative");
  SDPO_CHECK(!options.nesterov || (options.momentum > 0 && options.dampening == 0),
             "SGD: Nesterov momentum needs momentum > 0 and dampening 0");
}

void SGD::Update(ParamState& s, const Tensor& grad) {
  const SGDOptions& o = options_;
  const Tensor& p = s.param;
  DType sd = StateDType(p);
  Tensor g = grad;
  if (o.weight_decay != 0) g = ops::Add(g, ops::MulScalar(ops::Cast(p, sd), o.weight_decay));
  if (o.momentum != 0) {
    if (s.slots.empty()) s.slots.resize(1);
    Tensor& buf = s.slots[0];
    if (!buf.defined()) {
      buf = ops::Clone(g);
    } else {
      ops::CopyInto(buf,
                    ops::Add(ops::MulScalar(buf, o.momentum), ops::MulScalar(g, 1 - o.dampening)));
    }
    g = o.nesterov ? ops::Add(g, ops::MulScalar(buf, o.momentum)) : buf;
  }
  ops::CopyInto(p, ops::Sub(ops::Cast(p, sd), ops::MulScalar(g, lr_)));
}

// ----------------------------------------------------------------------------- utilities

double GradNorm(const std::vector<Tensor>& params) {
  // Running f64 sums kept on each parameter's device: one host synchronisation per device, not
  // one per tensor (the sum order per device is the parameters' order).
  std::vector<Tensor> totals;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    Tensor sq = ops::Sum(ops::Square(ops::Cast(g, kF64)));
    auto it = std::find_if(totals.begin(), totals.end(),
                           [&](const Tensor& t) { return t.device() == sq.device(); });
    if (it == totals.end()) {
      totals.push_back(sq);
    } else {
      *it = ops::Add(*it, sq);
    }
  }
  double total = 0;
  for (const Tensor& t : totals) total += t.item();
  return std::sqrt(total);
}

void ScaleGrads(const std::vector<Tensor>& params, double factor) {
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (g.defined()) ops::CopyInto(g, ops::MulScalar(g, factor));
  }
}

double ClipGradNorm(const std::vector<Tensor>& params, double max_norm) {
  SDPO_CHECK(max_norm > 0, "ClipGradNorm: max_norm must be positive, got ", max_norm);
  double norm = GradNorm(params);
  if (std::isfinite(norm) && norm > max_norm) ScaleGrads(params, max_norm / (norm + 1e-6));
  return norm;
}

GradAccumulator::GradAccumulator(int64_t micro_steps) : micro_steps_(micro_steps) {
  SDPO_CHECK(micro_steps >= 1, "GradAccumulator: micro_steps must be at least 1, got ",
             micro_steps);
}

bool GradAccumulator::Tick() {
  if (++count_ < micro_steps_) return false;
  count_ = 0;
  return true;
}

}  // namespace sdpo::nn
