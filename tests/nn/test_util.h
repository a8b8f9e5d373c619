// Helpers shared by the nn tests: random tensors, element access and comparisons.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nn/module.h"
#include "tensor/ops.h"
#include "tests/error_testing.h"

namespace sdpo::nn::testing {

// N(0, 1) values (reproducible), any dtype; not requiring grad.
inline Tensor Randn(const Shape& shape, uint64_t seed, DType dtype = kF32) {
  return ops::Cast(ops::RandomNormal(shape, seed, 0, kF64), dtype);
}

// Re-draws every parameter of a module from N(0, scale^2) (so that zero-initialised biases and
// unit norm weights are exercised too).
inline void RandomizeParameters(Module& m, uint64_t seed, double scale = 0.5) {
  for (auto& [name, p] : m.NamedParameters()) {
    ops::CopyInto(p, ops::MulScalar(ops::RandomNormal(p.shape(), seed++, 0, kF64), scale));
  }
}

// max |a - b| / (atol + rtol |b|) <= 1 elementwise.
inline ::testing::AssertionResult AllClose(const std::vector<double>& a,
                                           const std::vector<double>& b, double rtol, double atol) {
  if (a.size() != b.size()) {
    return ::testing::AssertionFailure() << "sizes differ: " << a.size() << " vs " << b.size();
  }
  for (size_t i = 0; i < a.size(); ++i) {
    double err = std::abs(a[i] - b[i]);
    if (!(err <= atol + rtol * std::abs(b[i]))) {
      return ::testing::AssertionFailure()
             << "element " << i << ": " << a[i] << " vs " << b[i] << " (|diff| " << err << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult AllClose(const Tensor& a, const Tensor& b, double rtol,
                                           double atol) {
  if (a.shape() != b.shape()) {
    return ::testing::AssertionFailure()
           << "shapes differ: " << ShapeStr(a.shape()) << " vs " << ShapeStr(b.shape());
  }
  return AllClose(a.ToVector(), b.ToVector(), rtol, atol);
}

// Row-major flat index of a multi-index.
inline int64_t Flat(const Shape& shape, const std::vector<int64_t>& idx) {
  int64_t f = 0;
  for (size_t i = 0; i < shape.size(); ++i) f = f * shape[i] + idx[i];
  return f;
}

using ::sdpo::testing::ExpectErrorContains;  // tests/error_testing.h

}  // namespace sdpo::nn::testing
