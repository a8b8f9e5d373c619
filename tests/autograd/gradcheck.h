// Finite-difference gradient checking in float64 (shared by the autograd, nn and model tests).
//
// For f(inputs) -> out, the check draws a random projection R of out, back-propagates
// loss = sum(out * R) and compares every input's gradient with central differences of the loss
// (all elements for small inputs, a random subset for large ones).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"

namespace sdpo::testing {

struct GradCheckOptions {
  double step = 1e-6;          // finite-difference step
  double rtol = 1e-5;          // relative tolerance on each gradient element
  double atol = 1e-7;          // absolute tolerance
  int max_elements = 48;       // elements checked per input (random subset when larger)
  uint64_t seed = 1234;
};

struct GradCheckResult {
  bool ok = true;
  double max_error = 0;        // max |analytic - numeric| / (atol + rtol * |numeric|)
  std::string message;         // first failure, naming the input and element
};

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

// `inputs` are f64 leaves; those with requires_grad are checked.
GradCheckResult GradCheck(const TensorFn& fn, const std::vector<Tensor>& inputs,
                          const GradCheckOptions& options = {});

// Random f64 leaf requiring grad, values ~ N(0, 1) (counter-based, reproducible).
Tensor RandomLeaf(const Shape& shape, uint64_t seed);

// Names of the nodes reachable from out's graph (for asserting which ops were recorded).
std::vector<std::string> GraphOpNames(const Tensor& out);

}  // namespace sdpo::testing
