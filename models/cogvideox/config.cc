#include "models/cogvideox/config.h"

#include <cctype>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "models/checkpoint_util.h"
#include "tensor/error.h"

namespace sdpo::cogvideox {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}





void RequireNull(const json::Value& v, const std::string& key, const std::string& source,
                 const char* why) {
  SDPO_CHECK(v.is_null(), source, ": \"", key, "\" = ", json::Serialize(v), " is not supported (",
             why, "); expected null");
}

}  // namespace

std::array<int64_t, 3> CogVideoXConfig::rope_axes() const {
  const int64_t hd = attention_head_dim;
  return {hd / 4, hd / 8 * 3, hd / 8 * 3};
}

void CogVideoXConfig::Validate(const std::string& source) const {
  // Far above the released models (5B: 48 heads of 64, 42 layers, 226 text tokens).
  ckpt::CheckSizeLimits({{"num_attention_heads", num_attention_heads, 1, 1 << 10},
                         {"attention_head_dim", attention_head_dim, 1, 1 << 10},
                         {"in_channels", in_channels, 1, 1 << 12},
                         {"out_channels", out_channels, 1, 1 << 12},
                         {"time_embed_dim", time_embed_dim, 1, 1 << 16},
                         {"text_embed_dim", text_embed_dim, 1, 1 << 16},
                         {"num_layers", num_layers, 0, 1 << 10},
                         {"sample_width", sample_width, 1, 1 << 12},
                         {"sample_height", sample_height, 1, 1 << 12},
                         {"sample_frames", sample_frames, 1, 1 << 12},
                         {"patch_size", patch_size, 1, 64},
                         {"temporal_compression_ratio", temporal_compression_ratio, 1, 64},
                         {"max_text_seq_length", max_text_seq_length, 1, 1 << 16}},
                        source);
  SDPO_CHECK(inner_dim() <= (1 << 16), source,
             ": num_attention_heads * attention_head_dim = ", inner_dim(),
             " is above the supported 65536");
  SDPO_CHECK(num_attention_heads > 0 && attention_head_dim > 0 && in_channels > 0 &&
                 out_channels > 0 && time_embed_dim > 0 && text_embed_dim > 0 && num_layers >= 0 &&
                 sample_width > 0 && sample_height > 0 && sample_frames > 0 && patch_size > 0 &&
                 temporal_compression_ratio > 0 && max_text_seq_length > 0,
             source, ": sizes must be positive: ", ToJson());
  SDPO_CHECK(inner_dim() % 2 == 0, source, ": inner dim ", inner_dim(),
             " must be even (timestep sinusoid)");
  SDPO_CHECK(dropout == 0.0, source, ": dropout ", dropout, " is not implemented (only 0.0)");
  SDPO_CHECK(activation_fn == "gelu-approximate", source, ": activation_fn \"", activation_fn,
             "\" is not implemented (only \"gelu-approximate\")");
  SDPO_CHECK(timestep_activation_fn == "silu", source, ": timestep_activation_fn \"",
             timestep_activation_fn, "\" is not implemented (only \"silu\")");
  SDPO_CHECK(norm_elementwise_affine, source,
             ": norm_elementwise_affine false is not implemented (CogVideoX uses true)");
  SDPO_CHECK(!use_learned_positional_embeddings, source,
             ": use_learned_positional_embeddings (I2V) is not implemented");
  SDPO_CHECK(norm_eps > 0 && std::isfinite(norm_eps), source, ": norm_eps must be positive, found ",
             norm_eps);
  SDPO_CHECK(spatial_interpolation_scale > 0 && temporal_interpolation_scale > 0, source,
             ": interpolation scales must be positive");
  if (use_rotary_positional_embeddings) {
    const auto a = rope_axes();
    SDPO_CHECK(a[0] % 2 == 0 && a[1] % 2 == 0 && a[0] + a[1] + a[2] == attention_head_dim, source,
               ": attention_head_dim ", attention_head_dim,
               " cannot be split into 3-D RoPE parts (hd/4, 3hd/8, 3hd/8), all even");
  } else {
    SDPO_CHECK(inner_dim() % 16 == 0, source, ": inner dim ", inner_dim(),
               " must be a multiple of 16 for the 3-D sin-cos table");
  }
}

