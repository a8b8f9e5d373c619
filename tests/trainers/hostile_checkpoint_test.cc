// Hostile or mismatched model checkpoints given to the trainer (//trainers:model_factory):
// configs with sizes no model has, configs that disagree with the file's tensors, and NaN/Inf
// weights are refused naming the key, before anything is allocated from the config. The test
// runs under a data-segment limit, so a runaway allocation fails fast instead of swapping.
#include <sys/resource.h>

#include <regex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "models/cogvideox/checkpoint.h"
#include "models/wan21/checkpoint.h"
#include "nn/init.h"
#include "tests/error_testing.h"
#include "tests/trainers/tiny_wan.h"
#include "trainers/model_factory.h"

namespace sdpo::trainers {
namespace {

using sdpo::testing::ExpectErrorContains;
using sdpo::testing::FreshTmpDir;

// 2 GiB of heap for the whole test: the tiny models need a few MiB.
class MemoryLimit : public ::testing::Environment {
 public:
  void SetUp() override {
    const rlimit limit = {rlim_t{2} << 30, rlim_t{2} << 30};
    ASSERT_EQ(::setrlimit(RLIMIT_DATA, &limit), 0);
  }
};
const auto* const kMemoryLimit = ::testing::AddGlobalTestEnvironment(new MemoryLimit);

// `src` rewritten to `dst` with the metadata config's integer `key` set to `value` and, when
// `nan_tensor` is given, a NaN as that tensor's first value.
void Rewrite(const std::string& src, const std::string& dst, const std::string& key,
             const std::string& value, const std::string& nan_tensor = "") {
  auto in = SafetensorsFile::Open(src);
  std::map<std::string, std::string> meta = in->metadata();
  if (!key.empty()) {
    const std::regex field("\"" + key + "\":-?[0-9]+");
    ASSERT_TRUE(std::regex_search(meta.at("config"), field)) << key;
    meta["config"] = std::regex_replace(meta.at("config"), field, "\"" + key + "\":" + value);
  }
  std::vector<std::vector<float>> keep;
  std::vector<TensorToWrite> out;
  for (const TensorEntry& e : in->tensors()) {
    keep.push_back(ReadAsF32(e));
    if (e.name == nan_tensor) keep.back()[0] = std::nanf("");
    out.push_back({e.name, SafetensorsDType::kF32, e.shape, keep.back().data(),
                   keep.back().size() * sizeof(float)});
  }
  WriteSafetensors(dst, out, meta);
}

std::string TinyWan(const std::string& dir) {
  nn::SetInitSeed(1);
  const std::string path = dir + "/wan.safetensors";
  wan21::SaveWeights(wan21::WanModel(testing::TinyWanConfig()), path);
  return path;
}

TEST(HostileCheckpointTest, WanConfigsOutOfRangeNameTheirKey) {
  const std::string dir = FreshTmpDir("wan_hostile");
  const std::string good = TinyWan(dir);
  EXPECT_NE(LoadTrainModel("wan21", good).model, nullptr);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"num_layers", "1000000"},     {"dim", "1000000000"}, {"ffn_dim", "1000000000000"},
      {"text_len", "1099511627776"}, {"num_heads", "-3"},
  };
  for (const auto& [key, value] : cases) {
    const std::string path = dir + "/" + key + ".safetensors";
    Rewrite(good, path, key, value);
    ExpectErrorContains([&] { LoadTrainModel("wan21", path); },
                        {path, "config key \"" + key + "\" is " + value, "outside the supported"});
  }
}

TEST(HostileCheckpointTest, AWanConfigThatDisagreesWithTheTensorsNamesTheKey) {
  const std::string dir = FreshTmpDir("wan_mismatch");
  const std::string good = TinyWan(dir);  // 2 layers, ffn_dim 64
  Rewrite(good, dir + "/layers.safetensors", "num_layers", "300");
  ExpectErrorContains([&] { LoadTrainModel("wan21", dir + "/layers.safetensors"); },
                      {"config key \"num_layers\" is 300 but the file holds 2 blocks"});
  Rewrite(good, dir + "/ffn.safetensors", "ffn_dim", "4096");
  ExpectErrorContains([&] { LoadTrainModel("wan21", dir + "/ffn.safetensors"); },
                      {"config key \"ffn_dim\" is 4096", "blocks.0.ffn.0.weight"});
}

TEST(HostileCheckpointTest, NonFiniteWeightsAreRefusedNamingTheTensor) {
  const std::string dir = FreshTmpDir("wan_nan");
  Rewrite(TinyWan(dir), dir + "/nan.safetensors", "", "", "blocks.1.ffn.2.weight");
  ExpectErrorContains([&] { LoadTrainModel("wan21", dir + "/nan.safetensors"); },
                      {"non-finite values in 1 tensor(s)", "blocks.1.ffn.2.weight", "nan"});
}

TEST(HostileCheckpointTest, CogVideoXConfigsAreCheckedBeforeAllocating) {
  const cogvideox::CogVideoXConfig c = testing::TinyCogVideoXConfig();
  nn::SetInitSeed(3);
  const std::string dir = FreshTmpDir("cog_hostile");
  const std::string good = dir + "/cog.safetensors";
  cogvideox::SaveWeights(cogvideox::CogVideoXModel(c), good);
  EXPECT_NE(LoadTrainModel("cogvideox-2b", good).model, nullptr);
  Rewrite(good, dir + "/layers.safetensors", "num_layers", "1000000");
  ExpectErrorContains([&] { LoadTrainModel("cogvideox-2b", dir + "/layers.safetensors"); },
                      {"config key \"num_layers\" is 1000000"});
  Rewrite(good, dir + "/heads.safetensors", "attention_head_dim", "1000");
  ExpectErrorContains([&] { LoadTrainModel("cogvideox-2b", dir + "/heads.safetensors"); },
                      {"shape mismatch for",
                       "\"patch_embed.proj.weight\": expected shape "
                       "[2000, 4, 2, 2], found [16, 4, 2, 2]"});
  Rewrite(good, dir + "/three.safetensors", "num_layers", "3");
  ExpectErrorContains([&] { LoadTrainModel("cogvideox-2b", dir + "/three.safetensors"); },
                      {"missing key(s)", "transformer_blocks.1."});
}

TEST(HostileCheckpointTest, AMissingConfigHintsAtConfigJsonNotAnSdpoFlag) {
  const std::string dir = FreshTmpDir("cog_noconfig");
  std::vector<float> v(4, 0.f);
  WriteSafetensors(dir + "/w.safetensors",
                   {{"proj_out.bias", SafetensorsDType::kF32, {4}, v.data(), v.size() * 4}});
  ExpectErrorContains(
      [&] { LoadTrainModel("cogvideox-2b", dir + "/w.safetensors"); },
      {"put the model's diffusers config.json next to the weights, at " + dir + "/config.json"});
}

}  // namespace
}  // namespace sdpo::trainers
