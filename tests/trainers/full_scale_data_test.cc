// tools/data/full_scale.h at a tiny shape: the checkpoint folder loads through the model's own
// loader (one file or official shards + index, same values), the dataset opens through the
// trainer's dataset, the values are random, finite and a function of the seed.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "models/wan21/checkpoint.h"
#include "tensor/ops.h"
#include "tests/error_testing.h"
#include "tests/trainers/tiny_wan.h"
#include "tools/data/full_scale.h"
#include "trainers/data/preference_dataset.h"

namespace sdpo::tools {
namespace {

namespace fs = std::filesystem;
using sdpo::testing::FreshTmpDir;

std::vector<float> Values(const Tensor& t) {
  Tensor c = ops::Cast(t, kF32);
  const float* p = c.data<float>();
  return std::vector<float>(p, p + c.numel());
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(FullScaleData, CheckpointLoadsWithItsConfigAndOfficialFileNames) {
  const wan21::WanConfig config = trainers::testing::TinyWanConfig();
  const std::string dir = FreshTmpDir("full_scale_single");
  const WrittenFiles w = WriteRandomWanCheckpoint(dir, config);
  EXPECT_TRUE(fs::exists(fs::path(dir) / "config.json"));
  EXPECT_TRUE(fs::exists(fs::path(dir) / "diffusion_pytorch_model.safetensors"));
  EXPECT_FALSE(fs::exists(fs::path(dir) / "diffusion_pytorch_model.safetensors.index.json"));
  EXPECT_EQ(w.values, wan21::NumParameters(config));
  EXPECT_NE(
      ReadFile((fs::path(dir) / "config.json").string()).find("\"_class_name\": \"WanModel\""),
      std::string::npos);

  wan21::LoadReport report;
  std::unique_ptr<wan21::WanModel> model = wan21::LoadModel(dir, std::nullopt, {}, &report);
  EXPECT_TRUE(model->config() == config) << model->config().ToJson();
  EXPECT_EQ(report.tensors, static_cast<int64_t>(wan21::ParameterShapes(config).size()));
  ASSERT_EQ(report.dtypes.size(), 1u);
  EXPECT_EQ(report.dtypes.begin()->first, "BF16");
}

TEST(FullScaleData, ShardsAndIndexHoldTheSameValuesAsOneFile) {
  const wan21::WanConfig config = trainers::testing::TinyWanConfig();
  const std::string one = FreshTmpDir("full_scale_one"),
                    sharded = FreshTmpDir("full_scale_sharded");
  WriteRandomWanCheckpoint(one, config);
  RandomCheckpointOptions o;
  o.max_shard_bytes = 8 << 10;  // the tiny model's ~50 KiB in several shards
  const WrittenFiles w = WriteRandomWanCheckpoint(sharded, config, o);
  ASSERT_TRUE(fs::exists(fs::path(sharded) / "diffusion_pytorch_model.safetensors.index.json"));
  const size_t shards = w.files.size() - 2;  // config.json and the index
  ASSERT_GE(shards, 3u);
  char first[64];
  std::snprintf(first, sizeof(first), "diffusion_pytorch_model-00001-of-%05zu.safetensors", shards);
  EXPECT_TRUE(fs::exists(fs::path(sharded) / first)) << first;
  auto a = wan21::LoadModel(one);
  auto b = wan21::LoadModel(sharded);
  auto pa = a->NamedParameters(), pb = b->NamedParameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(Values(pa[i].second), Values(pb[i].second)) << pa[i].first;
  }
}

TEST(FullScaleData, WeightsAreRandomOfTheirLayersScaleAndDependOnTheSeed) {
  const wan21::WanConfig config =
      trainers::testing::TinyWanConfig(/*num_layers=*/2, /*ffn_dim=*/256);
  const std::string d0 = FreshTmpDir("full_scale_seed0"), d1 = FreshTmpDir("full_scale_seed1");
  WriteRandomWanCheckpoint(d0, config);
  RandomCheckpointOptions o;
  o.seed = 1;
  WriteRandomWanCheckpoint(d1, config, o);
  auto m0 = wan21::LoadModel(d0), m1 = wan21::LoadModel(d1);
  auto p0 = m0->NamedParameters(), p1 = m1->NamedParameters();
  for (size_t i = 0; i < p0.size(); ++i) {
    const std::string& name = p0[i].first;
    const std::vector<float> v = Values(p0[i].second);
    for (float x : v) ASSERT_TRUE(std::isfinite(x)) << name;
    if (name.find("norm") != std::string::npos) {
      const float want = name.find(".weight") != std::string::npos ? 1.0f : 0.0f;
      for (float x : v) ASSERT_EQ(x, want) << name;
      continue;
    }
    EXPECT_NE(v, Values(p1[i].second)) << name << " does not depend on the seed";
  }
  // The FFN's first weight [256, 32]: Xavier uniform, bound sqrt(6 / (32 + 256)); its sample std
  // (8192 values) is within 5% of bound / sqrt(3) (the standard error is ~1%).
  Tensor ffn0;
  for (const auto& [n, t] : p0) {
    if (n == "blocks.0.ffn.0.weight") ffn0 = t;
  }
  ASSERT_TRUE(ffn0.defined());
  const std::vector<float> w = Values(ffn0);
  ASSERT_EQ(w.size(), 256u * 32u);
  const double bound = std::sqrt(6.0 / (32 + 256));
  double sum = 0, sq = 0;
  for (float x : w) {
    ASSERT_LE(std::abs(x), bound * 1.004) << "outside the Xavier bound (bf16 rounding allowed)";
    sum += x;
    sq += double(x) * x;
  }
  const double mean = sum / w.size(), std = std::sqrt(sq / w.size() - mean * mean);
  EXPECT_NEAR(std, bound / std::sqrt(3.0), 0.05 * bound / std::sqrt(3.0));
}

TEST(FullScaleData, DatasetOpensWithTheTrainersSpecAndHoldsDistinctPairs) {
  const std::string dir = FreshTmpDir("full_scale_data");
  RandomPairsOptions o;
  o.latent = {4, 3, 4, 6};
  o.text_tokens = 6;
  o.text_dim = 8;
  o.pairs = 5;  // two writer shards (4 pairs per shard)
  WriteRandomPreferenceData(dir, o);
  data::DatasetSpec spec;
  spec.channels = 4;
  spec.text_dim = 8;
  spec.max_text_len = 6;
  auto ds = data::PreferenceDataset::Open(dir, spec);
  ASSERT_EQ(ds->size(), 5);
  EXPECT_EQ(ds->shard_files().size(), 2u);
  std::vector<std::vector<float>> winners;
  for (int64_t i = 0; i < ds->size(); ++i) {
    const data::PreferencePair p = ds->Get(i);
    EXPECT_EQ(p.winner.shape(), o.latent);
    EXPECT_EQ(p.loser.shape(), o.latent);
    EXPECT_EQ(p.context.shape(), (Shape{6, 8}));
    const std::vector<float> w = Values(p.winner), l = Values(p.loser);
    double diff = 0;
    for (size_t k = 0; k < w.size(); ++k) diff += std::abs(double(l[k]) - w[k]);
    EXPECT_GT(diff / w.size(), 0.1) << "loser equals the winner in pair " << i;
    for (const auto& other : winners) EXPECT_NE(w, other) << "pair " << i << " repeats";
    winners.push_back(w);
  }
}

TEST(FullScaleData, SamplingContextHasPromptAndNegative) {
  const std::string path = FreshTmpDir("full_scale_context") + "/context.safetensors";
  WriteRandomSamplingContext(path, 5, 8, 0);
  auto f = SafetensorsFile::Open(path);
  EXPECT_EQ(f->names(), (std::vector<std::string>{"context", "negative"}));
  EXPECT_EQ(f->at("context").shape, (std::vector<int64_t>{5, 8}));
  EXPECT_NE(ReadAsF32(f->at("context")), ReadAsF32(f->at("negative")));
}

TEST(FullScaleData, CommandLineNamesBadFlagsAndWritesWhatIsNamed) {
  const std::string dir = FreshTmpDir("full_scale_cli");
  const std::string cfg = dir + "/tiny.json";
  std::ofstream(cfg) << trainers::testing::TinyWanConfig().ToJson();
  auto run = [](std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return MakeFullScaleMain(static_cast<int>(argv.size()), argv.data());
  };
  EXPECT_EQ(run({"make_full_scale", "--bogus=1"}), 1);
  EXPECT_EQ(run({"make_full_scale", "--model=" + cfg}), 1);  // nothing to write
  EXPECT_EQ(run({"make_full_scale", "--model=" + cfg, "--latent=2x4", "--data_out=" + dir + "/d"}),
            1);
  ASSERT_EQ(run({"make_full_scale", "--model=" + cfg, "--checkpoint_out=" + dir + "/ckpt",
                 "--data_out=" + dir + "/data", "--latent=2x4x4", "--pairs=2", "--text_tokens=6",
                 "--context_out=" + dir + "/context.safetensors"}),
            0);
  EXPECT_TRUE(fs::exists(dir + "/ckpt/diffusion_pytorch_model.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/data/manifest.jsonl"));
  EXPECT_TRUE(fs::exists(dir + "/context.safetensors"));
}

}  // namespace
}  // namespace sdpo::tools
