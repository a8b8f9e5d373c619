#include "models/umt5/checkpoint.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/checkpoint_util.h"
#include "nn/checkpoint_io.h"

namespace sdpo::umt5 {
namespace {

constexpr char kEmbedding[] = "token_embedding.weight";
constexpr char kSharedPos[] = "pos_embedding.embedding.weight";

// The block-local transformers suffixes (after "encoder.block.N.") and their
// official ones (after "blocks.N."), except the relative attention bias (see
// TransformersToOfficial).
const std::vector<std::pair<std::string, std::string>>& BlockNames() {
  static const auto* names = new std::vector<std::pair<std::string, std::string>>{
      {"layer.0.layer_norm.weight", "norm1.weight"},
      {"layer.0.SelfAttention.q.weight", "attn.q.weight"},
      {"layer.0.SelfAttention.k.weight", "attn.k.weight"},
      {"layer.0.SelfAttention.v.weight", "attn.v.weight"},
      {"layer.0.SelfAttention.o.weight", "attn.o.weight"},
      {"layer.1.layer_norm.weight", "norm2.weight"},
      {"layer.1.DenseReluDense.wi_0.weight", "ffn.gate.0.weight"},
      {"layer.1.DenseReluDense.wi_1.weight", "ffn.fc1.weight"},
      {"layer.1.DenseReluDense.wo.weight", "ffn.fc2.weight"},
  };
  return *names;
}
constexpr char kHfBias[] = "layer.0.SelfAttention.relative_attention_bias.weight";
constexpr char kBlockBias[] = "pos_embedding.embedding.weight";

// "<head>N.<rest>" -> (N, rest) for a non-negative decimal N.
bool SplitIndexed(const std::string& name, const std::string& head, int64_t* index,
                  std::string* rest) {
  if (!absl::StartsWith(name, head)) return false;
  const size_t dot = name.find('.', head.size());
  if (dot == std::string::npos || dot == head.size()) return false;
  if (!absl::SimpleAtoi(name.substr(head.size(), dot - head.size()), index) || *index < 0) {
    return false;
  }
  *rest = name.substr(dot + 1);
  return true;
}

// The length of the prefix before the first official or transformers root name
// in `key` (at a '.' boundary), or npos.
size_t RootPosition(const std::string& key) {
  static const char* kRoots[] = {"token_embedding.", "blocks.", "norm.",
                                 "pos_embedding.",   "shared.", "encoder."};
  for (size_t pos = 0; pos < key.size(); pos = key.find('.', pos) + 1) {
    for (const char* root : kRoots) {
      if (key.compare(pos, std::string(root).size(), root) == 0) return pos;
    }
    if (key.find('.', pos) == std::string::npos) break;
  }
  return std::string::npos;
}

// A source seen under other names.
class RenamedSource final : public nn::TensorSource {
 public:
  RenamedSource(std::unique_ptr<nn::TensorSource> base, std::map<std::string, std::string> names)
      : base_(std::move(base)), names_(std::move(names)) {}
  std::vector<std::string> Keys() const override {
    std::vector<std::string> keys;
    for (const auto& [official, original] : names_) keys.push_back(official);
    return keys;
  }
  Shape KeyShape(const std::string& key) const override { return base_->KeyShape(Original(key)); }
  void CopyTo(const std::string& key, const Tensor& dst) const override {
    base_->CopyTo(Original(key), dst);
  }
  std::string Describe() const override { return base_->Describe(); }

