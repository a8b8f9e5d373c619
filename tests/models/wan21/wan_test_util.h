// Helpers of the Wan2.1 tests: fixture tensors as Tensors, relative L2 errors, the tiny model.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "models/safetensors.h"
#include "models/wan21/checkpoint.h"
#include "models/wan21/model.h"
#include "tensor/ops.h"
#include "tests/fixtures_path.h"

namespace sdpo::wan21::testing {

// The fixture file, or nullptr (the caller skips) when the fixtures are not present.
inline std::unique_ptr<SafetensorsFile> OpenFixture(const std::string& name) {
  const std::string path = sdpo::testing::FixturePath("wan21/" + name);
  if (path.empty()) return nullptr;
  return SafetensorsFile::Open(path);
}

inline std::string FixtureFile(const std::string& name) {
  return sdpo::testing::FixturePath("wan21/" + name);
}

#define SDPO_SKIP_WITHOUT_FIXTURES()                                              \
  if (::sdpo::testing::FixturePath("wan21/tiny_a.weights.safetensors").empty()) { \
    GTEST_SKIP() << ::sdpo::testing::FixturesNotFoundMessage();                   \
  }

// A fixture tensor in `dtype` (values converted; I64 kept exact through f64).
inline Tensor Load(const SafetensorsFile& f, const std::string& name, DType dtype = kF32) {
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

// The tiny_a model with the fixture weights (f32).
inline std::unique_ptr<WanModel> TinyModel() {
  return LoadModel(FixtureFile("tiny_a.weights.safetensors"));
}

// Switches a model to f64 parameters and arithmetic.
inline void ToF64(WanModel& model) {
  model.CastParameters(kF64);
  model.SetComputeDType(kF64);
}

struct Case {
  std::vector<Tensor> x, context;
  Tensor t;
  int64_t seq_len = 0;
  int64_t batch = 0;
};

inline Case LoadCase(const SafetensorsFile& f, DType dtype = kF32) {
  Case c;
  c.batch = std::stoll(f.metadata().at("batch"));
  for (int64_t i = 0; i < c.batch; ++i) {
    c.x.push_back(Load(f, "x_" + std::to_string(i), dtype));
    c.context.push_back(Load(f, "context_" + std::to_string(i), dtype));
  }
  c.t = Load(f, "t", kF32);
  c.seq_len = static_cast<int64_t>(Load(f, "seq_len").ToVector()[0]);
  return c;
}

}  // namespace sdpo::wan21::testing
