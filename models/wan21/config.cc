#include "models/wan21/config.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/checkpoint_util.h"
#include "tensor/error.h"

namespace sdpo::wan21 {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}





template <size_t N>
std::array<int64_t, N> GetInts(const json::Value& v, const std::string& key,
                               const std::string& source) {
  SDPO_CHECK(v.is_array() && v.as_array().size() == N, source, ": key \"", key,
             "\" must be a list of ", N, " integers, found ", json::Serialize(v));
  std::array<int64_t, N> out{};
  for (size_t i = 0; i < N; ++i) out[i] = json::ExpectInt(v.as_array()[i], key, source);
  return out;
}

WanConfig FromOfficialJson(const json::Value& value, const std::string& source) {
  WanConfig c;
  for (const auto& [key, v] : value.as_object()) {
    if (!key.empty() && key[0] == '_') continue;  // _class_name, _diffusers_version, ...
    if (key == "model_type") {
      c.model_type = json::ExpectString(v, key, source);
    } else if (key == "patch_size") {
      c.patch_size = GetInts<3>(v, key, source);
    } else if (key == "text_len") {
      c.text_len = json::ExpectInt(v, key, source);
    } else if (key == "in_dim") {
      c.in_dim = json::ExpectInt(v, key, source);
    } else if (key == "dim") {
      c.dim = json::ExpectInt(v, key, source);
    } else if (key == "ffn_dim") {
      c.ffn_dim = json::ExpectInt(v, key, source);
    } else if (key == "freq_dim") {
      c.freq_dim = json::ExpectInt(v, key, source);
    } else if (key == "text_dim") {
      c.text_dim = json::ExpectInt(v, key, source);
    } else if (key == "out_dim") {
      c.out_dim = json::ExpectInt(v, key, source);
    } else if (key == "num_heads") {
      c.num_heads = json::ExpectInt(v, key, source);
    } else if (key == "num_layers") {
      c.num_layers = json::ExpectInt(v, key, source);
    } else if (key == "window_size") {
      c.window_size = GetInts<2>(v, key, source);
    } else if (key == "qk_norm") {
      c.qk_norm = json::ExpectBool(v, key, source);
    } else if (key == "cross_attn_norm") {
      c.cross_attn_norm = json::ExpectBool(v, key, source);
    } else if (key == "eps") {
      c.eps = json::ExpectDouble(v, key, source);
    } else {
      SDPO_FAIL(source, ": unknown Wan2.1 config key \"", key,
                "\" (known: model_type, patch_size, text_len, in_dim, dim, ffn_dim, freq_dim, "
                "text_dim, out_dim, num_heads, num_layers, window_size, qk_norm, "
                "cross_attn_norm, eps)");
    }
  }
  return c;
}

// diffusers WanTransformer3DModel config.json.
WanConfig FromDiffusersJson(const json::Value& value, const std::string& source) {
  WanConfig c;
  int64_t heads = -1, head_dim = -1;
  for (const auto& [key, v] : value.as_object()) {
    if (!key.empty() && key[0] == '_') continue;
    if (key == "patch_size") {
      c.patch_size = GetInts<3>(v, key, source);
    } else if (key == "num_attention_heads") {
      heads = json::ExpectInt(v, key, source);
    } else if (key == "attention_head_dim") {
      head_dim = json::ExpectInt(v, key, source);
    } else if (key == "in_channels") {
      c.in_dim = json::ExpectInt(v, key, source);
    } else if (key == "out_channels") {
      c.out_dim = json::ExpectInt(v, key, source);
    } else if (key == "text_dim") {
      c.text_dim = json::ExpectInt(v, key, source);
    } else if (key == "freq_dim") {
      c.freq_dim = json::ExpectInt(v, key, source);
    } else if (key == "ffn_dim") {
      c.ffn_dim = json::ExpectInt(v, key, source);
    } else if (key == "num_layers") {
      c.num_layers = json::ExpectInt(v, key, source);
    } else if (key == "cross_attn_norm") {
      c.cross_attn_norm = json::ExpectBool(v, key, source);
    } else if (key == "qk_norm") {
      if (v.is_null()) {
        c.qk_norm = false;
      } else {
        std::string s = json::ExpectString(v, key, source);
        SDPO_CHECK(s == "rms_norm_across_heads", source, ": qk_norm \"", s,
                   "\" is not supported (Wan2.1 uses \"rms_norm_across_heads\")");
        c.qk_norm = true;
      }
    } else if (key == "eps") {
      c.eps = json::ExpectDouble(v, key, source);
    } else if (key == "image_dim" || key == "added_kv_proj_dim" || key == "pos_embed_seq_len") {
      SDPO_CHECK(v.is_null(), source, ": \"", key, "\" = ", json::Serialize(v),
                 " describes an image-conditioned variant (only T2V is implemented)");
    } else if (key == "rope_max_seq_len") {
      SDPO_CHECK(json::ExpectInt(v, key, source) == 1024, source,
                 ": rope_max_seq_len must be 1024 (the official table), found ",
                 json::Serialize(v));
    } else if (key == "text_len") {
      c.text_len = json::ExpectInt(v, key, source);
    } else {
      SDPO_FAIL(source, ": unknown key \"", key, "\" in a diffusers Wan config");
    }
  }
  SDPO_CHECK(heads > 0 && head_dim > 0, source,
             ": a diffusers Wan config needs num_attention_heads and attention_head_dim");
  c.num_heads = heads;
  c.dim = heads * head_dim;
  return c;
}

}  // namespace

