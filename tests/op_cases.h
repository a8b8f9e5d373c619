// One table of elementwise op cases, in the spirit of ggml's test-backend-ops:
// for every value of ops::UnaryOp and ops::BinaryOp, the float64 reference, the
// input domain and, for the ops autograd differentiates, the autograd function.
// Three kinds of tests read it:
//   - tests/tensor/elementwise_test.cc: the CPU kernels against the reference;
//   - tests/tensor/cuda/cuda_parity_test.cc: CUDA (real and emulated) against
//   the CPU;
//   - tests/autograd/gradcheck_test.cc: finite-difference gradient checks.
// A new op in tensor/op_list.h without a case here fails
// OpCases.EveryOpHasACase.
#pragma once

#include <cmath>
#include <vector>

#include "tensor/ops.h"
#include "tensor/tensor.h"

namespace sdpo::testing {

struct UnaryOpCase {
  ops::UnaryOp op;
  double (*reference)(double); // float64 reference
  double lo, hi;               // input domain: finite, smooth results
  // Extra absolute tolerance where the reference is itself a central difference
  // (the *_grad ops).
  double reference_tol = 0;
  bool integer = false; // also defined on integer tensors
  // The autograd function, or nullptr for ops only backward functions use.
  Tensor (*differentiable)(const Tensor &) = nullptr;
  double kink =
      NAN; // a point where the derivative jumps (inputs are kept away from it)
};

struct BinaryOpCase {
  ops::BinaryOp op;
  double (*reference)(double, double);
  double a_lo, a_hi, b_lo, b_hi; // operand domains
  bool integer = false;
  Tensor (*differentiable)(const Tensor &, const Tensor &) = nullptr;
  bool kink_at_equal =
      false; // maximum/minimum: the derivative jumps where a == b
};

const std::vector<UnaryOpCase> &UnaryOpCases();
const std::vector<BinaryOpCase> &BinaryOpCases();

// Maps each element of a float64 tensor from (-inf, inf) into [lo, hi], keeping
// a margin of 0.1 away from `kink` when it is set (a smooth, monotone map:
// tanh).
void MapIntoDomain(Tensor &x, double lo, double hi, double kink = NAN);

} // namespace sdpo::testing
