// Loading Wan2.1 checkpoints: official and diffusers names (identical outputs), BF16 on disk,
// shards with an index, key prefixes, config resolution, and hostile or mismatched files (each
// error names the key and what was expected vs found).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "io/json.h"
#include "tests/error_testing.h"
#include "tests/models/wan21/wan_test_util.h"

namespace sdpo::wan21 {
namespace {

namespace fs = std::filesystem;
using testing::RelL2;

std::string TmpDir(const std::string& name) {
  return sdpo::testing::FreshTmpDir("wan21_ckpt_" + name);
}
void ExpectError(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  sdpo::testing::ExpectErrorContains(fn, parts);
}

// Every parameter of a and b equal (bitwise), by name.
void ExpectSameParameters(const WanModel& a, const WanModel& b) {
  auto pa = a.NamedParameters(), pb = b.NamedParameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].first, pb[i].first);
    EXPECT_EQ(testing::MaxAbsDiff(pa[i].second, pb[i].second), 0.0) << pa[i].first;
  }
}

// Outputs of two forwards of equal weights: the CPU kernels are not bitwise reproducible from
// call to call (attention's softmax sums depend on a scratch buffer's alignment), so equal
// weights give outputs equal to float rounding.
constexpr double kSameOutput = 1e-6;

// Runs case1 of the fixtures through a model.
Tensor Case1Out(WanModel& m) {
  auto f = testing::OpenFixture("tiny_a.case1.safetensors");
  testing::Case c = testing::LoadCase(*f);
  NoGradGuard ng;
  return m.ForwardList(c.x, c.t, c.context)[0];
}

// The fixture weights rewritten with edits: rename(name) -> new name ("" drops the tensor),
// and an optional replacement entry.
struct Edit {
  std::function<std::string(const std::string&)> rename = [](const std::string& n) { return n; };
  std::vector<TensorToWrite> extra;
  std::map<std::string, std::string> metadata;
};

std::string Rewrite(const std::string& dir, const std::string& file, const Edit& edit) {
  auto src = testing::OpenFixture("tiny_a.weights.safetensors");
  std::vector<TensorToWrite> out;
  for (const TensorEntry& e : src->tensors()) {
    std::string n = edit.rename(e.name);
    if (n.empty()) continue;
    TensorToWrite w;
    w.name = n;
    w.dtype = e.dtype;
    w.shape = e.shape;
    w.data = e.data;
    w.nbytes = e.nbytes;
    out.push_back(w);
  }
  for (const TensorToWrite& w : edit.extra) out.push_back(w);
  const std::string path = dir + "/" + file;
  WriteSafetensors(path, out, edit.metadata);
  return path;
}

std::map<std::string, std::string> ConfigMeta() {
  auto src = testing::OpenFixture("tiny_a.weights.safetensors");
  return {{"config", src->metadata().at("config")}};
}

TEST(WanNameTableTest, DiffusersNames) {
  EXPECT_EQ(OfficialToDiffusers("blocks.7.norm3.weight"), "blocks.7.norm2.weight");
  EXPECT_EQ(OfficialToDiffusers("blocks.0.self_attn.o.bias"), "blocks.0.attn1.to_out.0.bias");
  EXPECT_EQ(OfficialToDiffusers("blocks.29.cross_attn.norm_k.weight"),
            "blocks.29.attn2.norm_k.weight");
  EXPECT_EQ(OfficialToDiffusers("blocks.3.ffn.0.weight"), "blocks.3.ffn.net.0.proj.weight");
  EXPECT_EQ(OfficialToDiffusers("blocks.3.ffn.2.bias"), "blocks.3.ffn.net.2.bias");
  EXPECT_EQ(OfficialToDiffusers("blocks.3.modulation"), "blocks.3.scale_shift_table");
  EXPECT_EQ(OfficialToDiffusers("head.modulation"), "scale_shift_table");
  EXPECT_EQ(OfficialToDiffusers("head.head.weight"), "proj_out.weight");
  EXPECT_EQ(OfficialToDiffusers("time_projection.1.bias"), "condition_embedder.time_proj.bias");
  EXPECT_EQ(OfficialToDiffusers("text_embedding.2.weight"),
            "condition_embedder.text_embedder.linear_2.weight");
  EXPECT_EQ(OfficialToDiffusers("time_embedding.0.weight"),
            "condition_embedder.time_embedder.linear_1.weight");
  EXPECT_EQ(OfficialToDiffusers("patch_embedding.weight"), "patch_embedding.weight");
  EXPECT_EQ(OfficialToDiffusers("blocks.x.ffn.0.weight"), std::nullopt);
  EXPECT_EQ(OfficialToDiffusers("freqs"), std::nullopt);
  // Every 1.3B name maps to a distinct diffusers name and back.
  std::set<std::string> seen;
  for (const auto& [name, shape] : ParameterShapes(WanConfig::Preset("1.3b"))) {
    std::optional<std::string> d = OfficialToDiffusers(name);
    ASSERT_TRUE(d) << name;
    EXPECT_TRUE(seen.insert(*d).second) << *d;
    EXPECT_EQ(DiffusersToOfficial(*d), name);
  }
  EXPECT_EQ(seen.size(), 825u);
}

