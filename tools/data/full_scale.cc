#include "tools/data/full_scale.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/cuda/wan_step.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "tensor/error.h"
#include "tensor/ops.h"
#include "trainers/data/preference_dataset.h"

namespace sdpo::tools {
namespace {

namespace fs = std::filesystem;

constexpr char kDitFile[] = "diffusion_pytorch_model.safetensors";
constexpr char kDitIndex[] = "diffusion_pytorch_model.safetensors.index.json";

// Seeds of the independent streams (Philox keys), so that weights, latents and contexts never share
// numbers.
constexpr uint64_t kWeightSalt = 0x5744'0000'0000'0001ull;
constexpr uint64_t kWinnerSalt = 0x5744'0000'0000'0002ull;
constexpr uint64_t kNoiseSalt = 0x5744'0000'0000'0003ull;
constexpr uint64_t kContextSalt = 0x5744'0000'0000'0004ull;
constexpr uint64_t kSamplingSalt = 0x5744'0000'0000'0005ull;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Half-width of the uniform distribution for one parameter (0: the constant `fill` instead).
struct Init {
  double half_width = 0;
  double fill = 0;
};

// A bias's fan-in: its layer's input width.
int64_t BiasFanIn(const std::string& name, const wan21::WanConfig& c) {
  if (EndsWith(name, "ffn.2.bias")) return c.ffn_dim;
  if (name == "patch_embedding.bias") {
    return c.in_dim * c.patch_size[0] * c.patch_size[1] * c.patch_size[2];
  }
  return c.dim;
}

Init InitFor(const std::string& name, const Shape& shape, const wan21::WanConfig& c) {
  const double uniform_of_std = std::sqrt(3.0);  // uniform(-a, a) has std a / sqrt(3)
  if (name.find("norm") != std::string::npos) {
    return {0, EndsWith(name, ".weight") ? 1.0 : 0.0};  // RMSNorm / LayerNorm affine
  }
  if (EndsWith(name, "modulation")) return {uniform_of_std / std::sqrt(double(c.dim)), 0};
  if (name.rfind("text_embedding.", 0) == 0 || name.rfind("time_embedding.", 0) == 0) {
    return {0.02 * uniform_of_std, 0};  // the official normal(std 0.02)
  }
  if (shape.size() == 1) return {1.0 / std::sqrt(double(BiasFanIn(name, c))), 0};  // nn.Linear's
  int64_t receptive = 1;
  for (size_t i = 2; i < shape.size(); ++i) receptive *= shape[i];
  const double fan_out = double(shape[0] * receptive), fan_in = double(shape[1] * receptive);
  return {std::sqrt(6.0 / (fan_in + fan_out)), 0};  // Xavier uniform
}

// Random bf16 values of one tensor: element i is a function of (seed, offset + i).
Tensor RandomBf16(const Shape& shape, const Init& init, uint64_t seed, uint64_t offset) {
  if (init.half_width == 0) return Tensor::Full(shape, init.fill, kBF16);
  Tensor u = ops::RandomUniform(shape, seed, offset);
  return ops::Cast(ops::AddScalar(ops::MulScalar(u, 2 * init.half_width), -init.half_width), kBF16);
}

Tensor RandomNormalScaled(const Shape& shape, double scale, uint64_t seed, uint64_t offset) {
  Tensor n = ops::RandomNormal(shape, seed, offset);
  return scale == 1.0 ? n : ops::MulScalar(n, scale);
}

int64_t FileSize(const std::string& path) { return static_cast<int64_t>(fs::file_size(path)); }

void WriteText(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    SDPO_CHECK(f.good(), "cannot write ", tmp);
    f << text;
    f.close();
    SDPO_CHECK(f.good(), "writing ", tmp, " failed");
  }
  fs::rename(tmp, path);
}

// The official config.json: WanModel's keyword arguments plus its class name.
std::string OfficialConfigJson(const wan21::WanConfig& config) {
  std::string j = config.ToJson();
  SDPO_CHECK(!j.empty() && j[0] == '{', "WanConfig::ToJson: expected an object, found ", j);
  return absl::StrCat("{\"_class_name\": \"WanModel\", ", j.substr(1), "\n");
}

}  // namespace