 private:
  const std::string& Original(const std::string& key) const {
    auto it = names_.find(key);
    SDPO_CHECK(it != names_.end(), Describe(), ": no tensor '", key, "'");
    return it->second;
  }
  std::unique_ptr<nn::TensorSource> base_;
  std::map<std::string, std::string> names_;  // official -> the file's name
};

// A config.json that is a transformers T5 config (d_model); a Wan2.1 folder's config.json, which
// describes its DiT, is not.
bool IsTransformersT5Config(const std::string& path) {
  if (!ckpt::IsFile(path)) return false;
  const json::Value root = json::ParseFile(path);
  return root.is_object() && root.contains("d_model");
}

}  // namespace

const char* NameFormatName(NameFormat format) {
  return format == NameFormat::kOfficial ? "official" : "transformers";
}

std::optional<std::string> TransformersToOfficial(const std::string& name, bool shared_pos) {
  if (name == "shared.weight" || name == "encoder.embed_tokens.weight") return kEmbedding;
  if (name == "encoder.final_layer_norm.weight") return "norm.weight";
  int64_t n = 0;
  std::string rest;
  if (!SplitIndexed(name, "encoder.block.", &n, &rest)) return std::nullopt;
  if (rest == kHfBias) {
    if (shared_pos) {
      if (n == 0) return std::string(kSharedPos);
      return std::nullopt;
    }
    return absl::StrCat("blocks.", n, ".", kBlockBias);
  }
  for (const auto& [hf, official] : BlockNames()) {
    if (rest == hf) return absl::StrCat("blocks.", n, ".", official);
  }
  return std::nullopt;
}

std::optional<std::string> OfficialToTransformers(const std::string& name) {
  if (name == kEmbedding) return std::string("shared.weight");
  if (name == "norm.weight") return std::string("encoder.final_layer_norm.weight");
  if (name == kSharedPos) return absl::StrCat("encoder.block.0.", kHfBias);
  int64_t n = 0;
  std::string rest;
  if (!SplitIndexed(name, "blocks.", &n, &rest)) return std::nullopt;
  if (rest == kBlockBias) return absl::StrCat("encoder.block.", n, ".", kHfBias);
  for (const auto& [hf, official] : BlockNames()) {
    if (rest == official) return absl::StrCat("encoder.block.", n, ".", hf);
  }
  return std::nullopt;
}

std::unique_ptr<nn::TensorSource> OpenWeightFile(const std::string& path) {
  return nn::OpenTensorSource(path);
}

OfficialSource ToOfficialNames(std::unique_ptr<nn::TensorSource> source) {
  const std::vector<std::string> keys = source->Keys();
  SDPO_CHECK(!keys.empty(), source->Describe(), ": holds no tensors");
  OfficialSource out;
  const size_t root = RootPosition(keys.front());
  SDPO_CHECK(root != std::string::npos, source->Describe(), ": key '", keys.front(),
             "' is neither an official T5Encoder name (token_embedding., "
             "blocks.N., norm., "
             "pos_embedding.) nor a transformers one (shared., encoder.)");
  out.prefix = keys.front().substr(0, root);
  for (const std::string& k : keys) {
    SDPO_CHECK(absl::StartsWith(k, out.prefix), source->Describe(), ": key '", k,
               "' lacks the prefix '", out.prefix, "' of the other keys");
  }
  auto stripped = [&](const std::string& k) { return k.substr(out.prefix.size()); };
  bool transformers = false;
  std::set<std::string> names;
  for (const std::string& k : keys) {
    const std::string s = stripped(k);
    names.insert(s);
    if (absl::StartsWith(s, "encoder.") || s == "shared.weight") transformers = true;
  }
  std::map<std::string, std::string> official;  // official -> original
  if (!transformers) {
    for (const std::string& k : keys) official[stripped(k)] = k;
  } else {
    out.format = NameFormat::kTransformers;
    // T5 v1.1: only block 0 owns the relative attention bias; umT5: every block
    // does.
    const bool shared_pos = names.count(absl::StrCat("encoder.block.0.", kHfBias)) > 0 &&
                            names.count(absl::StrCat("encoder.block.1.", kHfBias)) == 0 &&
                            names.count("encoder.block.1.layer.0.SelfAttention.q.weight") > 0;
    for (const std::string& k : keys) {
      const std::string s = stripped(k);
      std::optional<std::string> o = TransformersToOfficial(s, shared_pos);
      // Unknown names keep theirs so that a strict load reports them.
      std::string name = o.has_value() ? *o : s;
      // The tied embedding may be stored twice: keep shared.weight.
      if (official.count(name) > 0 && name == kEmbedding) {
        if (s != "shared.weight") continue;
      }
      official[name] = k;
    }
  }
  out.source = std::make_unique<RenamedSource>(std::move(source), std::move(official));
  return out;
}

T5Config InferConfig(const nn::TensorSource& official) {
  const std::string where = official.Describe();
  std::set<std::string> keys;
  for (const std::string& k : official.Keys()) keys.insert(k);
  auto shape_of = [&](const std::string& key, size_t rank) {
    SDPO_CHECK(keys.count(key) > 0, where, ": missing tensor '", key,
               "' (needed to infer the T5 encoder's sizes)");
    Shape s = official.KeyShape(key);
    SDPO_CHECK(s.size() == rank, where, ": tensor '", key, "' has shape ", ShapeStr(s),
               ", expected rank ", rank);
    return s;
  };
  T5Config c;
  const Shape emb = shape_of(kEmbedding, 2);
  c.vocab = emb[0];
  c.dim = emb[1];
  c.dim_attn = shape_of("blocks.0.attn.q.weight", 2)[0];
  c.dim_ffn = shape_of("blocks.0.ffn.fc1.weight", 2)[0];
  int64_t layers = 0;
  for (const std::string& k : keys) {
    int64_t n = 0;
    std::string rest;
    if (SplitIndexed(k, "blocks.", &n, &rest)) layers = std::max(layers, n + 1);
  }
  c.num_layers = layers;
  c.shared_pos = keys.count(kSharedPos) > 0;
  const Shape pos =
      shape_of(c.shared_pos ? std::string(kSharedPos) : absl::StrCat("blocks.0.", kBlockBias), 2);
  c.num_buckets = pos[0];
  c.num_heads = pos[1];
  const T5Config official_sizes = c.shared_pos ? T5Config::T5V11Xxl() : T5Config::UMT5Xxl();
  c.text_len = official_sizes.text_len;
  c.tokenizer = official_sizes.tokenizer;
  c.Validate(where);
  return c;
}

T5Config ResolveConfig(const std::string& path, const nn::TensorSource& official,
                       const std::optional<T5Config>& config, std::string* source) {
  std::string where;
  T5Config c;
  const std::string dir = ckpt::IsFile(path) ? ckpt::DirName(path) : path;
  const std::string beside = dir + "/t5_config.json";
  const std::string transformers = dir + "/config.json";  // a transformers folder's
  if (config.has_value()) {
    c = *config;
    where = "--config";
  } else if (ckpt::IsFile(beside)) {
    c = T5Config::FromFile(beside);
    where = beside;
  } else if (IsTransformersT5Config(transformers)) {
    c = T5Config::FromFile(transformers);
    where = transformers;
  } else {
    c = InferConfig(official);
    where = "tensor shapes";
  }
  if (source != nullptr) *source = where;
  return c;
}

std::unique_ptr<T5Encoder> LoadEncoder(const std::string& path, const LoadOptions& options,
                                       LoadReport* report) {
  std::unique_ptr<nn::CheckpointSource> file = nn::OpenTensorSource(path);
  const CheckpointView* view = &file->checkpoint();  // owned by the source, which `named` keeps
  OfficialSource named = ToOfficialNames(std::move(file));
  LoadReport r;
  r.path = path;
  r.format = named.format;
  r.prefix = named.prefix;
  const T5Config config = ResolveConfig(path, *named.source, options.config, &r.config_source);

  // Parameters in the embedding's stored precision unless asked otherwise.
  DType dtype = kF32;
  if (options.param_dtype.has_value()) {
    dtype = *options.param_dtype;
  } else {
    for (const char* name :
         {"token_embedding.weight", "shared.weight", "encoder.embed_tokens.weight"}) {
      const TensorEntry* e = view->find(named.prefix + name);
      if (e == nullptr) continue;
      if (e->dtype == SafetensorsDType::kBF16) dtype = kBF16;
      if (e->dtype == SafetensorsDType::kF16) dtype = kF16;
      break;
    }
  }
  auto encoder = std::make_unique<T5Encoder>(config, dtype);
  nn::LoadReport loaded = encoder->LoadStateDict(*named.source, options.strict);
  for (const std::string& k : loaded.loaded) {
    ++r.tensors;
    r.values += NumElements(named.source->KeyShape(k));
  }
  if (report != nullptr) *report = r;
  return encoder;
}

}  // namespace sdpo::umt5