std::array<int64_t, 3> WanConfig::rope_axes() const {
  const int64_t d = head_dim();
  return {d - 4 * (d / 6), 2 * (d / 6), 2 * (d / 6)};
}

void WanConfig::Validate(const std::string& source) const {
  SDPO_CHECK(model_type == "t2v", source, ": model_type \"", model_type,
             "\" is not implemented (only \"t2v\")");
  SDPO_CHECK(window_size[0] == -1 && window_size[1] == -1, source, ": window_size (",
             window_size[0], ", ", window_size[1],
             ") is not implemented (only global attention, (-1, -1))");
  // Far above the released models (1.3B: dim 1536, 14B: dim 5120, ffn 13824, 40 layers).
  ckpt::CheckSizeLimits({{"patch_size[0]", patch_size[0], 1, 64},
                         {"patch_size[1]", patch_size[1], 1, 64},
                         {"patch_size[2]", patch_size[2], 1, 64},
                         {"text_len", text_len, 1, 1 << 16},
                         {"in_dim", in_dim, 1, 1 << 12},
                         {"out_dim", out_dim, 1, 1 << 12},
                         {"dim", dim, 1, 1 << 16},
                         {"ffn_dim", ffn_dim, 1, 1 << 18},
                         {"freq_dim", freq_dim, 2, 1 << 16},
                         {"text_dim", text_dim, 1, 1 << 16},
                         {"num_heads", num_heads, 1, 1 << 10},
                         {"num_layers", num_layers, 0, 1 << 10}},
                        source);
  for (int64_t p : patch_size) {
    SDPO_CHECK(p > 0, source, ": patch_size must be positive, found (", patch_size[0], ", ",
               patch_size[1], ", ", patch_size[2], ")");
  }
  SDPO_CHECK(text_len > 0 && in_dim > 0 && dim > 0 && ffn_dim > 0 && freq_dim >= 2 &&
                 text_dim > 0 && out_dim > 0 && num_heads > 0 && num_layers >= 0,
             source, ": sizes must be positive: ", ToJson());
  SDPO_CHECK(freq_dim % 2 == 0, source, ": freq_dim must be even, found ", freq_dim);
  SDPO_CHECK(dim % num_heads == 0, source, ": dim ", dim, " is not a multiple of num_heads ",
             num_heads);
  const int64_t d = head_dim();
  SDPO_CHECK(d % 2 == 0 && d >= 6, source, ": head_dim ", d,
             " must be even and at least 6 (3-D RoPE over complex pairs)");
  SDPO_CHECK(eps > 0 && std::isfinite(eps), source, ": eps must be positive, found ", eps);
}

WanConfig WanConfig::Preset(const std::string& name) {
  std::string n = Lower(name);
  if (n.rfind("t2v-", 0) == 0) n = n.substr(4);
  WanConfig c;
  if (n == "1.3b") {
    c.dim = 1536;
    c.ffn_dim = 8960;
    c.num_heads = 12;
    c.num_layers = 30;
  } else if (n == "14b") {
    c.dim = 5120;
    c.ffn_dim = 13824;
    c.num_heads = 40;
    c.num_layers = 40;
  } else {
    SDPO_FAIL("unknown Wan2.1 preset \"", name, "\" (known: 1.3b, 14b)");
  }
  c.freq_dim = 256;
  c.text_dim = 4096;
  c.text_len = 512;
  return c;
}