WrittenFiles WriteRandomWanCheckpoint(const std::string& dir, const wan21::WanConfig& config,
                                      const RandomCheckpointOptions& options) {
  config.Validate("WriteRandomWanCheckpoint");
  SDPO_CHECK(options.max_shard_bytes > 0, "max_shard_bytes must be > 0, found ",
             options.max_shard_bytes);
  fs::create_directories(dir);
  const std::vector<std::pair<std::string, Shape>> params = wan21::ParameterShapes(config);
  // Shards in the official registration order, each up to max_shard_bytes (a tensor larger than
  // that gets a shard of its own).
  std::vector<std::vector<size_t>> shards(1);
  int64_t shard_bytes = 0, total_bytes = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    int64_t n = 1;
    for (int64_t d : params[i].second) n *= d;
    const int64_t bytes = n * 2;
    if (shard_bytes > 0 && shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  // Philox offsets: the running element count over all parameters, so that the values do not depend
  // on the sharding.
  std::vector<uint64_t> offsets(params.size() + 1, 0);
  for (size_t i = 0; i < params.size(); ++i) {
    int64_t n = 1;
    for (int64_t d : params[i].second) n *= d;
    offsets[i + 1] = offsets[i] + static_cast<uint64_t>(n);
  }
  const uint64_t seed = options.seed ^ kWeightSalt;

  WrittenFiles out;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  WriteText(config_path, OfficialConfigJson(config));
  out.files.push_back(config_path);
  out.bytes += FileSize(config_path);

  const size_t n_shards = shards.size();
  std::map<std::string, std::string> weight_map;
  for (size_t s = 0; s < n_shards; ++s) {
    const std::string name =
        n_shards == 1
            ? kDitFile
            : absl::StrFormat("diffusion_pytorch_model-%05d-of-%05d.safetensors", s + 1, n_shards);
    std::vector<Tensor> keep;  // owns the bytes until the shard is written
    std::vector<TensorToWrite> tensors;
    for (size_t i : shards[s]) {
      const auto& [pname, shape] = params[i];
      keep.push_back(RandomBf16(shape, InitFor(pname, shape, config), seed, offsets[i]));
      TensorToWrite t;
      t.name = pname;
      t.dtype = SafetensorsDType::kBF16;
      t.shape = shape;
      t.data = keep.back().raw_data();
      t.nbytes = keep.back().nbytes();
      tensors.push_back(t);
      out.values += keep.back().numel();
      weight_map[pname] = name;
    }
    const std::string path = (fs::path(dir) / name).string();
    WriteSafetensors(path, tensors, {{"format", "pt"}});
    out.files.push_back(path);
    out.bytes += FileSize(path);
  }
  if (n_shards > 1) {
    std::string j =
        absl::StrCat("{\"metadata\": {\"total_size\": ", total_bytes, "}, \"weight_map\": {");
    bool first = true;
    for (const auto& [k, v] : weight_map) {
      absl::StrAppend(&j, first ? "" : ", ", json::Quote(k), ": ", json::Quote(v));
      first = false;
    }
    absl::StrAppend(&j, "}}\n");
    const std::string index_path = (fs::path(dir) / kDitIndex).string();
    WriteText(index_path, j);
    out.files.push_back(index_path);
    out.bytes += FileSize(index_path);
  }
  return out;
}

WrittenFiles WriteRandomPreferenceData(const std::string& dir, const RandomPairsOptions& o) {
  SDPO_CHECK(o.latent.size() == 4, "latent shape must be [C, F, H, W], found ", ShapeStr(o.latent));
  for (int64_t d : o.latent)
    SDPO_CHECK(d > 0, "latent shape ", ShapeStr(o.latent), " has a dim <= 0");
  SDPO_CHECK(o.pairs > 0 && o.text_tokens > 0 && o.text_dim > 0, "pairs (", o.pairs,
             "), text_tokens (", o.text_tokens, ") and text_dim (", o.text_dim, ") must be > 0");
  data::WriterOptions wo;
  wo.dtype = o.dtype;
  wo.pairs_per_shard = 4;  // bounds the writer's buffer: 4 pairs of f32 tensors
  wo.overwrite = true;
  data::PreferenceDatasetWriter writer(dir, wo);
  int64_t latent_numel = 1;
  for (int64_t d : o.latent) latent_numel *= d;
  const uint64_t context_numel = static_cast<uint64_t>(o.text_tokens * o.text_dim);
  for (int64_t i = 0; i < o.pairs; ++i) {
    data::PreferencePair p;
    p.id = absl::StrCat("random-", i);
    p.prompt = absl::StrCat("random prompt ", i);
    const uint64_t at = static_cast<uint64_t>(i * latent_numel);
    p.winner = RandomNormalScaled(o.latent, 1.0, o.seed ^ kWinnerSalt, at);
    p.loser = ops::Add(p.winner, RandomNormalScaled(o.latent, 0.5, o.seed ^ kNoiseSalt, at));
    p.context = RandomNormalScaled({o.text_tokens, o.text_dim}, 1.0, o.seed ^ kContextSalt,
                                   static_cast<uint64_t>(i) * context_numel);
    writer.Add(p);
  }
  writer.Finish();
  WrittenFiles out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    out.files.push_back(e.path().string());
    out.bytes += static_cast<int64_t>(e.file_size());
  }
  out.values = o.pairs * (2 * latent_numel + o.text_tokens * o.text_dim);
  return out;
}

