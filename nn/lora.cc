#include "nn/lora.h"

#include <cstring>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "io/json.h"

namespace sdpo::nn {

namespace {

constexpr char kASuffix[] = ".lora_A.weight";
constexpr char kBSuffix[] = ".lora_B.weight";

// Expands {a,b} groups into plain glob patterns.
std::vector<std::string> ExpandBraces(const std::string& pattern) {
  size_t open = pattern.find('{');
  if (open == std::string::npos) {
    SDPO_CHECK(pattern.find('}') == std::string::npos, "LoRA pattern '", pattern,
               "': unbalanced '}'");
    return {pattern};
  }
  size_t close = pattern.find('}', open);
  SDPO_CHECK(close != std::string::npos, "LoRA pattern '", pattern, "': unbalanced '{'");
  std::string inner = pattern.substr(open + 1, close - open - 1);
  SDPO_CHECK(inner.find('{') == std::string::npos, "LoRA pattern '", pattern,
             "': nested braces are not supported");
  std::vector<std::string> out;
  for (absl::string_view alt : absl::StrSplit(inner, ',')) {
    std::string expanded = absl::StrCat(pattern.substr(0, open), alt, pattern.substr(close + 1));
    for (std::string& e : ExpandBraces(expanded)) out.push_back(std::move(e));
  }
  return out;
}

bool Glob(const char* p, const char* s) {
  while (*p != '\0') {
    if (p[0] == '*' && p[1] == '*') {
      for (const char* t = s;; ++t) {
        if (Glob(p + 2, t)) return true;
        if (*t == '\0') return false;
      }
    }
    if (*p == '*') {
      for (const char* t = s;; ++t) {
        if (Glob(p + 1, t)) return true;
        if (*t == '\0' || *t == '.') return false;
      }
    }
    if (*s == '\0' || *p != *s) return false;
    ++p;
    ++s;
  }
  return *s == '\0';
}

// Adapter Linears (lora_A / lora_B) of the tree: never targets, always trainable.
std::set<const Module*> AdapterModules(const Module& root) {
  std::set<const Module*> out;
  for (const auto& [path, m] : root.NamedModules()) {
    if (auto* l = dynamic_cast<const Linear*>(m); l != nullptr && l->has_lora()) {
      out.insert(l->lora_A());
      out.insert(l->lora_B());
    }
  }
  return out;
}

// Freezes everything, then unfreezes the adapters.
void FreezeBase(Module& root) {
  root.SetRequiresGrad(false);
  for (auto& [path, l] : LoraLayers(root)) {
    l->lora_A()->SetRequiresGrad(true);
    l->lora_B()->SetRequiresGrad(true);
  }
}

std::string FormatNumber(double v) {
  std::string s = absl::StrCat(v);  // shortest round-trip form
  return s;
}

}  // namespace

bool MatchModulePattern(const std::string& pattern, const std::string& path) {
  for (const std::string& p : ExpandBraces(pattern)) {
    if (Glob(p.c_str(), path.c_str())) return true;
  }
  return false;
}

std::vector<std::pair<std::string, Linear*>> LoraLayers(Module& root) {
  std::vector<std::pair<std::string, Linear*>> out;
  for (auto& [path, m] : root.NamedModules()) {
    if (auto* l = dynamic_cast<Linear*>(m); l != nullptr && l->has_lora())
      out.emplace_back(path, l);
  }
  return out;
}

std::vector<std::pair<std::string, const Linear*>> LoraLayers(const Module& root) {
  std::vector<std::pair<std::string, const Linear*>> out;
  for (auto& [path, l] : LoraLayers(const_cast<Module&>(root))) out.emplace_back(path, l);
  return out;
}

std::vector<std::string> AttachLora(Module& root, const LoraConfig& config) {
  SDPO_CHECK(config.dropout == 0, "AttachLora: LoRA dropout ", config.dropout,
             " is not supported (only 0)");
  SDPO_CHECK(!config.targets.empty(), "AttachLora: no target patterns");
  std::set<const Module*> adapters = AdapterModules(root);
  std::vector<std::pair<std::string, Linear*>> selected;
  std::vector<int> hits(config.targets.size(), 0);
  for (auto& [path, m] : root.NamedModules()) {
    auto* linear = dynamic_cast<Linear*>(m);
    if (linear == nullptr || adapters.count(m)) continue;
    bool match = false;
    for (size_t i = 0; i < config.targets.size(); ++i) {
      if (MatchModulePattern(config.targets[i], path)) {
        ++hits[i];
        match = true;
      }
    }
    if (!match) continue;
    SDPO_CHECK(!linear->has_lora(), "AttachLora: '", path, "' already has LoRA adapters");
    selected.emplace_back(path, linear);
  }
  for (size_t i = 0; i < config.targets.size(); ++i) {
    SDPO_CHECK(hits[i] > 0, "AttachLora: the pattern '", config.targets[i],
               "' matches no Linear layer");
  }
  std::vector<std::string> paths;
  for (auto& [path, linear] : selected) {
    linear->AttachLora(config.rank, config.alpha);
    paths.push_back(path);
  }
  FreezeBase(root);
  return paths;
}

void SetLoraEnabled(Module& root, bool enabled) {
  for (auto& [path, l] : LoraLayers(root)) l->SetLoraEnabled(enabled);
}

LoraDisabledScope::LoraDisabledScope(Module& root) : root_(root) {
  for (auto& [path, l] : LoraLayers(root_)) {
    previous_.emplace_back(l, l->lora_enabled());
    l->SetLoraEnabled(false);
  }
}

LoraDisabledScope::~LoraDisabledScope() {
  for (auto& [l, enabled] : previous_) l->SetLoraEnabled(enabled);
}

void MergeLora(Module& root) {
  for (auto& [path, l] : LoraLayers(root)) {
    SDPO_CHECK(!l->lora_merged(), "MergeLora: '", path, "' is already merged");
    SDPO_CHECK(l->lora_enabled(), "MergeLora: the adapters of '", path, "' are switched off");
  }
  for (auto& [path, l] : LoraLayers(root)) l->MergeLora();
}

void UnmergeLora(Module& root) {
  for (auto& [path, l] : LoraLayers(root)) {
    SDPO_CHECK(l->lora_merged(), "UnmergeLora: '", path, "' is not merged");
  }
  for (auto& [path, l] : LoraLayers(root)) l->UnmergeLora();
}

LoraWeights LoraStateDict(const Module& root, const std::string& key_prefix) {
  LoraWeights out;
  auto layers = LoraLayers(root);
  SDPO_CHECK(!layers.empty(), "LoraStateDict: the model has no LoRA adapters");
  std::vector<std::string> paths;
  for (auto& [path, l] : layers) {
    SDPO_CHECK(l->lora_rank() == layers[0].second->lora_rank() &&
                   l->lora_alpha() == layers[0].second->lora_alpha(),
               "LoraStateDict: '", path, "' has rank ", l->lora_rank(), " / alpha ",
               l->lora_alpha(), ", unlike '", layers[0].first, "' (one rank and alpha per file)");
    out.tensors[absl::StrCat(key_prefix, path, kASuffix)] = l->lora_A()->weight();
    out.tensors[absl::StrCat(key_prefix, path, kBSuffix)] = l->lora_B()->weight();
    paths.push_back(path);
  }
  out.metadata["format"] = "pt";
  out.metadata["lora_rank"] = absl::StrCat(layers[0].second->lora_rank());
  out.metadata["lora_alpha"] = FormatNumber(layers[0].second->lora_alpha());
  out.metadata["lora_target_modules"] = absl::StrJoin(paths, ",");
  return out;
}

void LoadLoraStateDict(Module& root, const LoraWeights& weights, bool strict,
                       const std::string& key_prefix) {
  // Module paths named by the file.
  std::map<std::string, std::pair<Tensor, Tensor>> by_path;
  for (const auto& [key, t] : weights.tensors) {
    SDPO_CHECK(absl::StartsWith(key, key_prefix), "LoadLoraStateDict: key '", key,
               "' does not start with the prefix '", key_prefix, "'");
    std::string name = key.substr(key_prefix.size());
    if (absl::EndsWith(name, kASuffix)) {
      by_path[name.substr(0, name.size() - strlen(kASuffix))].first = t;
    } else if (absl::EndsWith(name, kBSuffix)) {
      by_path[name.substr(0, name.size() - strlen(kBSuffix))].second = t;
    } else {
      SDPO_FAIL("LoadLoraStateDict: unexpected key '", key, "' (adapter files hold only '",
                "<module>", kASuffix, "' and '<module>", kBSuffix, "')");
    }
  }
  SDPO_CHECK(!by_path.empty(), "LoadLoraStateDict: no adapter tensors");
  for (const auto& [path, ab] : by_path) {
    SDPO_CHECK(ab.first.defined() && ab.second.defined(), "LoadLoraStateDict: '", path,
               "' has only one of lora_A / lora_B");
  }
  auto meta_number = [&](const char* key, double* value) {
    auto it = weights.metadata.find(key);
    if (it == weights.metadata.end()) return false;
    SDPO_CHECK(absl::SimpleAtod(it->second, value), "LoadLoraStateDict: metadata ", key, " = '",
               it->second, "' is not a number");
    return true;
  };
  double rank_d = 0, alpha = 0;
  const bool has_rank = meta_number("lora_rank", &rank_d);
  SDPO_CHECK(meta_number("lora_alpha", &alpha),
             "LoadLoraStateDict: the metadata lacks "
             "lora_alpha (the adapter scale is alpha / rank)");
  const int64_t rank =
      has_rank ? static_cast<int64_t>(rank_d) : by_path.begin()->second.first.size(0);

  // Validate against the tree before changing anything.
  std::vector<std::pair<Linear*, const std::pair<Tensor, Tensor>*>> plan;
  for (const auto& [path, ab] : by_path) {
    auto* linear = dynamic_cast<Linear*>(root.FindModule(path));
    SDPO_CHECK(linear != nullptr, "LoadLoraStateDict: '", path, "' is not a Linear layer of the ",
               "model");
    const Shape a_shape = {rank, linear->in_features()};
    const Shape b_shape = {linear->out_features(), rank};
    SDPO_CHECK(ab.first.shape() == a_shape, "LoadLoraStateDict: '", key_prefix, path, kASuffix,
               "' has shape ", ShapeStr(ab.first.shape()), ", expected ", ShapeStr(a_shape));
    SDPO_CHECK(ab.second.shape() == b_shape, "LoadLoraStateDict: '", key_prefix, path, kBSuffix,
               "' has shape ", ShapeStr(ab.second.shape()), ", expected ", ShapeStr(b_shape));
    if (linear->has_lora()) {
      SDPO_CHECK(linear->lora_rank() == rank && linear->lora_alpha() == alpha,
                 "LoadLoraStateDict: '", path, "' has adapters of rank ", linear->lora_rank(),
                 " / alpha ", linear->lora_alpha(), ", the file rank ", rank, " / alpha ", alpha);
      SDPO_CHECK(!linear->lora_merged(), "LoadLoraStateDict: the adapters of '", path,
                 "' are merged (unmerge first)");
    }
    plan.emplace_back(linear, &ab);
  }
  if (strict) {
    std::vector<std::string> missing;
    for (auto& [path, l] : LoraLayers(root)) {
      if (!by_path.count(path)) missing.push_back(path);
    }
    SDPO_CHECK(missing.empty(), "LoadLoraStateDict: ", missing.size(),
               " adapted layer(s) are "
               "not in the file: ",
               absl::StrJoin(missing, ", "));
  }
  bool attached = false;
  NoGradGuard no_grad;
  for (auto& [linear, ab] : plan) {
    if (!linear->has_lora()) {
      linear->AttachLora(rank, alpha);
      attached = true;
    }
    ops::CopyInto(linear->lora_A()->weight(), ab->first);
    ops::CopyInto(linear->lora_B()->weight(), ab->second);
  }
  if (attached) FreezeBase(root);
}

LoraFormat ParseLoraFormat(const std::string& name) {
  if (name == "native") return LoraFormat::kNative;
  if (name == "peft") return LoraFormat::kPeft;
  if (name == "diffusers") return LoraFormat::kDiffusers;
  if (name == "comfyui") return LoraFormat::kComfyUi;
  SDPO_FAIL("--lora_format=", name, ": expected native, peft, diffusers or comfyui");
}

const char* LoraFormatName(LoraFormat format) {
  switch (format) {
    case LoraFormat::kNative:
      return "native";
    case LoraFormat::kPeft:
      return "peft";
    case LoraFormat::kDiffusers:
      return "diffusers";
    case LoraFormat::kComfyUi:
      return "comfyui";
  }
  return "?";
}

LoraExport ConvertLora(const LoraWeights& weights, LoraFormat format,
                       const std::function<std::string(const std::string&)>& rename) {
  auto number = [&](const char* key) {
    auto it = weights.metadata.find(key);
    double v = 0;
    SDPO_CHECK(it != weights.metadata.end() && absl::SimpleAtod(it->second, &v) && v > 0,
               "ConvertLora: the adapters' metadata needs a positive ", key);
    return v;
  };
  const double rank = number("lora_rank"), alpha = number("lora_alpha");
  LoraExport out;
  if (format == LoraFormat::kNative) {
    out.tensors = weights.tensors;
    out.metadata = weights.metadata;
    return out;
  }
  std::vector<std::string> targets;
  for (const auto& [key, t] : weights.tensors) {
    const bool is_a = absl::EndsWith(key, kASuffix);
    SDPO_CHECK(is_a || absl::EndsWith(key, kBSuffix), "ConvertLora: '", key,
               "' is not a lora_A / lora_B weight");
    const std::string path = key.substr(0, key.size() - strlen(is_a ? kASuffix : kBSuffix));
    SDPO_CHECK(t.dim() == 2 && t.size(is_a ? 0 : 1) == static_cast<int64_t>(rank), "ConvertLora: '",
               key, "' has shape ", ShapeStr(t.shape()), ", not rank ", rank);
    const std::string name = rename ? rename(path) : path;
    Tensor value = ops::Contiguous(ops::Cast(ops::To(t, Device::CPU()), kF32));
    std::string prefix;
    switch (format) {
      case LoraFormat::kPeft:
        prefix = "base_model.model.";
        break;
      case LoraFormat::kDiffusers:
        prefix = "transformer.";
        if (!is_a) value = ops::MulScalar(value, alpha / rank);  // diffusers applies scale 1
        break;
      case LoraFormat::kComfyUi:
        prefix = "diffusion_model.";
        if (is_a) {
          out.tensors[absl::StrCat(prefix, name, ".alpha")] = Tensor::Scalar(alpha, kF32);
        }
        break;
      case LoraFormat::kNative:
        break;
    }
    out.tensors[absl::StrCat(prefix, name, is_a ? kASuffix : kBSuffix)] = value;
    if (is_a) targets.push_back(name);
  }
  out.metadata["format"] = "pt";
  if (format == LoraFormat::kPeft) {
    // adapter_config.json: what PeftModel.from_pretrained reads (LoraConfig fields); the
    // targets are full module paths, which PEFT matches exactly.
    json::Value::Array modules;
    for (const std::string& t : targets) modules.push_back(json::Value::String(t));
    out.adapter_config_json = json::Serialize(json::Value::MakeObject({
        {"peft_type", json::Value::String("LORA")},
        {"task_type", json::Value()},
        {"r", json::Value::Int(static_cast<int64_t>(rank))},
        {"lora_alpha", json::Value::Double(alpha)},
        {"lora_dropout", json::Value::Double(0)},
        {"bias", json::Value::String("none")},
        {"fan_in_fan_out", json::Value::Bool(false)},
        {"init_lora_weights", json::Value::Bool(true)},
        {"use_rslora", json::Value::Bool(false)},
        {"use_dora", json::Value::Bool(false)},
        {"inference_mode", json::Value::Bool(true)},
        {"modules_to_save", json::Value()},
        {"target_modules", json::Value::MakeArray(std::move(modules))},
    }));
  }
  return out;
}

}  // namespace sdpo::nn
