// Wan2.1 configs: presets and their parameter counts, the official / diffusers JSON, and the
// parameter enumeration against the module tree.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nn/init.h"
#include "tests/error_testing.h"
#include "tests/models/wan21/wan_test_util.h"

namespace sdpo::wan21 {
namespace {

void ExpectError(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  sdpo::testing::ExpectErrorContains(fn, parts);
}

TEST(WanConfigTest, PresetParameterCounts) {
  const WanConfig small = WanConfig::Preset("1.3b");
  EXPECT_EQ(small.dim, 1536);
  EXPECT_EQ(small.num_heads, 12);
  EXPECT_EQ(small.head_dim(), 128);
  EXPECT_EQ(small.rope_axes(), (std::array<int64_t, 3>{44, 42, 42}));
  EXPECT_EQ(ParameterShapes(small).size(), 825u);
  EXPECT_EQ(NumParameters(small), 1'418'996'800);
  const WanConfig big = WanConfig::Preset("T2V-14B");
  EXPECT_EQ(big.dim, 5120);
  EXPECT_EQ(big.num_layers, 40);
  EXPECT_EQ(ParameterShapes(big).size(), 1095u);
  EXPECT_EQ(NumParameters(big), 14'288'491'584);
  ExpectError([] { WanConfig::Preset("7b"); }, {"unknown Wan2.1 preset", "7b"});
}

// The module tree registers exactly the enumerated names, shapes and order; for tiny variants
// and for the 1.3B widths (one block, weights zero-filled without random draws).
TEST(WanConfigTest, ModuleMatchesParameterShapes) {
  std::vector<WanConfig> configs;
  WanConfig tiny;
  tiny.dim = 32;
  tiny.ffn_dim = 40;
  tiny.freq_dim = 8;
  tiny.text_dim = 12;
  tiny.text_len = 4;
  tiny.num_heads = 2;
  tiny.num_layers = 3;
  configs.push_back(tiny);
  tiny.qk_norm = false;
  tiny.cross_attn_norm = false;
  tiny.patch_size = {2, 1, 3};
  tiny.out_dim = 5;
  configs.push_back(tiny);
  WanConfig wide = WanConfig::Preset("1.3b");
  wide.num_layers = 1;
  configs.push_back(wide);
  for (const WanConfig& c : configs) {
    nn::SkipInitGuard skip;
    WanModel m(c);
    auto expected = ParameterShapes(c);
    auto got = m.NamedParameters();
    ASSERT_EQ(got.size(), expected.size()) << c.ToJson();
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].first, expected[i].first);
      EXPECT_EQ(got[i].second.shape(), expected[i].second) << got[i].first;
    }
    EXPECT_EQ(m.NumParameters(), NumParameters(c));
  }
  // 1.3B = the globals + 30 identical blocks.
  const WanConfig full = WanConfig::Preset("1.3b");
  WanConfig zero = full;
  zero.num_layers = 0;
  EXPECT_EQ(NumParameters(zero) + 30 * (NumParameters(wide) - NumParameters(zero)), 1'418'996'800);
}

TEST(WanConfigTest, OfficialJsonFromTheFixtures) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto f = testing::OpenFixture("tiny_a.weights.safetensors");
  const WanConfig c = WanConfig::FromJsonString(f->metadata().at("config"));
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.head_dim(), 16);
  EXPECT_EQ(c.rope_axes(), (std::array<int64_t, 3>{8, 4, 4}));
  EXPECT_EQ(c.text_len, 16);
  EXPECT_EQ(c.text_dim, 48);
  EXPECT_EQ(c.freq_dim, 32);
  EXPECT_EQ(c.eps, 1e-6);
  // Round trip through the official JSON.
  EXPECT_EQ(WanConfig::FromJsonString(c.ToJson()), c);
}

TEST(WanConfigTest, ReleasedConfigJsonAndDiffusersConfig) {
  // The config.json of Wan-AI/Wan2.1-T2V-1.3B (official keys plus diffusers bookkeeping).
  const WanConfig a = WanConfig::FromJsonString(
      R"({"_class_name": "WanModel", "_diffusers_version": "0.30.0", "dim": 1536, "eps": 1e-06,
          "ffn_dim": 8960, "freq_dim": 256, "in_dim": 16, "model_type": "t2v", "num_heads": 12,
          "num_layers": 30, "out_dim": 16, "text_len": 512})");
  EXPECT_EQ(a, WanConfig::Preset("1.3b"));
  // A diffusers WanTransformer3DModel config.json (14B).
  const WanConfig b = WanConfig::FromJsonString(
      R"({"_class_name": "WanTransformer3DModel", "added_kv_proj_dim": null,
          "attention_head_dim": 128, "cross_attn_norm": true, "eps": 1e-06, "ffn_dim": 13824,
          "freq_dim": 256, "image_dim": null, "in_channels": 16, "num_attention_heads": 40,
          "num_layers": 40, "out_channels": 16, "patch_size": [1, 2, 2],
          "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": 1024, "text_dim": 4096})");
  EXPECT_EQ(b, WanConfig::Preset("14b"));
  // Defaults of WanModel(**{}) are the official constructor's.
  const WanConfig d = WanConfig::FromJsonString("{}");
  EXPECT_EQ(d.dim, 2048);
  EXPECT_EQ(d.num_layers, 32);
}

TEST(WanConfigTest, BadConfigsNameTheKey) {
  ExpectError([] { WanConfig::FromJsonString(R"({"dim": 64, "num_head": 4})", "cfg.json"); },
              {"cfg.json", "num_head"});
  ExpectError([] { WanConfig::FromJsonString(R"({"dim": "64"})"); }, {"dim", "integer"});
  ExpectError([] { WanConfig::FromJsonString(R"({"dim": 64, "num_heads": 5})"); },
              {"not a multiple of num_heads"});
  ExpectError([] { WanConfig::FromJsonString(R"({"model_type": "i2v"})"); }, {"model_type", "i2v"});
  ExpectError([] { WanConfig::FromJsonString(R"({"window_size": [8, 8]})"); }, {"window_size"});
  ExpectError([] { WanConfig::FromJsonString(R"({"patch_size": [1, 2]})"); },
              {"patch_size", "3 integers"});
  ExpectError([] { WanConfig::FromJsonString("[1]"); }, {"JSON object"});
  ExpectError(
      [] {
        WanConfig::FromJsonString(R"({"num_attention_heads": 2, "attention_head_dim": 16,
                                      "image_dim": 1280})");
      },
      {"image_dim", "T2V"});
}

}  // namespace
}  // namespace sdpo::wan21
