// LoRA over a module tree: adapters on the Linear layers selected by name patterns, frozen base
// weights, run-time on/off (the preference trainer's reference model is the same weights with
// the adapters off), merge/unmerge, and adapter-only state dicts with PEFT names:
//   <module path>.lora_A.weight  [rank, in]
//   <module path>.lora_B.weight  [out, rank]
// and rank / alpha in the metadata ("lora_rank", "lora_alpha"). The file I/O is in
// nn/checkpoint_io.h.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nn/layers.h"

namespace sdpo::nn {

struct LoraConfig {
  int64_t rank = 16;
  double alpha = 16;  // the adapter output is scaled by alpha / rank
  // Module-path patterns, e.g. "blocks.*.self_attn.{q,k,v,o}", "blocks.*.ffn.*".
  std::vector<std::string> targets;
  double dropout = 0;  // only 0 is supported
};

// Glob over dotted module paths, matching the whole path: '*' matches any run of characters
// within one segment (no '.'), '**' any run including dots, and {a,b,c} one of the
// alternatives (no nesting).
bool MatchModulePattern(const std::string& pattern, const std::string& path);

// Attaches adapters to every Linear whose path matches one of config.targets (the adapters'
// own Linears are never targets), then freezes every parameter of the tree except the
// adapters. Returns the adapted paths in tree order. Throws if a pattern selects no Linear, or
// a selected Linear already has adapters.
std::vector<std::string> AttachLora(Module& root, const LoraConfig& config);

// The adapted Linears of the tree, by path.
std::vector<std::pair<std::string, Linear*>> LoraLayers(Module& root);
std::vector<std::pair<std::string, const Linear*>> LoraLayers(const Module& root);

// Switches every adapter on or off (off: the base model).
void SetLoraEnabled(Module& root, bool enabled);

// Switches every adapter off for its lifetime and back on afterwards: the reference forward.
class LoraDisabledScope {
 public:
  explicit LoraDisabledScope(Module& root);
  ~LoraDisabledScope();
  LoraDisabledScope(const LoraDisabledScope&) = delete;
  LoraDisabledScope& operator=(const LoraDisabledScope&) = delete;

 private:
  Module& root_;
  std::vector<std::pair<Linear*, bool>> previous_;
};

// Folds every adapter into its base weight (W += alpha / rank * B A) and back.
void MergeLora(Module& root);
void UnmergeLora(Module& root);

struct LoraWeights {
  TensorMap tensors;                            // PEFT names (with key_prefix)
  std::map<std::string, std::string> metadata;  // lora_rank, lora_alpha, lora_target_modules
};

// The adapters alone. Tensors share data with the model. `key_prefix` is prepended to every
// name (e.g. "diffusion_model." or "transformer." for other tools' conventions).
LoraWeights LoraStateDict(const Module& root, const std::string& key_prefix = "");

// Loads adapters saved by LoraStateDict (or PEFT). Layers named in the file that have no
// adapters get them (rank and alpha from the metadata) and the base is frozen as in
// AttachLora. Keys must start with key_prefix, which is stripped. strict: every adapted layer
// of the tree must be in the file. Rank, alpha and shape mismatches are errors naming the key.
void LoadLoraStateDict(Module& root, const LoraWeights& weights, bool strict = true,
                       const std::string& key_prefix = "");

// --- adapters for other tools -------------------------------------------------------------------
//
// The same adapters under the names other tools load (docs/modules.md, "LoRA files for other
// tools"); `rename` maps a module path of this tree to the tool's module path (identity for
// tools that use the official names).
//   peft       `base_model.model.<path>.lora_{A,B}.weight` in adapter_model.safetensors, plus
//              adapter_config.json (r, lora_alpha, target_modules = the adapted paths)
//   diffusers  `transformer.<path>.lora_{A,B}.weight` (pipe.load_lora_weights); diffusers
//              scales such files by 1 (alpha = r), so alpha / rank is folded into lora_B
//   comfyui    `diffusion_model.<path>.lora_{A,B}.weight` and `diffusion_model.<path>.alpha`
//              (a scalar), the format of ComfyUI's LoRA loader and of official-name Wan LoRAs
//              (diffusers reads it too)
enum class LoraFormat { kNative, kPeft, kDiffusers, kComfyUi };
LoraFormat ParseLoraFormat(const std::string& name);  // native | peft | diffusers | comfyui
const char* LoraFormatName(LoraFormat format);

struct LoraExport {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;
  std::string adapter_config_json;  // peft only
};

// Converts adapters read from (or made like) LoraStateDict's output. Tensors are f32 copies.
LoraExport ConvertLora(const LoraWeights& weights, LoraFormat format,
                       const std::function<std::string(const std::string&)>& rename = nullptr);

}  // namespace sdpo::nn
