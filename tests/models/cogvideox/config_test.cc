// CogVideoX config: presets, diffusers JSON, parameter shapes and counts (without allocating).
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "io/json.h"
#include "tensor/error.h"
#include "tests/models/cogvideox/cog_test_util.h"

namespace sdpo::cogvideox {
namespace {

TEST(ConfigTest, PresetParameterCounts) {
  const CogVideoXConfig c2 = CogVideoXConfig::Preset("2b");
  EXPECT_EQ(c2.inner_dim(), 1920);
  EXPECT_FALSE(c2.use_rotary_positional_embeddings);
  EXPECT_EQ(ParameterShapes(c2).size(), 736u);
  EXPECT_EQ(NumParameters(c2), 1693783872);
  const CogVideoXConfig c5 = CogVideoXConfig::Preset("CogVideoX-5B");
  EXPECT_EQ(c5.inner_dim(), 3072);
  EXPECT_TRUE(c5.use_rotary_positional_embeddings);
  EXPECT_EQ(c5.rope_axes(), (std::array<int64_t, 3>{16, 24, 24}));
  EXPECT_EQ(ParameterShapes(c5).size(), 1024u);
  EXPECT_EQ(NumParameters(c5), 5570283072);
  auto shapes = ParameterShapes(c2);
  EXPECT_EQ(shapes[0].first, "patch_embed.proj.weight");
  EXPECT_EQ(shapes[0].second, (Shape{1920, 16, 2, 2}));
  EXPECT_THROW(CogVideoXConfig::Preset("7b"), Error);
}

TEST(ConfigTest, FixtureJsonAndShapesMatchWeights) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  for (const char* name : {"tiny_2b", "tiny_5b"}) {
    const CogVideoXConfig c = testing::TinyConfig(name);
    EXPECT_EQ(c, CogVideoXConfig::FromJsonString(c.ToJson()));
    auto f = testing::OpenFixture(std::string(name) + ".weights.safetensors");
    auto shapes = ParameterShapes(c);
    EXPECT_EQ(shapes.size(), 64u);
    EXPECT_EQ(shapes.size(), f->names().size());
    for (const auto& [key, shape] : shapes) {
      const TensorEntry& e = f->at(key);
      EXPECT_EQ(Shape(e.shape.begin(), e.shape.end()), shape) << key;
    }
    // The model registers exactly these names and shapes (nn::Attention registers its qk-norms
    // after the projections; ParameterShapes lists diffusers' order).
    CogVideoXModel m(c);
    std::map<std::string, Shape> want(shapes.begin(), shapes.end());
    auto params = m.NamedParameters();
    ASSERT_EQ(params.size(), shapes.size());
    for (const auto& [key, p] : params) {
      ASSERT_TRUE(want.count(key)) << key;
      EXPECT_EQ(p.shape(), want.at(key)) << key;
    }
  }
  EXPECT_EQ(NumParameters(testing::TinyConfig("tiny_2b")), 98064);
  EXPECT_EQ(NumParameters(testing::TinyConfig("tiny_5b")), 155184);
}

void ExpectError(const std::string& json, const std::string& needle) {
  try {
    CogVideoXConfig::FromJsonString(json, "test.json");
    ADD_FAILURE() << "no error for " << json;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ConfigTest, JsonErrors) {
  ExpectError(R"({"num_layers": 2, "bogus": 1})", "unknown key \"bogus\"");
  ExpectError(R"({"num_layers": "two"})", "\"num_layers\" must be an integer");
  ExpectError(R"({"patch_size_t": 2})", "patch_size_t");
  ExpectError(R"({"ofs_embed_dim": 512})", "ofs_embed_dim");
  ExpectError(R"({"use_learned_positional_embeddings": true})", "learned");
  ExpectError(R"({"activation_fn": "gelu"})", "activation_fn");
  ExpectError(R"([1, 2])", "JSON object");
  // diffusers' own keys and null out_channels.
  CogVideoXConfig c = CogVideoXConfig::FromJsonString(
      R"({"_class_name": "CogVideoXTransformer3DModel", "out_channels": null,
          "in_channels": 8})");
  EXPECT_EQ(c.out_channels, 8);
}

}  // namespace
}  // namespace sdpo::cogvideox
