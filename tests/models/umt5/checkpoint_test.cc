// Weight loading: the transformers <-> official name table, config inference
// from the shapes, a t5_config.json beside the weights, prefixes, and errors
// that name the file and the key.
#include "models/umt5/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "nn/checkpoint_io.h"
#include "tests/error_testing.h"
#include "tests/models/fixture_util.h"

namespace sdpo::umt5 {
namespace {

using testing::ExpectErrorContains;
using testing::FixturePath;

TEST(NameTableTest, TransformersNamesMapBothWays) {
  EXPECT_EQ(*TransformersToOfficial("shared.weight", false), "token_embedding.weight");
  EXPECT_EQ(*TransformersToOfficial("encoder.embed_tokens.weight", true), "token_embedding.weight");
  EXPECT_EQ(*TransformersToOfficial("encoder.block.3.layer.1.DenseReluDense.wi_0.weight", false),
            "blocks.3.ffn.gate.0.weight");
  EXPECT_EQ(*TransformersToOfficial("encoder.block.3.layer.1.DenseReluDense.wi_1.weight", false),
            "blocks.3.ffn.fc1.weight");
  EXPECT_EQ(*TransformersToOfficial("encoder.block.0.layer.0.SelfAttention."
                                    "relative_attention_bias.weight",
                                    true),
            "pos_embedding.embedding.weight");
  EXPECT_EQ(*TransformersToOfficial("encoder.block.5.layer.0.SelfAttention."
                                    "relative_attention_bias.weight",
                                    false),
            "blocks.5.pos_embedding.embedding.weight");
  EXPECT_FALSE(TransformersToOfficial("decoder.block.0.layer.0.SelfAttention.q.weight", false));
  EXPECT_FALSE(TransformersToOfficial("encoder.block.x.layer.0.SelfAttention.q.weight", false));
  for (const char* n : {"blocks.2.attn.o.weight", "blocks.0.norm2.weight", "norm.weight",
                        "blocks.1.pos_embedding.embedding.weight", "blocks.7.ffn.fc2.weight"}) {
    EXPECT_EQ(*TransformersToOfficial(*OfficialToTransformers(n), false), n);
  }
}

TEST(InferConfigTest, SizesFromTheShapes) {
  for (const char* dir : {"umt5", "t5"}) {
    const std::string path = FixturePath(std::string(dir) + "/tiny_a.weights.safetensors");
    if (path.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
    OfficialSource s = ToOfficialNames(OpenWeightFile(path));
    T5Config inferred = InferConfig(*s.source);
    T5Config ref = T5Config::FromFile(FixturePath(std::string(dir) + "/tiny_a.config.json"));
    EXPECT_EQ(inferred.vocab, ref.vocab);
    EXPECT_EQ(inferred.dim, ref.dim);
    EXPECT_EQ(inferred.dim_attn, ref.dim_attn);
    EXPECT_EQ(inferred.dim_ffn, ref.dim_ffn);
    EXPECT_EQ(inferred.num_heads, ref.num_heads);
    EXPECT_EQ(inferred.num_layers, ref.num_layers);
    EXPECT_EQ(inferred.shared_pos, ref.shared_pos) << dir;
  }
}

TEST(ConfigTest, OfficialSizesAndParameterCounts) {
  // The counts of the full-size name lists in shared/fixtures/{umt5,t5}.
  EXPECT_EQ(T5Config::UMT5Xxl().NumParameters(), 5680910336);
  EXPECT_EQ(T5Config::T5V11Xxl().NumParameters(), 4762310656);
  T5Config c = T5Config::FromJson(T5Config::UMT5Xxl().ToJson());
  EXPECT_EQ(c.vocab, 256384);
  EXPECT_EQ(c.text_len, 512);
  EXPECT_FALSE(c.shared_pos);
  ExpectErrorContains([] { T5Config::FromJson("{\"T5Encoder\": {\"vocab\": 3}}", "x.json"); },
                      {"x.json", "dim"});
  ExpectErrorContains(
      [] {
        T5Config::FromJson("{\"vocab\": 10, \"dim\": 8, \"num_heads\": 3, \"num_layers\": 1}",
                           "y.json");
      },
      {"y.json", "num_heads"});
}

TEST(LoadEncoderTest, ConfigBesideTheWeightsAndPrefixes) {
  const std::string path = FixturePath("t5/tiny_a.weights_hf.safetensors");
  if (path.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  const std::string dir = testing::FreshTmpDir("umt5_load");
  nn::TensorMap tensors = nn::ReadSafetensors(path);
  nn::TensorMap prefixed;
  for (const auto& [k, v] : tensors) prefixed["text_encoder." + k] = v;
  nn::SaveSafetensors(dir + "/model.safetensors", prefixed);
  // A config beside the weights wins over the shapes: a wrong one fails naming
  // the key.
  T5Config wrong = T5Config::FromFile(FixturePath("t5/tiny_a.config.json"));
  wrong.dim_ffn = 64;
  {
    std::FILE* f = std::fopen((dir + "/t5_config.json").c_str(), "w");
    std::fputs(wrong.ToJson().c_str(), f);
    std::fclose(f);
  }
  ExpectErrorContains([&] { LoadEncoder(dir + "/model.safetensors"); }, {"ffn.fc1.weight", "64"});
  std::filesystem::remove(dir + "/t5_config.json");
  LoadReport report;
  auto encoder = LoadEncoder(dir + "/model.safetensors", {}, &report);
  EXPECT_EQ(report.prefix, "text_encoder.");
  EXPECT_EQ(report.format, NameFormat::kTransformers);
  EXPECT_EQ(report.config_source, "tensor shapes");
  EXPECT_TRUE(encoder->config().shared_pos);
  EXPECT_EQ(report.tensors, 30);  // the tied embedding counted once
}

// The config.json of a diffusers text_encoder/ folder (transformers T5Config, CogVideoX's T5 v1.1)
// gives the sizes; a Wan folder's config.json (the DiT's, no d_model) is not taken for one.
TEST(LoadEncoderTest, TransformersConfigJsonOfATextEncoderFolder) {
  const std::string path = FixturePath("t5/tiny_a.weights_hf.safetensors");
  if (path.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  const std::string dir = testing::FreshTmpDir("umt5_transformers_config");
  std::filesystem::copy_file(path, dir + "/model.safetensors");
  auto write = [&](const std::string& text) { std::ofstream(dir + "/config.json") << text; };
  // The fixture's T5Config_equivalent with d_kv 6 (not 12): the config wins over the shapes and
  // the mismatch names the tensor.
  const std::string hf =
      R"({"architectures": ["T5EncoderModel"], "model_type": "t5", "vocab_size": 300,
          "d_model": 48, "d_kv": 12, "d_ff": 96, "num_layers": 3, "num_heads": 4,
          "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
          "layer_norm_epsilon": 1e-06, "feed_forward_proj": "gated-gelu",
          "dense_act_fn": "gelu_new", "is_gated_act": true, "torch_dtype": "float32"})";
  write(std::string(hf).replace(hf.find("\"d_kv\": 12"), 10, "\"d_kv\": 6"));
  ExpectErrorContains([&] { LoadEncoder(dir); }, {"attn.q.weight", "24"});
  write(hf);
  LoadReport report;
  auto encoder = LoadEncoder(dir, {}, &report);
  EXPECT_EQ(report.config_source, dir + "/config.json");
  const T5Config ref = T5Config::FromFile(FixturePath("t5/tiny_a.config.json"));
  const T5Config& c = encoder->config();
  EXPECT_EQ(c.ToJson(), T5Config::FromJson(hf).ToJson());
  EXPECT_EQ(c.vocab, ref.vocab);
  EXPECT_EQ(c.dim, ref.dim);
  EXPECT_EQ(c.dim_attn, ref.dim_attn);
  EXPECT_EQ(c.dim_ffn, ref.dim_ffn);
  EXPECT_EQ(c.num_heads, ref.num_heads);
  EXPECT_EQ(c.num_layers, ref.num_layers);
  EXPECT_EQ(c.num_buckets, ref.num_buckets);
  EXPECT_TRUE(c.shared_pos);
  EXPECT_EQ(c.text_len, 226);  // the CogVideoX pipeline's
  // Original T5 (relu FFN) and other models are refused naming the key.
  ExpectErrorContains(
      [&] { T5Config::FromJson(std::string(hf).replace(hf.find("gated-gelu"), 10, "relu")); },
      {"feed_forward_proj", "relu"});
  ExpectErrorContains(
      [&] { T5Config::FromJson(std::string(hf).replace(hf.find("\"t5\""), 4, "\"bert\"")); },
      {"model_type", "bert"});
  // A config.json without d_model (a Wan folder's DiT config) is not read as the encoder's.
  write(R"({"_class_name": "WanModel", "dim": 1536, "num_heads": 12})");
  LoadEncoder(dir, {}, &report);
  EXPECT_EQ(report.config_source, "tensor shapes");
}

// The official file format: torch.save(state_dict) (tools/make_weight_variants.py pth, from the
// fixture weights; f32 and bf16), read by the pickle reader that executes nothing.
TEST(LoadEncoderTest, PthFilesLoadLikeTheSafetensors) {
  const std::string path = FixturePath("umt5/tiny_a.weights.safetensors");
  if (path.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  auto f = testing::OpenFixture("umt5/tiny_a.case2.safetensors");
  const Tensor ids = testing::LoadFixtureTensor(*f, "ids");
  const Tensor mask = testing::LoadFixtureTensor(*f, "mask");
  const Tensor ref = testing::LoadFixtureTensor(*f, "hidden");
  NoGradGuard no_grad;
  LoadReport report;
  auto f32 = LoadEncoder("tests/models/umt5/testdata/umt5_tiny_a.pth", {}, &report);
  EXPECT_EQ(report.tensors, 32);
  EXPECT_EQ(f32->FindParameter("blocks.0.attn.q.weight").dtype(), kF32);
  EXPECT_LE(testing::RelL2(f32->Forward(ids, mask), ref), 1e-5);
  auto bf16 = LoadEncoder("tests/models/umt5/testdata/umt5_tiny_a.bf16.pth");
  EXPECT_EQ(bf16->FindParameter("blocks.0.attn.q.weight").dtype(), kBF16);  // kept in bf16
  // bf16 weights (8-bit significands: unit roundoff 2^-8) through 3 blocks.
  EXPECT_LE(testing::RelL2(bf16->Forward(ids, mask), ref), 2e-2);
}

TEST(LoadEncoderTest, BadFilesFailNamingFileAndKey) {
  const std::string path = FixturePath("umt5/tiny_a.weights.safetensors");
  if (path.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  const std::string dir = testing::FreshTmpDir("umt5_bad");
  nn::TensorMap tensors = nn::ReadSafetensors(path);
  tensors.erase("blocks.1.attn.k.weight");
  nn::SaveSafetensors(dir + "/missing.safetensors", tensors);
  LoadOptions options;
  options.config = T5Config::FromFile(FixturePath("umt5/tiny_a.config.json"));
  ExpectErrorContains([&] { LoadEncoder(dir + "/missing.safetensors", options); },
                      {"missing.safetensors", "blocks.1.attn.k.weight"});
  ExpectErrorContains([&] { LoadEncoder(dir + "/models_t5_umt5-xxl-enc-bf16.pth"); },
                      {"models_t5_umt5-xxl-enc-bf16.pth"});
  // Ids outside the table.
  auto encoder = LoadEncoder(path, options);
  NoGradGuard no_grad;
  ExpectErrorContains(
      [&] {
        encoder->Forward(Tensor::FromVector(std::vector<int64_t>{5, 300}, {1, 2}), {});
      },
      {"id 300", "[0, 300)"});
}

// Resident file-backed memory of this process (kB), from /proc/self/status.
int64_t RssFileKb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("RssFile:", 0) == 0) return std::stoll(line.substr(8));
  }
  return -1;
}

TEST(LoadEncoderTest, CopiedFilePagesDoNotStayResident) {
  // The 11 GB encoder must not count twice (its parameters and its mapped file) while loading.
  const std::string dir = testing::FreshTmpDir("umt5_pages");
  const int64_t n = int64_t{24} << 20;  // 96 MiB of f32
  nn::SaveSafetensors(dir + "/big.safetensors", {{"x", Tensor::Full({n}, 0.5)}});
  auto source = nn::SafetensorsSource::Open(dir + "/big.safetensors");
  Tensor dst = Tensor::Empty({n}, kF32);
  const int64_t before = RssFileKb();
  if (before < 0) GTEST_SKIP() << "no RssFile in /proc/self/status";
  source->CopyTo("x", dst);
  EXPECT_EQ(dst.at({n - 1}), 0.5);
  // Without the release the whole 96 MiB would be resident; allow a few partial pieces.
  EXPECT_LT(RssFileKb() - before, 16 * 1024);
  Tensor half = Tensor::Empty({n}, kBF16);  // the converting path releases too
  source->CopyTo("x", half);
  EXPECT_LT(RssFileKb() - before, 16 * 1024);
}

}  // namespace
}  // namespace sdpo::umt5
