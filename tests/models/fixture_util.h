// Fixture helpers shared by the model tests (Wan2.1, CogVideoX): fixture files opened by their
// path under ../shared/fixtures, fixture tensors as Tensors, and error measures.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "tensor/tensor.h"
#include "tests/fixtures_path.h"

namespace sdpo::testing {

// The fixture file `relative` (e.g. "wan21/case.safetensors"), or nullptr (the caller skips)
// when the fixtures are not present.
inline std::unique_ptr<SafetensorsFile> OpenFixture(const std::string& relative) {
  const std::string path = FixturePath(relative);
  if (path.empty()) return nullptr;
  return SafetensorsFile::Open(path);
}

// A fixture tensor in `dtype` (values converted; I64 kept exact through f64).
inline Tensor LoadFixtureTensor(const SafetensorsFile& f, const std::string& name,
                                DType dtype = kF32) {
  const TensorEntry& e = f.at(name);
  Shape shape(e.shape.begin(), e.shape.end());
  if (e.dtype == SafetensorsDType::kI64) {
    std::vector<double> v = ReadAsF64(e);
    return Tensor::FromVector(std::vector<int64_t>(v.begin(), v.end()), shape, kI64);
  }
  return Tensor::FromVector(ReadAsF64(e), shape, dtype);
}

// ||a - b||_2 / ||b||_2 in f64 (shapes must have the same number of elements).
inline double RelL2(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.ToVector(), y = b.ToVector();
  EXPECT_EQ(x.size(), y.size());
  if (x.size() != y.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return std::sqrt(num) / std::sqrt(den);
}

inline double MaxAbsDiff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.ToVector(), y = b.ToVector();
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

}  // namespace sdpo::testing