WrittenFiles WriteRandomSamplingContext(const std::string& path, int64_t text_tokens,
                                        int64_t text_dim, uint64_t seed) {
  SDPO_CHECK(text_tokens > 0 && text_dim > 0, "text_tokens (", text_tokens, ") and text_dim (",
             text_dim, ") must be > 0");
  const Shape shape = {text_tokens, text_dim};
  const uint64_t n = static_cast<uint64_t>(text_tokens * text_dim);
  Tensor context = ops::Cast(ops::RandomNormal(shape, seed ^ kSamplingSalt, 0), kBF16);
  Tensor negative = ops::Cast(ops::RandomNormal(shape, seed ^ kSamplingSalt, n), kBF16);
  std::vector<TensorToWrite> tensors(2);
  tensors[0] = {"context", SafetensorsDType::kBF16, shape, context.raw_data(), context.nbytes()};
  tensors[1] = {"negative", SafetensorsDType::kBF16, shape, negative.raw_data(), negative.nbytes()};
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  WriteSafetensors(path, tensors, {{"format", "pt"}});
  WrittenFiles out;
  out.files = {path};
  out.bytes = FileSize(path);
  out.values = 2 * text_tokens * text_dim;
  return out;
}

namespace {

const char kUsage[] =
    "usage: %s [--checkpoint_out=DIR] [--data_out=DIR] [--context_out=FILE]\n"
    "          [--model=1.3b|14b|CONFIG.json] [--latent=FxHxW (21x60x104)] "
    "[--pairs=4]\n"
    "          [--text_tokens=512] [--seed=0] [--max_shard_gb=5]\n"
    "Writes a Wan2.1 checkpoint folder with random bf16 weights (official "
    "names, config.json),\n"
    "a preference dataset of random latents [in_dim, F, H, W] (81 frames at "
    "480x832 by default)\n"
    "and a sampling-context file, each only when its output is named.\n";

struct Args {
  std::string checkpoint_out, data_out, context_out, model = "1.3b", latent = "21x60x104";
  int64_t pairs = 4, text_tokens = 512;
  uint64_t seed = 0;
  double max_shard_gb = 5;
};

int64_t ParseInt(const std::string& key, const std::string& v) {
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  SDPO_CHECK(!v.empty() && end != nullptr && *end == '\0', "--", key, "=", v,
             ": expected an integer");
  return x;
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    SDPO_CHECK(arg.rfind("--", 0) == 0 && eq != std::string::npos, "argument '", arg,
               "': expected --key=value");
    const std::string key = arg.substr(2, eq - 2), v = arg.substr(eq + 1);
    if (key == "checkpoint_out")
      a.checkpoint_out = v;
    else if (key == "data_out")
      a.data_out = v;
    else if (key == "context_out")
      a.context_out = v;
    else if (key == "model")
      a.model = v;
    else if (key == "latent")
      a.latent = v;
    else if (key == "pairs")
      a.pairs = ParseInt(key, v);
    else if (key == "text_tokens")
      a.text_tokens = ParseInt(key, v);
    else if (key == "seed")
      a.seed = static_cast<uint64_t>(ParseInt(key, v));
    else if (key == "max_shard_gb")
      a.max_shard_gb = std::atof(v.c_str());
    else
      SDPO_FAIL("unknown flag --", key);
  }
  SDPO_CHECK(!a.checkpoint_out.empty() || !a.data_out.empty() || !a.context_out.empty(),
             "nothing to write: name --checkpoint_out, --data_out or --context_out");
  return a;
}

