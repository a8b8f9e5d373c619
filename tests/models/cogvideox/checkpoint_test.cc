// Loading CogVideoX checkpoints: save/load round trip, BF16 on disk, shards with an index and a
// config.json (the diffusers layout), key prefixes, and mismatched files (each error names the
// key and what was expected vs found).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tensor/error.h"
#include "tests/error_testing.h"
#include "tests/models/cogvideox/cog_test_util.h"

namespace sdpo::cogvideox {
namespace {

namespace fs = std::filesystem;
using testing::RelL2;

std::string TmpDir(const std::string& name) {
  return sdpo::testing::FreshTmpDir("cogvideox_ckpt_" + name);
}
void ExpectError(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  sdpo::testing::ExpectErrorContains(fn, parts);
}

Tensor Case1Out(CogVideoXModel& m) {
  auto f = testing::OpenFixture("tiny_2b.case1.safetensors");
  NoGradGuard ng;
  return m.ForwardBatch(testing::Load(*f, "in_hidden_states"),
                        testing::Load(*f, "in_encoder_hidden_states"),
                        testing::Load(*f, "in_timestep"));
}

// Writes named tensors (contiguous CPU copies) to a safetensors file.
void Write(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
           const std::map<std::string, std::string>& metadata = {}) {
  std::vector<Tensor> keep;
  std::vector<TensorToWrite> out;
  for (const auto& [name, t0] : tensors) {
    Tensor t = ops::Contiguous(t0);
    keep.push_back(t);
    out.push_back({name, ToSafetensorsDType(t.dtype()), t.shape(), t.raw_data(), t.nbytes()});
  }
  WriteSafetensors(path, out, metadata);
}

std::vector<std::pair<std::string, Tensor>> FixtureTensors(const std::string& model) {
  auto m = testing::TinyModel(model);
  std::vector<std::pair<std::string, Tensor>> v;
  for (auto& [name, p] : m->NamedParameters()) v.emplace_back(name, ops::Clone(p));
  return v;
}

TEST(CheckpointTest, SaveLoadRoundTripAndBf16) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  auto m = testing::TinyModel("tiny_2b");
  const Tensor ref = Case1Out(*m);
  const std::string dir = TmpDir("roundtrip");
  SaveWeights(*m, dir + "/w.safetensors");
  LoadReport r;
  auto again = LoadModel(dir + "/w.safetensors", std::nullopt, {}, &r);  // config from metadata
  EXPECT_EQ(again->config(), m->config());
  EXPECT_EQ(r.tensors, 64);
  EXPECT_EQ(r.values, 98064);
  EXPECT_EQ(r.dtypes.at("F32"), 64);
  EXPECT_LE(RelL2(Case1Out(*again), ref), 1e-6);
  // BF16 on disk, loaded into f32 parameters.
  m->CastParameters(kBF16);
  SaveWeights(*m, dir + "/bf16.safetensors", /*keep_dtype=*/true);
  auto bf = LoadModel(dir + "/bf16.safetensors", std::nullopt, {}, &r);
  EXPECT_EQ(r.dtypes.at("BF16"), 64);
  EXPECT_EQ(bf->proj_out()->weight().dtype(), kF32);
  const double err = RelL2(Case1Out(*bf), ref);
  EXPECT_LE(err, 3e-2);
  EXPECT_GT(err, 0);
}

TEST(CheckpointTest, ShardsIndexConfigJsonAndPrefix) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  auto tensors = FixtureTensors("tiny_5b");
  const std::string dir = TmpDir("sharded");
  std::vector<std::pair<std::string, Tensor>> a(tensors.begin(), tensors.begin() + 30);
  std::vector<std::pair<std::string, Tensor>> b(tensors.begin() + 30, tensors.end());
  for (auto* part : {&a, &b}) {
    for (auto& [name, t] : *part) name = "transformer." + name;
  }
  Write(dir + "/diffusion_pytorch_model-00001-of-00002.safetensors", a);
  Write(dir + "/diffusion_pytorch_model-00002-of-00002.safetensors", b);
  std::ofstream idx(dir + "/diffusion_pytorch_model.safetensors.index.json");
  idx << "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {";
  for (size_t i = 0; i < tensors.size(); ++i) {
    idx << (i ? ", " : "") << "\"transformer." << tensors[i].first << "\": \""
        << (i < 30 ? "diffusion_pytorch_model-00001-of-00002.safetensors"
                   : "diffusion_pytorch_model-00002-of-00002.safetensors")
        << "\"";
  }
  idx << "}}";
  idx.close();
  fs::copy_file(testing::FixtureFile("tiny_5b.config.json"), dir + "/config.json");
  LoadReport r;
  auto m = LoadModel(dir, std::nullopt, {}, &r);
  EXPECT_EQ(r.prefix, "transformer.");
  EXPECT_EQ(r.tensors, 64);
  EXPECT_TRUE(m->config().use_rotary_positional_embeddings);
  auto f = testing::OpenFixture("tiny_5b.case1.safetensors");
  NoGradGuard ng;
  Tensor out = m->ForwardBatch(testing::Load(*f, "in_hidden_states"),
                               testing::Load(*f, "in_encoder_hidden_states"),
                               testing::Load(*f, "in_timestep"));
  EXPECT_LE(RelL2(out, testing::Load(*f, "out_sample", kF64)), 1e-5);
}

