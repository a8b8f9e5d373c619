// Loading the CogVideoX VAE: the parameter names and shapes of the full-size 2B model equal the
// official state_dict list; the diffusers `vae/` folder (config.json + one file or shards with an
// index, bf16 on disk) loads; the config reader takes both the diffusers and the fixtures'
// format; hostile configs and weights (missing key, wrong shape, a config that does not fit the
// file, unknown or unsupported keys, absurd sizes) fail with errors naming the key.
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "io/json.h"
#include "nn/checkpoint_io.h"
#include "tensor/ops.h"
#include "tests/error_testing.h"
#include "tests/models/cogvideox/vae_test_util.h"

namespace sdpo::cogvideox {
namespace {

namespace fs = std::filesystem;
using ::sdpo::nn::TensorMap;
using ::sdpo::testing::ExpectErrorContains;
using ::sdpo::testing::FreshTmpDir;
using ::sdpo::testing::LoadFixtureTensor;
using ::sdpo::testing::RelL2;
using testing::VaeFixtureFile;

// The tiny_a decode of dec3 with a loaded model (a check that every weight arrived).
double Dec3Error(const CogVideoXVae& vae) {
  auto f = testing::OpenVaeFixture("tiny_a.dec3.safetensors");
  return RelL2(vae.DecodeUnscaled(LoadFixtureTensor(*f, "z")), LoadFixtureTensor(*f, "video"));
}

// The tiny_a config as diffusers writes `vae/config.json` (bare kwargs, "_" keys).
void WriteDiffusersConfig(const std::string& path) {
  std::ofstream(path)
      << R"({"_class_name": "AutoencoderKLCogVideoX", "_diffusers_version": "0.30.0",
    "act_fn": "silu", "block_out_channels": [8, 16, 16, 16],
    "down_block_types": ["CogVideoXDownBlock3D", "CogVideoXDownBlock3D", "CogVideoXDownBlock3D",
                         "CogVideoXDownBlock3D"],
    "force_upcast": true, "in_channels": 3, "latent_channels": 16, "layers_per_block": 2,
    "norm_eps": 1e-06, "norm_num_groups": 4, "out_channels": 3, "sample_height": 480,
    "sample_width": 720, "scaling_factor": 1.15258426, "temporal_compression_ratio": 4,
    "up_block_types": ["CogVideoXUpBlock3D", "CogVideoXUpBlock3D", "CogVideoXUpBlock3D",
                       "CogVideoXUpBlock3D"],
    "use_post_quant_conv": false, "use_quant_conv": false})";
}

TensorMap FixtureWeights() {
  return nn::ReadSafetensors(VaeFixtureFile("tiny_a.weights.safetensors"));
}

TEST(CogVideoXVaeLoadTest, FullSizeNamesAndShapesAreTheOfficialStateDict) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  const json::Value names = json::ParseFile(VaeFixtureFile("cogvideox_2b_vae_full.names.json"));
  const CogVideoXVaeConfig c = CogVideoXVaeConfig::FromJson(names.at("config"), "names.json");
  EXPECT_TRUE(c == CogVideoXVaeConfig::CogVideoX2B());
  const CogVideoXVae vae(c);
  // The same names with the same shapes (registration order differs: the official resnet
  // registers norm1, norm2 before conv1, conv2; loading is by name).
  std::map<std::string, Shape> expected;
  for (const json::Value& e : names.at("tensors").as_array()) {
    Shape shape;
    for (const json::Value& d : e.at("shape").as_array()) shape.push_back(d.as_int());
    expected[e.at("name").as_string()] = shape;
  }
  const auto params = vae.NamedParameters();
  ASSERT_EQ(params.size(), expected.size());
  for (const auto& [name, tensor] : params) {
    ASSERT_TRUE(expected.count(name)) << name << " is not an official name";
    EXPECT_EQ(tensor.shape(), expected[name]) << name;
  }
  EXPECT_EQ(vae.NumParameters(), names.at("num_params").as_int());
}