TEST(WanCheckpointTest, OfficialAndDiffusersNamesGiveIdenticalOutputs) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto official = testing::TinyModel();
  const Tensor ref = Case1Out(*official);
  const std::string dir = TmpDir("diffusers");
  const std::string path = dir + "/diffusion_pytorch_model.safetensors";
  SaveWeights(*official, path, NameFormat::kDiffusers);
  auto f = SafetensorsFile::Open(path);
  EXPECT_TRUE(f->contains("blocks.1.attn2.to_out.0.weight"));
  EXPECT_TRUE(f->contains("condition_embedder.time_proj.weight"));
  EXPECT_FALSE(f->contains("blocks.0.norm3.weight"));
  LoadReport report;
  auto loaded = LoadModel(path, std::nullopt, {}, &report);
  EXPECT_EQ(report.format, NameFormat::kDiffusers);
  EXPECT_EQ(report.tensors, 69);
  EXPECT_EQ(report.values, 148224);
  EXPECT_EQ(loaded->config(), official->config());
  ExpectSameParameters(*loaded, *official);
  EXPECT_LE(RelL2(Case1Out(*loaded), ref), kSameOutput);
}

TEST(WanCheckpointTest, Bf16OnDiskShardsAndPrefixes) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto official = testing::TinyModel();
  const Tensor ref = Case1Out(*official);
  // BF16 on disk (the values rounded to bf16), loaded into f32 parameters.
  const std::string dir = TmpDir("bf16");
  {
    auto m = testing::TinyModel();
    m->CastParameters(kBF16);
    SaveWeights(*m, dir + "/w.safetensors", NameFormat::kOfficial, /*keep_dtype=*/true);
  }
  LoadReport report;
  auto bf = LoadModel(dir + "/w.safetensors", std::nullopt, {}, &report);
  EXPECT_EQ(report.dtypes.at("BF16"), 69);
  for (auto& [name, p] : bf->NamedParameters()) {
    EXPECT_EQ(p.dtype(), kF32);
    Tensor want = ops::Cast(ops::Cast(official->FindParameter(name), kBF16), kF32);
    EXPECT_EQ(testing::MaxAbsDiff(p, want), 0.0) << name;
  }
  const double e = RelL2(Case1Out(*bf), ref);
  EXPECT_GT(e, 0.0);
  EXPECT_LT(e, 3e-2);

  // Two shards + index (config in the index metadata), official names with a ComfyUI prefix.
  const std::string sdir = TmpDir("shards");
  auto src = testing::OpenFixture("tiny_a.weights.safetensors");
  std::vector<TensorToWrite> a, b;
  json::Value::Object weight_map;
  for (const TensorEntry& t : src->tensors()) {
    TensorToWrite w{"model.diffusion_model." + t.name, t.dtype, t.shape, t.data, t.nbytes};
    const bool first = t.name.rfind("blocks.1.", 0) != 0;
    (first ? a : b).push_back(w);
    weight_map.emplace_back(
        w.name, json::Value::String(first ? "part-00001.safetensors" : "part-00002.safetensors"));
  }
  WriteSafetensors(sdir + "/part-00001.safetensors", a);
  WriteSafetensors(sdir + "/part-00002.safetensors", b);
  json::Value::Object index = {
      {"metadata",
       json::Value::MakeObject({{"config", json::Value::String(src->metadata().at("config"))}})},
      {"weight_map", json::Value::MakeObject(weight_map)}};
  std::ofstream(sdir + "/diffusion_pytorch_model.safetensors.index.json")
      << json::Serialize(json::Value::MakeObject(index));
  auto sharded = LoadModel(sdir, std::nullopt, {}, &report);  // the directory
  EXPECT_EQ(report.prefix, "model.diffusion_model.");
  ExpectSameParameters(*sharded, *official);
  EXPECT_LE(RelL2(Case1Out(*sharded), ref), kSameOutput);
}

