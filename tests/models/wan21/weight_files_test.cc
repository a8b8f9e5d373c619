// Wan2.1 weights in other files: the DiT saved by torch.save (.pth, f32 and bf16) loads like the
// safetensors fixture, and the VAE name table maps all 194 official names to the diffusers names
// (as tools/make_weight_variants.py derives them from diffusers' conversion rules) and back, with
// no collisions.
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "io/json.h"
#include "models/wan21/checkpoint.h"
#include "models/wan21/vae_names.h"
#include "nn/checkpoint_io.h"
#include "tensor/ops.h"
#include "tests/models/wan21/wan_test_util.h"

namespace sdpo::wan21 {
namespace {

const std::string kTorchData = "tests/io/testdata/";

WanConfig FixtureConfig() {
  return ResolveConfig(
      *ShardedCheckpoint::Open(testing::FixtureFile("tiny_a.weights.safetensors")));
}

TEST(WanWeightFilesTest, DitSavedByTorchLoadsTheSameParameters) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto reference = testing::TinyModel();
  LoadReport report;
  auto from_pth = LoadModel(kTorchData + "wan21_tiny_a.pth", FixtureConfig(), {}, &report);
  EXPECT_EQ(report.dtypes.at("F32"), report.tensors);
  for (auto& [name, p] : reference->NamedParameters()) {
    EXPECT_EQ(testing::MaxAbsDiff(from_pth->FindParameter(name), p), 0.0) << name;
  }
}

TEST(WanWeightFilesTest, Bf16DitSavedByTorchLoadsTheRoundedParameters) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto reference = testing::TinyModel();
  LoadReport report;
  auto from_pth = LoadModel(kTorchData + "wan21_tiny_a.bf16.pth", FixtureConfig(), {}, &report);
  EXPECT_EQ(report.dtypes.at("BF16"), report.tensors);
  for (auto& [name, p] : reference->NamedParameters()) {
    Tensor want = ops::Cast(ops::Cast(p, kBF16), kF32);
    EXPECT_EQ(testing::MaxAbsDiff(from_pth->FindParameter(name), want), 0.0) << name;
  }
}

TEST(WanWeightFilesTest, VaePthOpensThroughTheOneTensorSource) {
  const std::string ref_path = sdpo::testing::FixturePath("wan_vae/tiny_a.weights.safetensors");
  if (ref_path.empty()) GTEST_SKIP() << sdpo::testing::FixturesNotFoundMessage();
  auto pth = nn::OpenTensorSource(kTorchData + "wan_vae_tiny_a.pth");
  auto ref = nn::OpenTensorSource(ref_path);
  ASSERT_EQ(pth->Keys(), ref->Keys());
  for (const std::string& k : ref->Keys()) {
    EXPECT_EQ(testing::MaxAbsDiff(pth->Read(k), ref->Read(k)), 0.0) << k;
  }
}

std::vector<std::string> FullVaeNames() {
  const std::string path = sdpo::testing::FixturePath("wan_vae/wan21_vae_full.names.json");
  if (path.empty()) return {};
  std::vector<std::string> names;
  const json::Value root = json::ParseFile(path);
  for (const json::Value& t : root.at("tensors").as_array()) {
    names.push_back(t.at("name").as_string());
  }
  return names;
}

TEST(WanVaeNamesTest, AllOfficialNamesRoundTripWithoutCollisions) {
  const std::vector<std::string> names = FullVaeNames();
  if (names.empty()) GTEST_SKIP() << sdpo::testing::FixturesNotFoundMessage();
  ASSERT_EQ(names.size(), 194u);
  std::set<std::string> diffusers;
  for (const std::string& n : names) {
    const std::optional<std::string> d = VaeOfficialToDiffusers(n);
    ASSERT_TRUE(d.has_value()) << n;
    EXPECT_TRUE(diffusers.insert(*d).second) << n << " -> " << *d << " collides";
    EXPECT_EQ(VaeDiffusersToOfficial(*d), n) << *d;
    EXPECT_EQ(VaeDiffusersToOfficial(n), std::nullopt) << n << " is not a diffusers name";
    EXPECT_EQ(VaeOfficialToDiffusers(*d), std::nullopt) << *d << " is not an official name";
  }
}

TEST(WanVaeNamesTest, MatchesTheNamesDerivedFromTheDiffusersConversionRules) {
  const std::vector<std::string> names = FullVaeNames();
  if (names.empty()) GTEST_SKIP() << sdpo::testing::FixturesNotFoundMessage();
  const json::Value expected =
      json::ParseFile("tests/models/wan21/testdata/wan_vae_diffusers_names.json");
  ASSERT_EQ(expected.as_object().size(), names.size());
  for (const auto& [official, diffusers] : expected.as_object()) {
    EXPECT_EQ(VaeOfficialToDiffusers(official), diffusers.as_string()) << official;
  }
  // Spot checks of each rule, written out.
  EXPECT_EQ(VaeOfficialToDiffusers("decoder.upsamples.4.shortcut.weight"),
            "decoder.up_blocks.1.resnets.0.conv_shortcut.weight");
  EXPECT_EQ(VaeOfficialToDiffusers("decoder.upsamples.11.resample.1.bias"),
            "decoder.up_blocks.2.upsamplers.0.resample.1.bias");
  EXPECT_EQ(VaeOfficialToDiffusers("encoder.downsamples.5.time_conv.weight"),
            "encoder.down_blocks.5.time_conv.weight");
  EXPECT_EQ(VaeOfficialToDiffusers("encoder.middle.2.residual.3.gamma"),
            "encoder.mid_block.resnets.1.norm2.gamma");
  EXPECT_EQ(VaeOfficialToDiffusers("decoder.middle.1.to_qkv.weight"),
            "decoder.mid_block.attentions.0.to_qkv.weight");
  EXPECT_EQ(VaeOfficialToDiffusers("conv2.bias"), "post_quant_conv.bias");
}

TEST(WanVaeNamesTest, NamesOutsideTheModelHaveNoTranslation) {
  for (const char* name :
       {"", "conv3.weight", "encoder.conv1.weight.extra", "encoder.head.1.gamma",
        "decoder.upsamples.3.residual.0.gamma", "encoder.downsamples.x.residual.0.gamma",
        "encoder.downsamples.01.residual.0.gamma", "encoder.middle.1.to_q.weight",
        "blocks.0.self_attn.q.weight", "encoder.downsamples.0.residual.1.gamma"}) {
    EXPECT_EQ(VaeOfficialToDiffusers(name), std::nullopt) << name;
  }
  for (const char* name :
       {"decoder.up_blocks.0.resnets.3.norm1.gamma",
        "decoder.up_blocks.0.upsamplers.1.resample.1.weight",
        "encoder.mid_block.resnets.0.residual.0.gamma", "quant_conv.gamma", "post_quant_conv"}) {
    EXPECT_EQ(VaeDiffusersToOfficial(name), std::nullopt) << name;
  }
}

}  // namespace
}  // namespace sdpo::wan21
