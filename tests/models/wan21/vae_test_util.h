// Helpers of the Wan2.1 VAE tests: the fixtures under shared/fixtures/wan_vae, the tiny_a model.
#pragma once

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "models/wan21/vae.h"
#include "tests/fixtures_path.h"
#include "tests/models/fixture_util.h"

namespace sdpo::wan21::testing {

inline std::string VaeFixtureFile(const std::string& name) {
  return ::sdpo::testing::FixturePath("wan_vae/" + name);
}

#define SDPO_SKIP_WITHOUT_VAE_FIXTURES()                                            \
  if (::sdpo::testing::FixturePath("wan_vae/tiny_a.weights.safetensors").empty()) { \
    GTEST_SKIP() << ::sdpo::testing::FixturesNotFoundMessage();                     \
  }

inline std::unique_ptr<SafetensorsFile> OpenVaeFixture(const std::string& name) {
  return ::sdpo::testing::OpenFixture("wan_vae/" + name);
}

inline WanVaeConfig TinyVaeConfig() {
  return WanVaeConfig::FromFile(VaeFixtureFile("tiny_a.config.json"));
}

// The tiny_a VAE with the fixture weights (f32).
inline std::unique_ptr<WanVae> TinyVae() {
  return LoadVae(VaeFixtureFile("tiny_a.weights.safetensors"), TinyVaeConfig());
}

// The scale vectors a case stores, in `dtype`.
inline VaeScale CaseScale(const SafetensorsFile& f, DType dtype = kF32) {
  return {::sdpo::testing::LoadFixtureTensor(f, "scale_mean", dtype),
          ::sdpo::testing::LoadFixtureTensor(f, "scale_inv_std", dtype)};
}

}  // namespace sdpo::wan21::testing
