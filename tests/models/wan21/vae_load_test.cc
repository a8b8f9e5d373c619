// Wan2.1 VAE config and loading: the fixtures' config format, the released model's 194 parameter
// names and shapes (shared/fixtures/wan_vae/wan21_vae_full.names.json), and load errors that name
// the key, the file and the shapes.
#include <string>

#include "gtest/gtest.h"
#include "io/json.h"
#include "models/wan21/vae_names.h"
#include "nn/checkpoint_io.h"
#include "tensor/ops.h"
#include "tests/error_testing.h"
#include "tests/models/wan21/vae_test_util.h"

namespace sdpo::wan21 {
namespace {

using ::sdpo::testing::ExpectErrorContains;
using testing::VaeFixtureFile;

TEST(VaeConfigTest, ReadsTheFixtureFormatAndTheBareObject) {
  SDPO_SKIP_WITHOUT_VAE_FIXTURES();
  const WanVaeConfig c = testing::TinyVaeConfig();
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.z_dim, 16);
  EXPECT_EQ(c.dim_mult, (std::vector<int64_t>{1, 2, 4, 4}));
  EXPECT_EQ(c.temperal_downsample, (std::vector<bool>{false, true, true}));
  EXPECT_EQ(c.spatial_factor(), 8);
  EXPECT_EQ(c.temporal_factor(), 4);
  EXPECT_TRUE(WanVaeConfig::FromJson(json::Parse(c.ToJson())) == c);
  const WanVaeConfig bare = WanVaeConfig::FromJson(json::Parse(R"({"dim": 8, "z_dim": 16})"));
  EXPECT_EQ(bare.dim, 8);
  EXPECT_EQ(bare.num_res_blocks, 2);  // the released model's value
}

TEST(VaeConfigTest, RejectsUnknownKeysWrongTypesAndBadValues) {
  ExpectErrorContains(
      [] { WanVaeConfig::FromJson(json::Parse(R"({"WanVAE_": {"dims": 8}})"), "c.json"); },
      {"c.json", "unknown WanVAE_ config key 'dims'"});
  ExpectErrorContains([] { WanVaeConfig::FromJson(json::Parse(R"({"dim": "8"})"), "c.json"); },
                      {"c.json", "dim"});
  ExpectErrorContains(
      [] { WanVaeConfig::FromJson(json::Parse(R"({"dim_mult": [1, 2, 4, 4, 4]})")); },
      {"dim_mult must have 1 to 4 entries"});
  ExpectErrorContains(
      [] { WanVaeConfig::FromJson(json::Parse(R"({"temperal_downsample": [true]})")); },
      {"temperal_downsample needs 3 entries"});
}

TEST(VaeModelTest, HasTheReleasedModelsNamesAndShapes) {
  SDPO_SKIP_WITHOUT_VAE_FIXTURES();
  const json::Value names = json::ParseFile(VaeFixtureFile("wan21_vae_full.names.json"));
  const WanVaeConfig official;
  EXPECT_TRUE(WanVaeConfig::FromJson(names.at("config")) == official);
  WanVae vae(official);
  const auto params = vae.NamedParameters();
  const auto& expected = names.at("tensors").as_array();
  ASSERT_EQ(params.size(), expected.size());
  for (size_t i = 0; i < params.size(); ++i) {  // the state_dict order too
    EXPECT_EQ(params[i].first, expected[i].at("name").as_string());
    Shape shape;
    for (const json::Value& d : expected[i].at("shape").as_array()) shape.push_back(d.as_int());
    EXPECT_EQ(params[i].second.shape(), shape) << params[i].first;
  }
  EXPECT_EQ(vae.NumParameters(), names.at("num_params").as_int());
  EXPECT_EQ(vae.LatentFrames(81), 21);
  EXPECT_EQ(vae.VideoFrames(21), 81);
}

TEST(VaeLoadTest, ErrorsNameTheKeyTheFileAndTheShapes) {
  SDPO_SKIP_WITHOUT_VAE_FIXTURES();
  const std::string dir = ::sdpo::testing::FreshTmpDir("vae_load");
  nn::TensorMap weights = nn::ReadSafetensors(VaeFixtureFile("tiny_a.weights.safetensors"));
  // A missing key.
  nn::TensorMap missing = weights;
  missing.erase("decoder.head.2.bias");
  nn::SaveSafetensors(dir + "/missing.safetensors", missing);
  ExpectErrorContains([&] { LoadVae(dir + "/missing.safetensors", testing::TinyVaeConfig()); },
                      {"missing.safetensors", "missing key", "decoder.head.2.bias"});
  // An unexpected key.
  nn::TensorMap extra = weights;
  extra["decoder.head.3.weight"] = Tensor::Zeros({2});
  nn::SaveSafetensors(dir + "/extra.safetensors", extra);
  ExpectErrorContains([&] { LoadVae(dir + "/extra.safetensors", testing::TinyVaeConfig()); },
                      {"extra.safetensors", "unexpected key", "decoder.head.3.weight"});
  // Another config's shapes.
  WanVaeConfig wider = testing::TinyVaeConfig();
  wider.dim = 16;
  ExpectErrorContains([&] { LoadVae(VaeFixtureFile("tiny_a.weights.safetensors"), wider); },
                      {"tiny_a.weights.safetensors", "shape mismatch", "encoder.conv1.weight",
                       "[16, 3, 3, 3, 3]", "[8, 3, 3, 3, 3]"});
}

TEST(VaeLoadTest, PthAndDiffusersNamesLoadTheSameWeights) {
  SDPO_SKIP_WITHOUT_VAE_FIXTURES();
  const std::unique_ptr<WanVae> reference = testing::TinyVae();
  // The official .pth (torch zip; tests/io/testdata, made from the fixture weights).
  const std::unique_ptr<WanVae> pth =
      LoadVae("tests/io/testdata/wan_vae_tiny_a.pth", testing::TinyVaeConfig());
  // The diffusers AutoencoderKLWan names.
  const std::string dir = ::sdpo::testing::FreshTmpDir("vae_diffusers");
  nn::TensorMap renamed;
  for (const auto& [name, t] : nn::ReadSafetensors(VaeFixtureFile("tiny_a.weights.safetensors"))) {
    const std::optional<std::string> d = VaeOfficialToDiffusers(name);
    ASSERT_TRUE(d.has_value()) << name;
    renamed[*d] = t;
  }
  nn::SaveSafetensors(dir + "/diffusion_pytorch_model.safetensors", renamed);
  const std::unique_ptr<WanVae> diffusers =
      LoadVae(dir + "/diffusion_pytorch_model.safetensors", testing::TinyVaeConfig());
  const auto want = reference->NamedParameters();
  for (const WanVae* other : {pth.get(), diffusers.get()}) {
    const auto got = other->NamedParameters();
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(ops::Sub(got[i].second, want[i].second).ToVector(),
                std::vector<double>(want[i].second.numel(), 0.0))
          << got[i].first;
    }
  }
}

TEST(VaeModelTest, RejectsWrongInputShapes) {
  SDPO_SKIP_WITHOUT_VAE_FIXTURES();
  std::unique_ptr<WanVae> vae = testing::TinyVae();
  ExpectErrorContains(
      [&] {
        vae->Encode(Tensor::Zeros({1, 4, 1, 16, 16}));
      },
      {"encode", "[B, 3, T, H, W]"});
  ExpectErrorContains(
      [&] {
        vae->Decode(Tensor::Zeros({1, 8, 1, 2, 2}));
      },
      {"decode", "[B, 16, T, h, w]"});
  VaeScale bad{Tensor::Zeros({3}), Tensor::Ones({3})};
  ExpectErrorContains(
      [&] {
        vae->Decode(Tensor::Zeros({1, 16, 1, 2, 2}), bad);
      },
      {"mean must have 16 values"});
}

}  // namespace
}  // namespace sdpo::wan21