WanConfig WanConfig::FromJson(const json::Value& value, const std::string& source) {
  SDPO_CHECK(value.is_object(), source, ": a Wan2.1 config must be a JSON object, found ",
             json::TypeName(value.type()));
  WanConfig c = value.contains("num_attention_heads") ? FromDiffusersJson(value, source)
                                                      : FromOfficialJson(value, source);
  c.Validate(source);
  return c;
}

WanConfig WanConfig::FromJsonString(const std::string& text, const std::string& source) {
  return FromJson(json::Parse(text, source), source);
}

WanConfig WanConfig::FromFile(const std::string& path) {
  return FromJson(json::ParseFile(path), path);
}

std::string WanConfig::ToJson() const {
  auto ints = [](auto arr) {
    json::Value::Array a;
    for (int64_t x : arr) a.push_back(json::Value::Int(x));
    return json::Value::MakeArray(std::move(a));
  };
  json::Value::Object o = {
      {"model_type", json::Value::String(model_type)},
      {"patch_size", ints(patch_size)},
      {"text_len", json::Value::Int(text_len)},
      {"in_dim", json::Value::Int(in_dim)},
      {"dim", json::Value::Int(dim)},
      {"ffn_dim", json::Value::Int(ffn_dim)},
      {"freq_dim", json::Value::Int(freq_dim)},
      {"text_dim", json::Value::Int(text_dim)},
      {"out_dim", json::Value::Int(out_dim)},
      {"num_heads", json::Value::Int(num_heads)},
      {"num_layers", json::Value::Int(num_layers)},
      {"window_size", ints(window_size)},
      {"qk_norm", json::Value::Bool(qk_norm)},
      {"cross_attn_norm", json::Value::Bool(cross_attn_norm)},
      {"eps", json::Value::Double(eps)},
  };
  return json::Serialize(json::Value::MakeObject(std::move(o)));
}

bool WanConfig::operator==(const WanConfig& o) const {
  return model_type == o.model_type && patch_size == o.patch_size && text_len == o.text_len &&
         in_dim == o.in_dim && dim == o.dim && ffn_dim == o.ffn_dim && freq_dim == o.freq_dim &&
         text_dim == o.text_dim && out_dim == o.out_dim && num_heads == o.num_heads &&
         num_layers == o.num_layers && window_size == o.window_size && qk_norm == o.qk_norm &&
         cross_attn_norm == o.cross_attn_norm && eps == o.eps;
}

std::vector<std::pair<std::string, Shape>> ParameterShapes(const WanConfig& c) {
  const int64_t d = c.dim;
  std::vector<std::pair<std::string, Shape>> p;
  auto linear = [&](const std::string& name, int64_t in, int64_t out) {
    p.emplace_back(name + ".weight", Shape{out, in});
    p.emplace_back(name + ".bias", Shape{out});
  };
  p.emplace_back("patch_embedding.weight",
                 Shape{d, c.in_dim, c.patch_size[0], c.patch_size[1], c.patch_size[2]});
  p.emplace_back("patch_embedding.bias", Shape{d});
  linear("text_embedding.0", c.text_dim, d);
  linear("text_embedding.2", d, d);
  linear("time_embedding.0", c.freq_dim, d);
  linear("time_embedding.2", d, d);
  linear("time_projection.1", d, 6 * d);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = absl::StrCat("blocks.", i, ".");
    p.emplace_back(b + "modulation", Shape{1, 6, d});
    for (const char* attn : {"self_attn", "cross_attn"}) {
      const std::string a = b + attn + ".";
      for (const char* proj : {"q", "k", "v", "o"}) linear(a + proj, d, d);
      if (c.qk_norm) {
        p.emplace_back(a + "norm_q.weight", Shape{d});
        p.emplace_back(a + "norm_k.weight", Shape{d});
      }
      if (std::string(attn) == "self_attn" && c.cross_attn_norm) {
        p.emplace_back(b + "norm3.weight", Shape{d});
        p.emplace_back(b + "norm3.bias", Shape{d});
      }
    }
    linear(b + "ffn.0", d, c.ffn_dim);
    linear(b + "ffn.2", c.ffn_dim, d);
  }
  p.emplace_back("head.modulation", Shape{1, 2, d});
  linear("head.head", d, c.patch_out());
  return p;
}

int64_t NumParameters(const WanConfig& config) {
  int64_t n = 0;
  for (const auto& [name, shape] : ParameterShapes(config)) n += NumElements(shape);
  return n;
}

}  // namespace sdpo::wan21