CogVideoXConfig CogVideoXConfig::Preset(const std::string& name) {
  std::string n = Lower(name);
  if (n.rfind("cogvideox-", 0) == 0) n = n.substr(10);
  CogVideoXConfig c;
  if (n == "2b") {
    c.num_attention_heads = 30;
    c.num_layers = 30;
    c.use_rotary_positional_embeddings = false;
  } else if (n == "5b") {
    c.num_attention_heads = 48;
    c.num_layers = 42;
    c.use_rotary_positional_embeddings = true;
  } else {
    SDPO_FAIL("unknown CogVideoX preset \"", name, "\" (known: 2b, 5b)");
  }
  return c;
}

CogVideoXConfig CogVideoXConfig::FromJson(const json::Value& value, const std::string& source) {
  SDPO_CHECK(value.is_object(), source, ": a CogVideoX config must be a JSON object, found ",
             json::TypeName(value.type()));
  CogVideoXConfig c;
  bool out_null = false;
  for (const auto& [key, v] : value.as_object()) {
    if (!key.empty() && key[0] == '_') continue;
    if (key == "num_attention_heads") {
      c.num_attention_heads = json::ExpectInt(v, key, source);
    } else if (key == "attention_head_dim") {
      c.attention_head_dim = json::ExpectInt(v, key, source);
    } else if (key == "in_channels") {
      c.in_channels = json::ExpectInt(v, key, source);
    } else if (key == "out_channels") {
      if (v.is_null()) {
        out_null = true;
      } else {
        c.out_channels = json::ExpectInt(v, key, source);
      }
    } else if (key == "flip_sin_to_cos") {
      c.flip_sin_to_cos = json::ExpectBool(v, key, source);
    } else if (key == "freq_shift") {
      c.freq_shift = json::ExpectDouble(v, key, source);
    } else if (key == "time_embed_dim") {
      c.time_embed_dim = json::ExpectInt(v, key, source);
    } else if (key == "ofs_embed_dim") {
      RequireNull(v, key, source, "CogVideoX 1.5 ofs embedding");
    } else if (key == "text_embed_dim") {
      c.text_embed_dim = json::ExpectInt(v, key, source);
    } else if (key == "num_layers") {
      c.num_layers = json::ExpectInt(v, key, source);
    } else if (key == "dropout") {
      c.dropout = json::ExpectDouble(v, key, source);
    } else if (key == "attention_bias") {
      c.attention_bias = json::ExpectBool(v, key, source);
    } else if (key == "sample_width") {
      c.sample_width = json::ExpectInt(v, key, source);
    } else if (key == "sample_height") {
      c.sample_height = json::ExpectInt(v, key, source);
    } else if (key == "sample_frames") {
      c.sample_frames = json::ExpectInt(v, key, source);
    } else if (key == "patch_size") {
      c.patch_size = json::ExpectInt(v, key, source);
    } else if (key == "patch_size_t") {
      RequireNull(v, key, source, "temporal patching is CogVideoX 1.5");
    } else if (key == "temporal_compression_ratio") {
      c.temporal_compression_ratio = json::ExpectInt(v, key, source);
    } else if (key == "max_text_seq_length") {
      c.max_text_seq_length = json::ExpectInt(v, key, source);
    } else if (key == "activation_fn") {
      c.activation_fn = json::ExpectString(v, key, source);
    } else if (key == "timestep_activation_fn") {
      c.timestep_activation_fn = json::ExpectString(v, key, source);
    } else if (key == "norm_elementwise_affine") {
      c.norm_elementwise_affine = json::ExpectBool(v, key, source);
    } else if (key == "norm_eps") {
      c.norm_eps = json::ExpectDouble(v, key, source);
    } else if (key == "spatial_interpolation_scale") {
      c.spatial_interpolation_scale = json::ExpectDouble(v, key, source);
    } else if (key == "temporal_interpolation_scale") {
      c.temporal_interpolation_scale = json::ExpectDouble(v, key, source);
    } else if (key == "use_rotary_positional_embeddings") {
      c.use_rotary_positional_embeddings = json::ExpectBool(v, key, source);
    } else if (key == "use_learned_positional_embeddings") {
      c.use_learned_positional_embeddings = json::ExpectBool(v, key, source);
    } else if (key == "patch_bias") {
      c.patch_bias = json::ExpectBool(v, key, source);
    } else {
      SDPO_FAIL(source, ": unknown key \"", key, "\" in a diffusers CogVideoX config");
    }
  }
  if (out_null) c.out_channels = c.in_channels;
  c.Validate(source);
  return c;
}

