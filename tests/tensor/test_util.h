// Helpers shared by the tensor-library tests (and reusable by autograd / nn tests): random
// tensors, host-side comparisons and index arithmetic for naive reference loops.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"
#include "tensor/thread_pool.h"

namespace sdpo::testing {

// A tensor of the given shape and dtype with values ~ N(0, 1) (counter-based, reproducible).
// Integer and bool dtypes get the normals cast (truncated) to that dtype after scaling by 4.
inline Tensor RandomTensor(const Shape& shape, uint64_t seed, DType dtype = kF32) {
  if (IsFloating(dtype)) return ops::RandomNormal(shape, seed, /*offset=*/0, dtype);
  Tensor t = ops::MulScalar(ops::RandomNormal(shape, seed, 0, kF64), 4.0);
  return ops::Cast(t, dtype);
}

// Values ~ U(lo, hi), for inputs with a restricted domain (log, sqrt, ...).
inline Tensor RandomUniformTensor(const Shape& shape, uint64_t seed, double lo, double hi,
                                  DType dtype = kF32) {
  Tensor u = ops::RandomUniform(shape, seed, 0, kF64);
  return ops::Cast(ops::AddScalar(ops::MulScalar(u, hi - lo), lo), dtype);
}

// ||actual - expected||_2 / ||expected||_2 (absolute when expected is all zeros), in double.
inline double RelL2(const std::vector<double>& actual, const std::vector<double>& expected) {
  EXPECT_EQ(actual.size(), expected.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < actual.size() && i < expected.size(); ++i) {
    double d = actual[i] - expected[i];
    num += d * d;
    den += expected[i] * expected[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}
inline double RelL2(const Tensor& actual, const Tensor& expected) {
  EXPECT_EQ(actual.shape(), expected.shape());
  return RelL2(actual.ToVector(), expected.ToVector());
}

// Element-wise |a - e| <= atol + rtol * |e|; NaNs must match NaNs and infinities must match
// exactly. The failure message names the first offending element and the worst one.
inline ::testing::AssertionResult AllClose(const std::vector<double>& actual,
                                           const std::vector<double>& expected, double rtol,
                                           double atol) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << "size mismatch: " << actual.size() << " vs " << expected.size();
  }
  int64_t bad = 0, first = -1, worst = -1;
  double worst_ratio = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    double a = actual[i], e = expected[i];
    bool ok;
    double ratio = 0;
    if (std::isnan(e) || std::isnan(a)) {
      ok = std::isnan(e) && std::isnan(a);
    } else if (std::isinf(e) || std::isinf(a)) {
      ok = a == e;
    } else if (a == e) {
      ok = true;
    } else {
      ratio = std::abs(a - e) / (atol + rtol * std::abs(e));
      ok = ratio <= 1;
    }
    if (!ok) {
      ++bad;
      if (first < 0) first = static_cast<int64_t>(i);
      if (worst < 0 || ratio > worst_ratio) {
        worst = static_cast<int64_t>(i);
        worst_ratio = ratio;
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << actual.size() << " elements differ (rtol " << rtol << ", atol " << atol
         << "); first at " << first << ": " << actual[first] << " vs " << expected[first]
         << "; worst at " << worst << ": " << actual[worst] << " vs " << expected[worst];
}
inline ::testing::AssertionResult AllClose(const Tensor& actual,
                                           const std::vector<double>& expected, double rtol,
                                           double atol) {
  return AllClose(actual.ToVector(), expected, rtol, atol);
}
inline ::testing::AssertionResult AllClose(const Tensor& actual, const Tensor& expected,
                                           double rtol, double atol) {
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure() << "shape mismatch: " << ShapeStr(actual.shape()) << " vs "
                                         << ShapeStr(expected.shape());
  }
  return AllClose(actual.ToVector(), expected.ToVector(), rtol, atol);
}

// Same shape, dtype and bytes (element by element, in row-major order).
inline ::testing::AssertionResult BitEqual(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) {
    return ::testing::AssertionFailure() << a.str() << " vs " << b.str();
  }
  Tensor ca = ops::Contiguous(a), cb = ops::Contiguous(b);
  const char* pa = static_cast<const char*>(ca.raw_data());
  const char* pb = static_cast<const char*>(cb.raw_data());
  size_t es = ElementSize(a.dtype());
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (std::memcmp(pa + i * es, pb + i * es, es) != 0) {
      return ::testing::AssertionFailure()
             << "element " << i << " differs: " << ca.ToVector()[i] << " vs " << cb.ToVector()[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// Row-major index arithmetic for naive loops.
inline std::vector<int64_t> Unravel(int64_t flat, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}
inline int64_t Ravel(const std::vector<int64_t>& idx, const Shape& shape) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + idx[d];
  return flat;
}
// Flat index into `shape` of the element that broadcasting maps to `out_idx` (of a larger or
// equal rank output).
inline int64_t BroadcastIndex(const std::vector<int64_t>& out_idx, const Shape& shape) {
  size_t lead = out_idx.size() - shape.size();
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    flat = flat * shape[d] + (shape[d] == 1 ? 0 : out_idx[lead + d]);
  }
  return flat;
}

// Runs fn and returns the message of the sdpo::Error it throws, or "<no error>" when it returns
// normally ("<other exception: ...>" for any other exception type).
inline std::string ErrorMessage(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return absl::StrCat("<other exception: ", e.what(), ">");
  }
  return "<no error>";
}

// Sets the CPU thread count for a scope and restores the previous one.
class ScopedNumThreads {
 public:
  explicit ScopedNumThreads(int n) : previous_(NumThreads()) { SetNumThreads(n); }
  ~ScopedNumThreads() { SetNumThreads(previous_); }
  ScopedNumThreads(const ScopedNumThreads&) = delete;
  ScopedNumThreads& operator=(const ScopedNumThreads&) = delete;

 private:
  int previous_;
};

}  // namespace sdpo::testing