TEST(CogVideoXVaeLoadTest, DiffusersFolderSingleFileShardsAndBf16) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  const TensorMap weights = FixtureWeights();

  // vae/config.json + vae/diffusion_pytorch_model.safetensors.
  const std::string single = FreshTmpDir("cog_vae_single");
  fs::copy_file(VaeFixtureFile("tiny_a.weights.safetensors"),
                single + "/diffusion_pytorch_model.safetensors");
  WriteDiffusersConfig(single + "/config.json");
  VaeLoadReport report;
  auto vae = LoadVae(single, Device::CPU(), kF32, std::nullopt, &report);
  EXPECT_EQ(report.config_source, single + "/config.json");
  EXPECT_EQ(report.tensors, 336);
  EXPECT_EQ(report.values, 329019);
  EXPECT_TRUE(vae->config() == testing::TinyVaeConfig());
  EXPECT_LE(Dec3Error(*vae), 1e-5);

  // Two shards and their index.
  const std::string sharded = FreshTmpDir("cog_vae_sharded");
  TensorMap a, b;
  std::ofstream index(sharded + "/diffusion_pytorch_model.safetensors.index.json");
  index << R"({"metadata": {"total_size": 1}, "weight_map": {)";
  int i = 0;
  for (const auto& [name, t] : weights) {
    const bool first = i < 100;
    (first ? a : b)[name] = t;
    index << (i++ ? ", " : "") << json::Quote(name) << ": "
          << (first ? R"("diffusion_pytorch_model-00001-of-00002.safetensors")"
                    : R"("diffusion_pytorch_model-00002-of-00002.safetensors")");
  }
  index << "}}";
  index.close();
  nn::SaveSafetensors(sharded + "/diffusion_pytorch_model-00001-of-00002.safetensors", a);
  nn::SaveSafetensors(sharded + "/diffusion_pytorch_model-00002-of-00002.safetensors", b);
  WriteDiffusersConfig(sharded + "/config.json");
  EXPECT_LE(Dec3Error(*LoadVae(sharded)), 1e-5);

  // bf16 on disk (as the released 2B/5B folders ship it): converted to f32 parameters.
  const std::string bf = FreshTmpDir("cog_vae_bf16");
  TensorMap bf16;
  for (const auto& [name, t] : weights) bf16[name] = ops::Cast(t, kBF16);
  nn::SaveSafetensors(bf + "/diffusion_pytorch_model.safetensors", bf16);
  WriteDiffusersConfig(bf + "/config.json");
  auto bvae = LoadVae(bf);
  EXPECT_EQ(bvae->FindParameter("decoder.conv_out.conv.weight").dtype(), kF32);
  const double err = Dec3Error(*bvae);
  EXPECT_GT(err, 0);
  EXPECT_LE(err, 0.05);  // bf16 weights: 8-bit mantissas, ~2^-9 per weight
}

TEST(CogVideoXVaeLoadTest, ComputeDtypeFollowsTheRequest) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  auto vae = testing::TinyVae(kF64);
  EXPECT_EQ(vae->FindParameter("encoder.conv_in.conv.weight").dtype(), kF64);
  ExpectErrorContains(
      [] {
        LoadVae(VaeFixtureFile("tiny_a.weights.safetensors"), Device::CPU(), kI64,
                testing::TinyVaeConfig());
      },
      {"compute dtype must be floating"});
}

