// Helpers of the Wan2.1 tests: fixture tensors as Tensors, relative L2 errors, the tiny model.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "models/wan21/checkpoint.h"
#include "models/wan21/model.h"
#include "tensor/ops.h"
#include "tests/fixtures_path.h"
#include "tests/models/fixture_util.h"

namespace sdpo::wan21::testing {

inline std::string FixtureFile(const std::string& name) {
  return sdpo::testing::FixturePath("wan21/" + name);
}

#define SDPO_SKIP_WITHOUT_FIXTURES()                                              \
  if (::sdpo::testing::FixturePath("wan21/tiny_a.weights.safetensors").empty()) { \
    GTEST_SKIP() << ::sdpo::testing::FixturesNotFoundMessage();                   \
  }

// Shared fixture helpers (tests/models/fixture_util.h).
using ::sdpo::testing::MaxAbsDiff;
using ::sdpo::testing::RelL2;
inline Tensor Load(const SafetensorsFile& f, const std::string& name, DType dtype = kF32) {
  return ::sdpo::testing::LoadFixtureTensor(f, name, dtype);
}
inline std::unique_ptr<SafetensorsFile> OpenFixture(const std::string& name) {
  return ::sdpo::testing::OpenFixture("wan21/" + name);
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
