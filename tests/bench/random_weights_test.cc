// The full-size benchmarks' random weights (bench/random_weights.h): the values follow each
// parameter's role, and the names-list check accepts the released CogVideoX-2B VAE and names the
// first difference otherwise.
#include "bench/random_weights.h"

#include <cmath>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "models/cogvideox/vae.h"
#include "tensor/ops.h"
#include "tests/error_testing.h"
#include "tests/fixtures_path.h"

namespace sdpo {
namespace {

cogvideox::CogVideoXVaeConfig Tiny() {
  cogvideox::CogVideoXVaeConfig c;
  c.block_out_channels = {8, 16, 16, 16};
  c.layers_per_block = 2;
  c.norm_num_groups = 4;
  return c;
}

double Mean(const Tensor& t) {
  double s = 0;
  for (double v : t.ToVector()) s += v;
  return s / static_cast<double>(t.numel());
}

double Rms(const Tensor& t, double center) {
  double s = 0;
  for (double v : t.ToVector()) s += (v - center) * (v - center);
  return std::sqrt(s / static_cast<double>(t.numel()));
}

TEST(RandomizeParameters, GainsNearOneBiasesSmallWeightsScaledByFanIn) {
  cogvideox::CogVideoXVae vae(Tiny());
  bench::RandomizeParameters(vae, 3);
  const Tensor gain = vae.FindParameter("decoder.up_blocks.0.resnets.0.norm1.norm_layer.weight");
  const Tensor bias = vae.FindParameter("decoder.conv_in.conv.bias");
  const Tensor weight = vae.FindParameter("decoder.conv_in.conv.weight");  // [16, 16, 3, 3, 3]
  // 16 values of 1 + 0.1 N(0, 1): the mean is within 0.1 (4 standard errors of 0.025).
  EXPECT_NEAR(Mean(gain), 1.0, 0.1);
  EXPECT_GT(Rms(gain, 1.0), 0.03);
  EXPECT_LT(Rms(bias, 0.0), 0.15);  // 16 values of 0.05 N(0, 1)
  // 6912 values of N(0, 1 / 432): the RMS times sqrt(432) is 1 within 5% (~6 standard errors).
  EXPECT_NEAR(Rms(weight, 0.0) * std::sqrt(432.0), 1.0, 0.05);
  // The seed decides the values.
  cogvideox::CogVideoXVae other(Tiny());
  bench::RandomizeParameters(other, 4);
  EXPECT_NE(other.FindParameter("decoder.conv_in.conv.weight").ToVector(), weight.ToVector());
}

TEST(CheckNamesList, TheReleasedShapesMatchTheFixtureList) {
  const std::string list = testing::FixturePath("cogvideox_vae/cogvideox_2b_vae_full.names.json");
  if (list.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  cogvideox::CogVideoXVae vae(cogvideox::CogVideoXVaeConfig::CogVideoX2B());
  bench::CheckNamesList(vae, list);
  // The tiny model has fewer resnets: the first listed-but-missing count is reported.
  cogvideox::CogVideoXVae tiny(Tiny());
  testing::ExpectErrorContains([&] { bench::CheckNamesList(tiny, list); },
                               {"cogvideox_2b_vae_full.names.json", "436 tensors listed"});
}

TEST(CheckNamesList, AShapeDifferenceNamesTheTensor) {
  const std::string dir = testing::FreshTmpDir("random_weights_test");
  cogvideox::CogVideoXVae vae(Tiny());
  std::string body = "{\"tensors\": [";
  bool first = true;
  for (const auto& [name, p] : vae.NamedParameters()) {
    Shape shape = p.shape();
    if (name == "encoder.conv_in.conv.weight") shape[0] += 1;
    body += std::string(first ? "" : ", ") + "{\"name\": \"" + name +
            "\", \"shape\": " + ShapeStr(shape) + "}";
    first = false;
  }
  body += "]}";
  const std::string path = dir + "/names.json";
  std::ofstream(path) << body;
  testing::ExpectErrorContains([&] { bench::CheckNamesList(vae, path); },
                               {"'encoder.conv_in.conv.weight' is listed as [9, 3, 3, 3, 3]",
                                "the model has [8, 3, 3, 3, 3]"});
}

}  // namespace
}  // namespace sdpo
