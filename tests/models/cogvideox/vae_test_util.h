// Helpers of the CogVideoX VAE tests: the fixtures under shared/fixtures/cogvideox_vae and the
// tiny_a model.
#pragma once

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "models/cogvideox/vae.h"
#include "tests/fixtures_path.h"
#include "tests/models/fixture_util.h"

namespace sdpo::cogvideox::testing {

inline std::string VaeFixtureFile(const std::string& name) {
  return ::sdpo::testing::FixturePath("cogvideox_vae/" + name);
}

#define SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES()                                              \
  if (::sdpo::testing::FixturePath("cogvideox_vae/tiny_a.weights.safetensors").empty()) { \
    GTEST_SKIP() << ::sdpo::testing::FixturesNotFoundMessage();                           \
  }

inline std::unique_ptr<SafetensorsFile> OpenVaeFixture(const std::string& name) {
  return ::sdpo::testing::OpenFixture("cogvideox_vae/" + name);
}

inline CogVideoXVaeConfig TinyVaeConfig() {
  return CogVideoXVaeConfig::FromFile(VaeFixtureFile("tiny_a.config.json"));
}

// The tiny_a VAE with the fixture weights, computing in `dtype`.
inline std::unique_ptr<CogVideoXVae> TinyVae(DType dtype = kF32) {
  return LoadVae(VaeFixtureFile("tiny_a.weights.safetensors"), Device::CPU(), dtype,
                 TinyVaeConfig());
}

}  // namespace sdpo::cogvideox::testing