TEST(CheckpointTest, MismatchErrorsNameTheKey) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  const CogVideoXConfig c = testing::TinyConfig("tiny_2b");
  const std::string dir = TmpDir("errors");
  auto tensors = FixtureTensors("tiny_2b");
  // Missing key.
  {
    auto v = tensors;
    v.erase(v.begin() + 5);
    Write(dir + "/missing.safetensors", v);
    ExpectError([&] { LoadModel(dir + "/missing.safetensors", c); },
                {"missing key", "\"time_embedding.linear_1.bias\"", "expected shape [24]",
                 "missing.safetensors"});
  }
  // Wrong shape.
  {
    auto v = tensors;
    v[2].second = Tensor::Zeros({48, 41}, kF32);
    Write(dir + "/shape.safetensors", v);
    ExpectError([&] { LoadModel(dir + "/shape.safetensors", c); },
                {"shape mismatch", "\"patch_embed.text_proj.weight\"", "expected shape [48, 40]",
                 "found [48, 41]"});
  }
  // Integer dtype.
  {
    auto v = tensors;
    v[3].second = Tensor::Zeros({48}, kI64);
    Write(dir + "/dtype.safetensors", v);
    ExpectError([&] { LoadModel(dir + "/dtype.safetensors", c); },
                {"wrong dtype", "\"patch_embed.text_proj.bias\"", "I64"});
  }
  // Unexpected key: an error when strict, ignored and reported otherwise; the non-persistent
  // pos_embedding buffer is always ignored.
  {
    auto v = tensors;
    v.emplace_back("extra.weight", Tensor::Zeros({2}, kF32));
    v.emplace_back("patch_embed.pos_embedding", Tensor::Zeros({1, 43, 48}, kF32));
    Write(dir + "/extra.safetensors", v);
    ExpectError([&] { LoadModel(dir + "/extra.safetensors", c); },
                {"unexpected key", "extra.weight"});
    LoadOptions lax;
    lax.strict = false;
    LoadReport r;
    auto m = LoadModel(dir + "/extra.safetensors", c, lax, &r);
    EXPECT_EQ(r.ignored, std::vector<std::string>{"extra.weight"});
  }
  // The 5B weights into a 2B model.
  ExpectError([&] { LoadModel(testing::FixtureFile("tiny_5b.weights.safetensors"), c); },
              {"shape mismatch", "expected shape"});
  // No config in the metadata and no config.json beside the weights.
  Write(dir + "/noconfig.safetensors", tensors);
  ExpectError([&] { LoadModel(dir + "/noconfig.safetensors"); }, {"no config", "--config"});
  // The fixture weights carry their config in __metadata__["config"].
  std::string source;
  auto ck = ShardedCheckpoint::Open(testing::FixtureFile("tiny_2b.weights.safetensors"));
  EXPECT_EQ(ResolveConfig(*ck, &source), c);
  EXPECT_NE(source.find("metadata"), std::string::npos);
}

}  // namespace
}  // namespace sdpo::cogvideox