wan21::WanConfig ConfigOf(const std::string& model) {
  if (EndsWith(model, ".json")) return wan21::WanConfig::FromFile(model);
  return wan21::WanConfig::Preset(model);
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int MakeFullScaleMain(int argc, char** argv) {
  try {
    for (int i = 1; i < argc; ++i) {
      if (std::strcmp(argv[i], "--help") == 0) {
        std::printf(kUsage, argv[0]);
        return 0;
      }
    }
    const Args a = ParseArgs(argc, argv);
    const wan21::WanConfig config = ConfigOf(a.model);
    config.Validate(a.model);
    std::string json = absl::StrCat("{\"name\": \"make_data\", \"model\": ", json::Quote(a.model),
                                    ", \"parameters\": ", wan21::NumParameters(config));
    if (!a.checkpoint_out.empty()) {
      const auto t0 = std::chrono::steady_clock::now();
      RandomCheckpointOptions co;
      co.seed = a.seed;
      co.max_shard_bytes = static_cast<int64_t>(a.max_shard_gb * (1 << 30));
      const WrittenFiles w = WriteRandomWanCheckpoint(a.checkpoint_out, config, co);
      const double s = Seconds(t0);
      std::printf("checkpoint: %s, %zu files, %.2f GiB, %lld values, %.1f s\n",
                  a.checkpoint_out.c_str(), w.files.size(), w.bytes / double(1 << 30),
                  static_cast<long long>(w.values), s);
      absl::StrAppendFormat(&json,
                            ", \"checkpoint_gib\": %.3f, \"checkpoint_files\": %d, "
                            "\"checkpoint_s\": %.2f",
                            w.bytes / double(1 << 30), w.files.size(), s);
    }
    if (!a.data_out.empty()) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::string> dims = absl::StrSplit(a.latent, 'x');
      SDPO_CHECK(dims.size() == 3, "--latent=", a.latent, ": expected FxHxW (e.g. 21x60x104)");
      RandomPairsOptions po;
      po.latent = {config.in_dim, ParseInt("latent", dims[0]), ParseInt("latent", dims[1]),
                   ParseInt("latent", dims[2])};
      po.text_tokens = a.text_tokens;
      po.text_dim = config.text_dim;
      po.pairs = a.pairs;
      po.seed = a.seed;
      const WrittenFiles w = WriteRandomPreferenceData(a.data_out, po);
      const double s = Seconds(t0);
      const int64_t tokens = (po.latent[1] / config.patch_size[0]) *
                             (po.latent[2] / config.patch_size[1]) *
                             (po.latent[3] / config.patch_size[2]);
      std::printf(
          "data: %s, %lld pairs of latents %s (%lld tokens), contexts "
          "[%lld, %lld], "
          "%.2f GiB, %.1f s\n",
          a.data_out.c_str(), static_cast<long long>(a.pairs), ShapeStr(po.latent).c_str(),
          static_cast<long long>(tokens), static_cast<long long>(a.text_tokens),
          static_cast<long long>(config.text_dim), w.bytes / double(1 << 30), s);
      // Model FLOPs of one SDPO step on one pair (winner + loser), the convention of
      // `cuda_check wan_step` and the PyTorch peer: the check's MFU of the trainer runs.
      absl::StrAppendFormat(&json,
                            ", \"data_gib\": %.3f, \"data_s\": %.2f, \"tokens\": %d, "
                            "\"step_tflop\": %.3f",
                            w.bytes / double(1 << 30), s, tokens,
                            bench::WanStepFlops(config, tokens, 2) / 1e12);
    }
    if (!a.context_out.empty()) {
      const WrittenFiles w =
          WriteRandomSamplingContext(a.context_out, a.text_tokens, config.text_dim, a.seed);
      std::printf("context: %s, %.1f MiB\n", a.context_out.c_str(), w.bytes / double(1 << 20));
    }
    std::printf("%s}\n", json.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", argc > 0 ? argv[0] : "make_full_scale", e.what());
    return 1;
  }
}

}  // namespace sdpo::tools
