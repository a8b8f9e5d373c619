#include "tests/autograd/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "absl/strings/str_cat.h"

namespace sdpo::testing {

Tensor RandomLeaf(const Shape& shape, uint64_t seed) {
  Tensor t = ops::RandomNormal(shape, seed, 0, kF64);
  t.set_requires_grad(true);
  return t;
}

namespace {
double Loss(const TensorFn& fn, const std::vector<Tensor>& inputs, const Tensor& projection) {
  NoGradGuard no_grad;
  Tensor out = ops::Cast(fn(inputs), kF64);
  return ops::Sum(ops::Mul(out, projection)).item();
}
}  // namespace

GradCheckResult GradCheck(const TensorFn& fn, const std::vector<Tensor>& inputs,
                          const GradCheckOptions& options) {
  GradCheckResult result;
  for (const Tensor& in : inputs) {
    if (!in.defined()) continue;
    SDPO_CHECK(in.dtype() == kF64 && in.is_contiguous(), "GradCheck: inputs must be contiguous f64 "
               "leaves, got ", in.str());
    Tensor(in).zero_grad();
  }
  Tensor out = fn(inputs);
  Tensor projection = ops::RandomNormal(out.shape(), options.seed + 7, 0, kF64);
  Tensor loss = sum(mul(cast(out, kF64), projection));
  Backward(loss);

  uint64_t pick_seed = options.seed;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& in = inputs[k];
    if (!in.defined() || !in.requires_grad()) continue;
    Tensor grad = in.grad();
    std::vector<double> analytic =
        grad.defined() ? grad.ToVector() : std::vector<double>(in.numel(), 0.0);
    std::vector<int64_t> elements(in.numel());
    std::iota(elements.begin(), elements.end(), 0);
    if (in.numel() > options.max_elements) {
      std::vector<double> keys = ops::RandomUniform({in.numel()}, ++pick_seed, 0, kF64).ToVector();
      std::sort(elements.begin(), elements.end(),
                [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
      elements.resize(options.max_elements);
    }
    double* data = in.data<double>();
    for (int64_t e : elements) {
      const double saved = data[e];
      data[e] = saved + options.step;
      double plus = Loss(fn, inputs, projection);
      data[e] = saved - options.step;
      double minus = Loss(fn, inputs, projection);
      data[e] = saved;
      double numeric = (plus - minus) / (2 * options.step);
      double err = std::abs(analytic[e] - numeric) / (options.atol + options.rtol * std::abs(numeric));
      result.max_error = std::max(result.max_error, err);
      if (!(err <= 1.0) && result.ok) {
        result.ok = false;
        result.message = absl::StrCat("input ", k, " ", ShapeStr(in.shape()), " element ", e,
                                      ": analytic ", analytic[e], " vs numeric ", numeric);
      }
    }
  }
  return result;
}

std::vector<std::string> GraphOpNames(const Tensor& out) {
  std::vector<std::string> names;
  if (!out.grad_fn()) return names;
  std::vector<Node*> stack = {out.grad_fn().get()};
  std::unordered_set<Node*> seen = {stack[0]};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    names.push_back(n->name());
    for (const auto& nx : n->next()) {
      if (nx && seen.insert(nx.get()).second) stack.push_back(nx.get());
    }
  }
  return names;
}

}  // namespace sdpo::testing
