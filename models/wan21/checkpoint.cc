#include "models/wan21/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/checkpoint_util.h"
#include "nn/init.h"
#include "tensor/ops.h"

namespace sdpo::wan21 {
namespace {

using ckpt::DirName;
using ckpt::IsFile;
using ckpt::IsLoraName;

struct Rename {
  const char* official;
  const char* diffusers;
};

// Prefix renames of the top-level tensors (the rest of the name is kept).
constexpr Rename kGlobal[] = {
    {"patch_embedding.", "patch_embedding."},
    {"text_embedding.0.", "condition_embedder.text_embedder.linear_1."},
    {"text_embedding.2.", "condition_embedder.text_embedder.linear_2."},
    {"time_embedding.0.", "condition_embedder.time_embedder.linear_1."},
    {"time_embedding.2.", "condition_embedder.time_embedder.linear_2."},
    {"time_projection.1.", "condition_embedder.time_proj."},
    {"head.head.", "proj_out."},
};
// Exact renames of the top-level tensors.
constexpr Rename kGlobalExact[] = {{"head.modulation", "scale_shift_table"}};
// Prefix renames inside `blocks.<i>.`. Note the official norm3 (the affine cross-attention
// pre-norm) is diffusers' norm2.
constexpr Rename kBlock[] = {
    {"self_attn.q.", "attn1.to_q."},
    {"self_attn.k.", "attn1.to_k."},
    {"self_attn.v.", "attn1.to_v."},
    {"self_attn.o.", "attn1.to_out.0."},
    {"self_attn.norm_q.", "attn1.norm_q."},
    {"self_attn.norm_k.", "attn1.norm_k."},
    {"cross_attn.q.", "attn2.to_q."},
    {"cross_attn.k.", "attn2.to_k."},
    {"cross_attn.v.", "attn2.to_v."},
    {"cross_attn.o.", "attn2.to_out.0."},
    {"cross_attn.norm_q.", "attn2.norm_q."},
    {"cross_attn.norm_k.", "attn2.norm_k."},
    {"norm3.", "norm2."},
    {"ffn.0.", "ffn.net.0.proj."},
    {"ffn.2.", "ffn.net.2."},
};
constexpr Rename kBlockExact[] = {{"modulation", "scale_shift_table"}};

bool StartsWith(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// Renames `name` from one side of the tables to the other (to_diffusers: official -> diffusers).
std::optional<std::string> Translate(const std::string& name, bool to_diffusers) {
  auto from = [&](const Rename& r) { return std::string(to_diffusers ? r.official : r.diffusers); };
  auto to = [&](const Rename& r) { return std::string(to_diffusers ? r.diffusers : r.official); };
  if (StartsWith(name, "blocks.")) {
    size_t dot = name.find('.', 7);
    if (dot == std::string::npos || dot == 7) return std::nullopt;
    const std::string index = name.substr(7, dot - 7);
    if (!std::all_of(index.begin(), index.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    const std::string head = name.substr(0, dot + 1), rest = name.substr(dot + 1);
    for (const Rename& r : kBlockExact) {
      if (rest == from(r)) return head + to(r);
    }
    for (const Rename& r : kBlock) {
      if (StartsWith(rest, from(r)) && rest.size() > from(r).size()) {
        return head + to(r) + rest.substr(from(r).size());
      }
    }
    return std::nullopt;
  }
  for (const Rename& r : kGlobalExact) {
    if (name == from(r)) return to(r);
  }
  for (const Rename& r : kGlobal) {
    if (StartsWith(name, from(r)) && name.size() > from(r).size()) {
      return to(r) + name.substr(from(r).size());
    }
  }
  return std::nullopt;
}

// The checkpoint's keys seen through the official names.
struct KeyView {
  NameFormat format = NameFormat::kOfficial;
  std::string prefix;
  std::map<std::string, const TensorEntry*> by_official;  // official name -> entry
  std::map<std::string, std::string> original;            // official name -> checkpoint key
  std::vector<std::string> unknown;                       // keys with no official name
};

KeyView ViewKeys(const CheckpointView& ck) {
  KeyView v;
  const std::vector<std::string> names = ck.names();
  SDPO_CHECK(!names.empty(), "Wan2.1 checkpoint ", ck.path(), ": holds no tensors");
  for (const char* p : {"model.diffusion_model.", "diffusion_model.", "transformer.", "model."}) {
    if (std::all_of(names.begin(), names.end(),
                    [p](const std::string& n) { return StartsWith(n, p); })) {
      v.prefix = p;
      break;
    }
  }
  for (const std::string& n : names) {
    const std::string rest = n.substr(v.prefix.size());
    if (StartsWith(rest, "condition_embedder.") || rest == "scale_shift_table" ||
        StartsWith(rest, "proj_out.") || rest.find(".attn1.") != std::string::npos) {
      v.format = NameFormat::kDiffusers;
      break;
    }
  }
  for (const std::string& n : names) {
    const std::string rest = n.substr(v.prefix.size());
    std::optional<std::string> official =
        v.format == NameFormat::kDiffusers ? DiffusersToOfficial(rest) : std::optional(rest);
    if (!official || (v.format == NameFormat::kOfficial && !Translate(rest, true))) {
      v.unknown.push_back(n);
      continue;
    }
    auto [it, inserted] = v.by_official.emplace(*official, &ck.at(n));
    SDPO_CHECK(inserted, "Wan2.1 checkpoint ", ck.path(), ": keys \"", v.original[*official],
               "\" and \"", n, "\" both name the parameter \"", *official, "\"");
    v.original[*official] = n;
  }
  return v;
}

std::string KeyLabel(const KeyView& v, const std::string& official) {
  auto it = v.original.find(official);
  std::string key = it != v.original.end() ? it->second
                    : v.format == NameFormat::kDiffusers
                        ? v.prefix + OfficialToDiffusers(official).value_or(official)
                        : v.prefix + official;
  if (key == official) return absl::StrCat("\"", key, "\"");
  return absl::StrCat("\"", key, "\" (official name \"", official, "\")");
}

int64_t MaxBlockIndex(const KeyView& v) {
  int64_t n = -1;
  for (const auto& [name, e] : v.by_official) {
    if (!StartsWith(name, "blocks.")) continue;
    n = std::max<int64_t>(n, std::stoll(name.substr(7, name.find('.', 7) - 7)));
  }
  return n;
}

// The config keys that the file's tensors determine, compared one by one so that a config that
// disagrees with the weights is refused naming its key, before anything is built from it.
void CheckConfigKeys(const WanConfig& c, const KeyView& v, const std::string& where) {
  struct Key {
    const char* key;
    int64_t value;
    const char* tensor;
    size_t axis;
  };
  const Key keys[] = {{"dim", c.dim, "patch_embedding.weight", 0},
                      {"in_dim", c.in_dim, "patch_embedding.weight", 1},
                      {"text_dim", c.text_dim, "text_embedding.0.weight", 1},
                      {"freq_dim", c.freq_dim, "time_embedding.0.weight", 1},
                      {"ffn_dim", c.ffn_dim, "blocks.0.ffn.0.weight", 0}};
  for (const Key& k : keys) {
    auto it = v.by_official.find(k.tensor);
    if (it == v.by_official.end() || it->second->shape.size() <= k.axis) continue;
    if (it->second->shape[k.axis] == k.value) continue;
    Shape expected(it->second->shape.begin(), it->second->shape.end());
    expected[k.axis] = k.value;
    SDPO_FAIL(where, ": config key \"", k.key, "\" is ", k.value, " but the file's ",
              KeyLabel(v, k.tensor), " has ", it->second->shape[k.axis], " on axis ", k.axis,
              " (expected shape ", ShapeStr(expected), " for this config, found ",
              ckpt::ShapeOf(*it->second), ")");
  }
  const int64_t blocks = MaxBlockIndex(v) + 1;
  SDPO_CHECK(c.num_layers == blocks, where, ": config key \"num_layers\" is ", c.num_layers,
             " but the file holds ", blocks, " blocks");
}

}  // namespace

const char* NameFormatName(NameFormat format) {
  return format == NameFormat::kDiffusers ? "diffusers" : "official";
}

std::optional<std::string> OfficialToDiffusers(const std::string& official) {
  return Translate(official, true);
}

std::optional<std::string> DiffusersToOfficial(const std::string& diffusers) {
  return Translate(diffusers, false);
}

std::string DitWeightsPath(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return path;
  // A released folder also holds the VAE and the text encoder: the DiT has its own names.
  for (const char* name :
       {"diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors"}) {
    const fs::path p = fs::path(path) / name;
    if (fs::exists(p, ec)) return p.string();
  }
  return path;
}

LoadReport LoadWeights(WanModel& model, const std::string& path, const LoadOptions& options) {
  std::unique_ptr<CheckpointView> ck = OpenCheckpoint(DitWeightsPath(path));
  return LoadWeights(model, *ck, options);
}

LoadReport LoadWeights(WanModel& model, const CheckpointView& ck, const LoadOptions& options) {
  const KeyView v = ViewKeys(ck);
  const std::string where =
      absl::StrCat("Wan2.1 checkpoint ", ck.path(), " (", NameFormatName(v.format), " names",
                   v.prefix.empty() ? "" : ", prefix \"" + v.prefix + "\"", ")");
  std::vector<ckpt::ExpectedParameter> expected;
  std::set<std::string> wanted;
  for (auto& [name, p] : model.NamedParameters()) {
    if (IsLoraName(name)) continue;
    wanted.insert(name);
    auto it = v.by_official.find(name);
    expected.push_back({KeyLabel(v, name), it == v.by_official.end() ? nullptr : it->second, p});
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, e] : v.by_official) {
    if (!wanted.count(name)) unexpected.push_back(v.original.at(name));
  }
  for (const std::string& k : v.unknown) unexpected.push_back(k);
  std::sort(unexpected.begin(), unexpected.end());

  NoGradGuard no_grad;
  const ckpt::CopyCounts counts = ckpt::CheckAndCopy(expected, unexpected, options.strict, where,
                                                     model.config().ToJson());
  LoadReport report;
  report.path = ck.path();
  report.format = v.format;
  report.prefix = v.prefix;
  report.ignored = unexpected;
  report.dtypes = counts.dtypes;
  report.tensors = counts.tensors;
  report.values = counts.values;
  return report;
}

WanConfig InferConfig(const CheckpointView& ck, int64_t head_dim) {
  const KeyView v = ViewKeys(ck);
  auto shape = [&](const std::string& name) {
    auto it = v.by_official.find(name);
    SDPO_CHECK(it != v.by_official.end(), "Wan2.1 checkpoint ", ck.path(),
               ": cannot infer the config without \"", name, "\"");
    return Shape(it->second->shape.begin(), it->second->shape.end());
  };
  WanConfig c;
  Shape pe = shape("patch_embedding.weight");
  SDPO_CHECK(pe.size() == 5, "Wan2.1 checkpoint ", ck.path(),
             ": patch_embedding.weight must be [dim, in_dim, pt, ph, pw], found ", ShapeStr(pe));
  c.dim = pe[0];
  c.in_dim = pe[1];
  c.patch_size = {pe[2], pe[3], pe[4]};
  c.text_dim = shape("text_embedding.0.weight").at(1);
  c.freq_dim = shape("time_embedding.0.weight").at(1);
  c.num_layers = MaxBlockIndex(v) + 1;
  c.ffn_dim = c.num_layers > 0 ? shape("blocks.0.ffn.0.weight").at(0) : c.ffn_dim;
  c.qk_norm = v.by_official.count("blocks.0.self_attn.norm_q.weight") > 0;
  c.cross_attn_norm = v.by_official.count("blocks.0.norm3.weight") > 0;
  const int64_t out = shape("head.head.weight").at(0);
  const int64_t per = pe[2] * pe[3] * pe[4];
  SDPO_CHECK(out % per == 0, "Wan2.1 checkpoint ", ck.path(), ": head.head.weight rows ", out,
             " are not a multiple of the patch volume ", per);
  c.out_dim = out / per;
  SDPO_CHECK(head_dim > 0 && c.dim % head_dim == 0, "Wan2.1 checkpoint ", ck.path(), ": dim ",
             c.dim, " is not a multiple of head_dim ", head_dim,
             ", so the config cannot be inferred from the tensors; put the model's config.json "
             "next to the weights (",
             DirName(ck.path()), "/config.json), or give it to the forward tool with --config");
  c.num_heads = c.dim / head_dim;
  c.Validate(ck.path());
  return c;
}

void CheckConfigMatchesFile(const WanConfig& c, const CheckpointView& ck) {
  const KeyView v = ViewKeys(ck);
  const std::string where = absl::StrCat("Wan2.1 checkpoint ", ck.path());
  CheckConfigKeys(c, v, where);
  std::vector<ckpt::ExpectedShape> expected;
  for (const auto& [name, shape] : ParameterShapes(c)) {
    auto it = v.by_official.find(name);
    expected.push_back(
        {KeyLabel(v, name), it == v.by_official.end() ? nullptr : it->second, shape});
  }
  ckpt::CheckShapes(expected, where, c.ToJson());
}

WanConfig ResolveConfig(const CheckpointView& ck, std::string* source) {
  auto it = ck.metadata().find("config");
  if (it != ck.metadata().end()) {
    if (source) *source = absl::StrCat(ck.path(), " metadata \"config\"");
    return WanConfig::FromJsonString(it->second, absl::StrCat(ck.path(), " metadata config"));
  }
  const std::string json = DirName(ck.path()) + "/config.json";
  if (IsFile(json)) {
    if (source) *source = json;
    return WanConfig::FromFile(json);
  }
  if (source)
    *source = absl::StrCat("inferred from the tensor shapes of ", ck.path(),
                           " (head_dim 128, text_len 512)");
  return InferConfig(ck);
}

std::unique_ptr<WanModel> LoadModel(const std::string& path, const std::optional<WanConfig>& config,
                                    const LoadOptions& options, LoadReport* report) {
  std::unique_ptr<CheckpointView> ck = OpenCheckpoint(DitWeightsPath(path));
  WanConfig c = config ? *config : ResolveConfig(*ck);
  CheckConfigMatchesFile(c, *ck);  // before the model allocates what the config says
  std::unique_ptr<WanModel> model;
  {
    nn::SkipInitGuard skip;
    model = std::make_unique<WanModel>(c);
  }
  LoadReport r = LoadWeights(*model, *ck, options);
  if (report) *report = std::move(r);
  return model;
}

void SaveWeights(const WanModel& model, const std::string& path, NameFormat format,
                 bool keep_dtype) {
  std::vector<Tensor> keep;
  std::vector<TensorToWrite> out;
  for (const auto& [name, p] : model.NamedParameters()) {
    if (IsLoraName(name)) continue;  // adapters are saved on their own (or merged first)
    Tensor t = ops::Contiguous(ops::To(keep_dtype ? p : ops::Cast(p, kF32), Device::CPU()));
    keep.push_back(t);
    TensorToWrite w;
    w.name = format == NameFormat::kDiffusers ? OfficialToDiffusers(name).value_or(name) : name;
    w.dtype = ToSafetensorsDType(t.dtype());
    w.shape = t.shape();
    w.data = t.raw_data();
    w.nbytes = t.nbytes();
    out.push_back(w);
  }
  WriteSafetensors(path, out, {{"config", model.config().ToJson()}, {"format", "pt"}});
}

}  // namespace sdpo::wan21