TEST(CogVideoXVaeLoadTest, HostileWeightsNameTheKey) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  const std::string dir = FreshTmpDir("cog_vae_hostile");
  const TensorMap weights = FixtureWeights();

  TensorMap missing = weights;
  missing.erase("decoder.up_blocks.1.resnets.2.norm2.conv_y.conv.weight");
  nn::SaveSafetensors(dir + "/missing.safetensors", missing);
  ExpectErrorContains(
      [&] { LoadVae(dir + "/missing.safetensors", Device::CPU(), kF32, testing::TinyVaeConfig()); },
      {"decoder.up_blocks.1.resnets.2.norm2.conv_y.conv.weight"});

  TensorMap wrong = weights;
  wrong["encoder.mid_block.resnets.1.conv2.conv.weight"] = Tensor::Zeros({16, 16, 3, 3, 1});
  nn::SaveSafetensors(dir + "/wrong.safetensors", wrong);
  ExpectErrorContains(
      [&] { LoadVae(dir + "/wrong.safetensors", Device::CPU(), kF32, testing::TinyVaeConfig()); },
      {"encoder.mid_block.resnets.1.conv2.conv.weight", "[16, 16, 3, 3, 1]", "[16, 16, 3, 3, 3]"});

  TensorMap extra = weights;
  extra["encoder.quant_conv.weight"] = Tensor::Zeros({2});
  nn::SaveSafetensors(dir + "/extra.safetensors", extra);
  ExpectErrorContains(
      [&] { LoadVae(dir + "/extra.safetensors", Device::CPU(), kF32, testing::TinyVaeConfig()); },
      {"encoder.quant_conv.weight"});

  // No config.json next to the file: the 2B defaults, which do not fit the tiny file; the error
  // comes before the full-size model is allocated and names the key, both shapes and the source.
  ExpectErrorContains([&] { LoadVae(dir + "/wrong.safetensors"); },
                      {"encoder.conv_in.conv.weight", "[8, 3, 3, 3, 3]", "[128, 3, 3, 3, 3]",
                       "CogVideoX-2B defaults"});
}

TEST(CogVideoXVaeConfigTest, ReadsBothFormatsAndRefusesWhatItCannotRun) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  const CogVideoXVaeConfig tiny = testing::TinyVaeConfig();
  EXPECT_EQ(tiny.block_out_channels, (std::vector<int64_t>{8, 16, 16, 16}));
  EXPECT_EQ(tiny.norm_num_groups, 4);
  EXPECT_EQ(tiny.encode_frame_batch, 8);
  EXPECT_EQ(tiny.decode_latent_batch, 2);
  EXPECT_TRUE(CogVideoXVaeConfig::FromJson(json::Parse(tiny.ToJson())) == tiny);
  EXPECT_EQ(CogVideoXVaeConfig::CogVideoX5B().scaling_factor, 0.7);

  auto parse = [](const std::string& text) {
    return CogVideoXVaeConfig::FromJson(json::Parse(text), "test.json");
  };
  ExpectErrorContains([&] { parse(R"({"latent_chanels": 16})"); },
                      {"test.json", "unknown", "latent_chanels"});
  ExpectErrorContains([&] { parse(R"({"use_quant_conv": true})"); }, {"use_quant_conv"});
  ExpectErrorContains([&] { parse(R"({"act_fn": "gelu"})"); }, {"act_fn"});
  ExpectErrorContains([&] { parse(R"({"down_block_types": ["DownBlock2D"]})"); },
                      {"down_block_types", "DownBlock2D"});
  ExpectErrorContains([&] { parse(R"({"block_out_channels": [8, 12]})"); },
                      {"block_out_channels", "norm_num_groups"});
  ExpectErrorContains([&] { parse(R"({"layers_per_block": 100000000})"); }, {"layers_per_block"});
  ExpectErrorContains([&] { parse(R"({"temporal_compression_ratio": 3})"); },
                      {"temporal_compression_ratio"});
  ExpectErrorContains([&] { parse(R"({"AutoencoderKLCogVideoX": {}, "use_tiling": true})"); },
                      {"use_tiling"});
  ExpectErrorContains([&] { parse(R"({"block_out_channels": "128"})"); },
                      {"block_out_channels", "array"});
}

TEST(CogVideoXVaeInputsTest, WrongShapesAreNamed) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  auto vae = testing::TinyVae();
  ExpectErrorContains(
      [&] {
        vae->Encode(Tensor::Zeros({1, 4, 1, 16, 16}));
      },
      {"encode", "[B, 3, T, H, W]", "[1, 4, 1, 16, 16]"});
  ExpectErrorContains(
      [&] {
        vae->Encode(Tensor::Zeros({1, 3, 1, 4, 16}));
      },
      {"encode", "8x8 pixels"});
  ExpectErrorContains(
      [&] {
        vae->DecodeUnscaled(Tensor::Zeros({1, 8, 1, 2, 2}));
      },
      {"decode", "[B, 16, T >= 1, h, w]"});
}

}  // namespace
}  // namespace sdpo::cogvideox
