// Wan2.1 DiT configuration: the keyword arguments of the official `WanModel(**config)`
// (Wan-Video/Wan2.1 wan/modules/model.py), the presets of the released T2V models, and the
// shapes of every parameter under its official state_dict name.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/json.h"
#include "tensor/tensor.h"

namespace sdpo::wan21 {

struct WanConfig {
  // The official constructor's defaults (used for keys a JSON config leaves out).
  std::string model_type = "t2v";  // only "t2v" is implemented
  std::array<int64_t, 3> patch_size = {1, 2, 2};
  int64_t text_len = 512;
  int64_t in_dim = 16;
  int64_t dim = 2048;
  int64_t ffn_dim = 8192;
  int64_t freq_dim = 256;
  int64_t text_dim = 4096;
  int64_t out_dim = 16;
  int64_t num_heads = 16;
  int64_t num_layers = 32;
  std::array<int64_t, 2> window_size = {-1, -1};  // only global attention is implemented
  bool qk_norm = true;
  bool cross_attn_norm = true;
  double eps = 1e-6;

  int64_t head_dim() const { return dim / num_heads; }
  // Real dims of the (frame, height, width) RoPE parts of a head:
  // (d - 4 (d / 6), 2 (d / 6), 2 (d / 6)) for head_dim d (44, 42, 42 for d = 128).
  std::array<int64_t, 3> rope_axes() const;
  // Values per output token: prod(patch_size) * out_dim (the head's width).
  int64_t patch_out() const { return patch_size[0] * patch_size[1] * patch_size[2] * out_dim; }

  // Throws (naming `source`) when the values are unusable or describe a variant this
  // implementation does not cover (i2v/flf2v/vace, local attention windows).
  void Validate(const std::string& source = "config") const;

  // "1.3b" (Wan2.1-T2V-1.3B) or "14b" (Wan2.1-T2V-14B); case-insensitive, "t2v-" prefix allowed.
  static WanConfig Preset(const std::string& name);
  // The official JSON (keys of WanModel(**config); "_"-prefixed keys such as "_class_name" are
  // ignored) or a diffusers WanTransformer3DModel config.json (detected by
  // "num_attention_heads"). Unknown keys and wrong types are errors naming the key.
  static WanConfig FromJson(const json::Value& value, const std::string& source = "config");
  static WanConfig FromJsonString(const std::string& text, const std::string& source = "config");
  static WanConfig FromFile(const std::string& path);
  // Official-format JSON (all keys, sorted), as the fixtures store it in __metadata__["config"].
  std::string ToJson() const;

  bool operator==(const WanConfig& o) const;
  bool operator!=(const WanConfig& o) const { return !(*this == o); }
};

// Every parameter of the model (official state_dict names, official registration order) with
// its shape, computed without building the model.
std::vector<std::pair<std::string, Shape>> ParameterShapes(const WanConfig& config);
int64_t NumParameters(const WanConfig& config);

}  // namespace sdpo::wan21
