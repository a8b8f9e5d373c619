// CogVideoX (1.0, T2V) DiT configuration: the constructor arguments of diffusers
// `CogVideoXTransformer3DModel` (its config.json), the presets of the released 2B and 5B models,
// and the shapes of every parameter under its diffusers state_dict name.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/json.h"
#include "tensor/tensor.h"

namespace sdpo::cogvideox {

struct CogVideoXConfig {
  // diffusers constructor defaults (used for keys a JSON config leaves out).
  int64_t num_attention_heads = 30;
  int64_t attention_head_dim = 64;
  int64_t in_channels = 16;
  int64_t out_channels = 16;  // null in JSON means in_channels
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  int64_t time_embed_dim = 512;
  int64_t text_embed_dim = 4096;
  int64_t num_layers = 30;
  double dropout = 0.0;  // only 0 is implemented
  bool attention_bias = true;
  int64_t sample_width = 90;
  int64_t sample_height = 60;
  int64_t sample_frames = 49;
  int64_t patch_size = 2;
  int64_t temporal_compression_ratio = 4;
  int64_t max_text_seq_length = 226;
  std::string activation_fn = "gelu-approximate";  // only this
  std::string timestep_activation_fn = "silu";     // only this
  bool norm_elementwise_affine = true;             // only true
  double norm_eps = 1e-5;
  double spatial_interpolation_scale = 1.875;
  double temporal_interpolation_scale = 1.0;
  bool use_rotary_positional_embeddings = false;   // false: 2B sin-cos table; true: 5B 3-D RoPE
  bool use_learned_positional_embeddings = false;  // only false (I2V is not implemented)
  bool patch_bias = true;

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  int64_t ffn_dim() const { return 4 * inner_dim(); }
  int64_t patch_out() const { return out_channels * patch_size * patch_size; }
  // RoPE head-dim split (t, h, w) = (hd / 4, hd / 8 * 3, hd / 8 * 3).
  std::array<int64_t, 3> rope_axes() const;

  // Throws (naming `source`) for unusable values or variants not implemented (patch_size_t,
  // ofs embedding, learned positions, other activations, dropout).
  void Validate(const std::string& source = "config") const;

  // "2b" (THUDM/CogVideoX-2b) or "5b" (THUDM/CogVideoX-5b), case-insensitive,
  // "cogvideox-" prefix allowed.
  static CogVideoXConfig Preset(const std::string& name);
  // A diffusers config.json ("_"-prefixed keys ignored). Unknown keys, wrong types and
  // unsupported values are errors naming the key.
  static CogVideoXConfig FromJson(const json::Value& value, const std::string& source = "config");
  static CogVideoXConfig FromJsonString(const std::string& text,
                                        const std::string& source = "config");
  static CogVideoXConfig FromFile(const std::string& path);
  std::string ToJson() const;

  bool operator==(const CogVideoXConfig& o) const { return ToJson() == o.ToJson(); }
  bool operator!=(const CogVideoXConfig& o) const { return !(*this == o); }
};

// Every parameter (diffusers names, registration order) with its shape, without building the
// model. 2B: 736 tensors, 1,693,783,872 parameters; 5B: 1024 tensors, 5,570,283,072.
std::vector<std::pair<std::string, Shape>> ParameterShapes(const CogVideoXConfig& config);
int64_t NumParameters(const CogVideoXConfig& config);

}  // namespace sdpo::cogvideox
