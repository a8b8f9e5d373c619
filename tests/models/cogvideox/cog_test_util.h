// Helpers of the CogVideoX tests: fixture tensors as Tensors, relative L2 errors, tiny models.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "models/cogvideox/checkpoint.h"
#include "models/cogvideox/model.h"
#include "models/safetensors.h"
#include "tensor/ops.h"
#include "tests/fixtures_path.h"

namespace sdpo::cogvideox::testing {

inline std::string FixtureFile(const std::string& name) {
  return sdpo::testing::FixturePath("cogvideox/" + name);
}

inline std::unique_ptr<SafetensorsFile> OpenFixture(const std::string& name) {
  const std::string path = FixtureFile(name);
  if (path.empty()) return nullptr;
  return SafetensorsFile::Open(path);
}

#define SDPO_SKIP_WITHOUT_COG_FIXTURES()                                               \
  if (::sdpo::testing::FixturePath("cogvideox/tiny_2b.weights.safetensors").empty()) { \
    GTEST_SKIP() << ::sdpo::testing::FixturesNotFoundMessage();                        \
  }

// A fixture tensor in `dtype` (I64 kept exact).
inline Tensor Load(const SafetensorsFile& f, const std::string& name, DType dtype = kF32) {
  const TensorEntry& e = f.at(name);
  Shape shape(e.shape.begin(), e.shape.end());
  if (e.dtype == SafetensorsDType::kI64) {
    std::vector<double> v = ReadAsF64(e);
    return Tensor::FromVector(std::vector<int64_t>(v.begin(), v.end()), shape, kI64);
  }
  return Tensor::FromVector(ReadAsF64(e), shape, dtype);
}

// ||a - b||_2 / ||b||_2 in f64.
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

inline CogVideoXConfig TinyConfig(const std::string& model) {
  return CogVideoXConfig::FromFile(FixtureFile(model + ".config.json"));
}

// "tiny_2b" or "tiny_5b" with the fixture weights (f32).
inline std::unique_ptr<CogVideoXModel> TinyModel(const std::string& model) {
  return LoadModel(FixtureFile(model + ".weights.safetensors"), TinyConfig(model));
}

inline void ToF64(CogVideoXModel& model) {
  model.CastParameters(kF64);
  model.SetComputeDType(kF64);
}

// diffusers RoPE table [N, hd] (repeat-interleaved) -> [N, hd / 2].
inline Tensor HalfTable(const Tensor& full) {
  const int64_t n = full.size(0), hd = full.size(1);
  std::vector<double> v = full.ToVector(), out;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < hd; j += 2) out.push_back(v[i * hd + j]);
  }
  return Tensor::FromVector(out, {n, hd / 2}, full.dtype());
}

}  // namespace sdpo::cogvideox::testing