TEST(WanCheckpointTest, ConfigResolution) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto ck = ShardedCheckpoint::Open(testing::FixtureFile("tiny_a.weights.safetensors"));
  std::string source;
  const WanConfig meta = ResolveConfig(*ck, &source);
  EXPECT_NE(source.find("metadata"), std::string::npos) << source;
  WanConfig inferred = InferConfig(*ck, /*head_dim=*/16);
  EXPECT_EQ(inferred.text_len, 512);  // not in the shapes: the official default
  inferred.text_len = meta.text_len;
  EXPECT_EQ(inferred, meta);
  // No metadata: a config.json next to the weights.
  const std::string dir = TmpDir("configjson");
  const std::string path = Rewrite(dir, "w.safetensors", Edit());
  std::ofstream(dir + "/config.json") << meta.ToJson();
  auto ck2 = ShardedCheckpoint::Open(path);
  EXPECT_EQ(ResolveConfig(*ck2, &source), meta);
  EXPECT_EQ(source, dir + "/config.json");
  // Neither: inferred with head_dim 128, which dim 64 cannot have.
  fs::remove(dir + "/config.json");
  ExpectError([&] { ResolveConfig(*ShardedCheckpoint::Open(path)); },
              {"dim 64 is not a multiple of head_dim 128", "--config"});
}

TEST(WanCheckpointTest, HostileAndMismatchedCheckpoints) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  const std::string dir = TmpDir("hostile");
  auto model = testing::TinyModel();
  auto pristine = testing::TinyModel();
  const WanConfig cfg = model->config();

  // Missing key: named, with the expected shape.
  Edit drop;
  drop.rename = [](const std::string& n) {
    return n == "blocks.1.cross_attn.norm_k.weight" ? std::string() : n;
  };
  std::string p = Rewrite(dir, "missing.safetensors", drop);
  ExpectError([&] { LoadWeights(*model, p); },
              {p, "missing", "\"blocks.1.cross_attn.norm_k.weight\"", "expected shape [64]"});

  // Wrong shape: the key and both shapes.
  std::vector<float> wrong(64 * 32, 0.5f);
  Edit reshape;
  reshape.rename = [](const std::string& n) {
    return n == "blocks.0.self_attn.q.weight" ? std::string() : n;
  };
  reshape.extra = {{"blocks.0.self_attn.q.weight",
                    SafetensorsDType::kF32,
                    {64, 32},
                    wrong.data(),
                    wrong.size() * 4}};
  p = Rewrite(dir, "shape.safetensors", reshape);
  ExpectError([&] { LoadWeights(*model, p); },
              {"blocks.0.self_attn.q.weight", "expected shape [64, 64]", "found [64, 32]"});

  // Wrong dtype: the key, the expected and the found dtype (and shape).
  std::vector<int64_t> ints(64, 1);
  Edit dtype;
  dtype.rename = [](const std::string& n) { return n == "head.head.bias" ? std::string() : n; };
  dtype.extra = {{"head.head.bias", SafetensorsDType::kI64, {64}, ints.data(), ints.size() * 8}};
  p = Rewrite(dir, "dtype.safetensors", dtype);
  ExpectError([&] { LoadWeights(*model, p); },
              {"head.head.bias", "floating dtype", "found I64 [64]"});

  // Unexpected key (strict) and an ignored one (non-strict).
  float one = 1;
  Edit extra;
  extra.extra = {{"blocks.2.modulation", SafetensorsDType::kF32, {1}, &one, 4}};
  p = Rewrite(dir, "extra.safetensors", extra);
  ExpectError([&] { LoadWeights(*model, p); }, {"unexpected", "blocks.2.modulation"});
  LoadOptions lax;
  lax.strict = false;
  LoadReport r = LoadWeights(*model, p, lax);
  EXPECT_EQ(r.ignored, std::vector<std::string>{"blocks.2.modulation"});

  // Truncated file: the reader's error names the file.
  const std::string good = testing::FixtureFile("tiny_a.weights.safetensors");
  const std::string cut = dir + "/truncated.safetensors";
  {
    std::ifstream in(good, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() - 1000);
  }
  ExpectError([&] { LoadWeights(*model, cut); }, {cut});
  // Garbage header.
  std::ofstream(dir + "/garbage.safetensors") << "\xff\xff\xff\xff\xff\xff\xff\xffnot json";
  ExpectError([&] { LoadWeights(*model, dir + "/garbage.safetensors"); }, {"garbage.safetensors"});

  // A config that does not fit the weights: every mismatch names the key and both shapes.
  WanConfig other = cfg;
  other.ffn_dim = 96;
  ExpectError([&] { LoadModel(good, other); },
              {"blocks.0.ffn.0.weight", "expected shape [96, 64]", "found [128, 64]"});

  // Failed loads leave the model untouched.
  ExpectSameParameters(*model, *pristine);
}

}  // namespace
}  // namespace sdpo::wan21