CogVideoXConfig CogVideoXConfig::FromJsonString(const std::string& text,
                                                const std::string& source) {
  return FromJson(json::Parse(text, source), source);
}

CogVideoXConfig CogVideoXConfig::FromFile(const std::string& path) {
  return FromJson(json::ParseFile(path), path);
}

std::string CogVideoXConfig::ToJson() const {
  using json::Value;
  Value::Object o = {
      {"num_attention_heads", Value::Int(num_attention_heads)},
      {"attention_head_dim", Value::Int(attention_head_dim)},
      {"in_channels", Value::Int(in_channels)},
      {"out_channels", Value::Int(out_channels)},
      {"flip_sin_to_cos", Value::Bool(flip_sin_to_cos)},
      {"freq_shift", Value::Double(freq_shift)},
      {"time_embed_dim", Value::Int(time_embed_dim)},
      {"text_embed_dim", Value::Int(text_embed_dim)},
      {"num_layers", Value::Int(num_layers)},
      {"dropout", Value::Double(dropout)},
      {"attention_bias", Value::Bool(attention_bias)},
      {"sample_width", Value::Int(sample_width)},
      {"sample_height", Value::Int(sample_height)},
      {"sample_frames", Value::Int(sample_frames)},
      {"patch_size", Value::Int(patch_size)},
      {"temporal_compression_ratio", Value::Int(temporal_compression_ratio)},
      {"max_text_seq_length", Value::Int(max_text_seq_length)},
      {"activation_fn", Value::String(activation_fn)},
      {"timestep_activation_fn", Value::String(timestep_activation_fn)},
      {"norm_elementwise_affine", Value::Bool(norm_elementwise_affine)},
      {"norm_eps", Value::Double(norm_eps)},
      {"spatial_interpolation_scale", Value::Double(spatial_interpolation_scale)},
      {"temporal_interpolation_scale", Value::Double(temporal_interpolation_scale)},
      {"use_rotary_positional_embeddings", Value::Bool(use_rotary_positional_embeddings)},
      {"use_learned_positional_embeddings", Value::Bool(use_learned_positional_embeddings)},
      {"patch_bias", Value::Bool(patch_bias)},
  };
  return json::Serialize(Value::MakeObject(std::move(o)));
}

std::vector<std::pair<std::string, Shape>> ParameterShapes(const CogVideoXConfig& c) {
  const int64_t d = c.inner_dim(), hd = c.attention_head_dim, te = c.time_embed_dim;
  std::vector<std::pair<std::string, Shape>> p;
  auto linear = [&](const std::string& name, int64_t in, int64_t out, bool bias = true) {
    p.emplace_back(name + ".weight", Shape{out, in});
    if (bias) p.emplace_back(name + ".bias", Shape{out});
  };
  auto norm = [&](const std::string& name, int64_t dim) {
    p.emplace_back(name + ".weight", Shape{dim});
    p.emplace_back(name + ".bias", Shape{dim});
  };
  p.emplace_back("patch_embed.proj.weight", Shape{d, c.in_channels, c.patch_size, c.patch_size});
  if (c.patch_bias) p.emplace_back("patch_embed.proj.bias", Shape{d});
  linear("patch_embed.text_proj", c.text_embed_dim, d);
  linear("time_embedding.linear_1", d, te);
  linear("time_embedding.linear_2", te, te);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = absl::StrCat("transformer_blocks.", i, ".");
    linear(b + "norm1.linear", te, 6 * d);
    norm(b + "norm1.norm", d);
    norm(b + "attn1.norm_q", hd);
    norm(b + "attn1.norm_k", hd);
    for (const char* proj : {"to_q", "to_k", "to_v", "to_out.0"}) {
      linear(b + "attn1." + proj, d, d, c.attention_bias);
    }
    linear(b + "norm2.linear", te, 6 * d);
    norm(b + "norm2.norm", d);
    linear(b + "ff.net.0.proj", d, c.ffn_dim());
    linear(b + "ff.net.2", c.ffn_dim(), d);
  }
  norm("norm_final", d);
  linear("norm_out.linear", te, 2 * d);
  norm("norm_out.norm", d);
  linear("proj_out", d, c.patch_out());
  return p;
}

int64_t NumParameters(const CogVideoXConfig& config) {
  int64_t n = 0;
  for (const auto& [name, shape] : ParameterShapes(config)) n += NumElements(shape);
  return n;
}

}  // namespace sdpo::cogvideox
