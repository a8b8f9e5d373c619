// Helpers of the CogVideoX tests: fixture tensors as Tensors, relative L2 errors, tiny models.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "models/cogvideox/checkpoint.h"
#include "models/cogvideox/model.h"
#include "io/safetensors.h"
#include "tensor/ops.h"
#include "tests/fixtures_path.h"
#include "tests/models/fixture_util.h"

namespace sdpo::cogvideox::testing {

inline std::string FixtureFile(const std::string& name) {
  return sdpo::testing::FixturePath("cogvideox/" + name);
}

inline std::unique_ptr<SafetensorsFile> OpenFixture(const std::string& name) {
  return ::sdpo::testing::OpenFixture("cogvideox/" + name);
}

#define SDPO_SKIP_WITHOUT_COG_FIXTURES()                                               \
  if (::sdpo::testing::FixturePath("cogvideox/tiny_2b.weights.safetensors").empty()) { \
    GTEST_SKIP() << ::sdpo::testing::FixturesNotFoundMessage();                        \
  }

// Shared fixture helpers (tests/models/fixture_util.h).
using ::sdpo::testing::RelL2;
inline Tensor Load(const SafetensorsFile& f, const std::string& name, DType dtype = kF32) {
  return ::sdpo::testing::LoadFixtureTensor(f, name, dtype);
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
