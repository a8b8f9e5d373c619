#include "models/umt5/config.h"

#include "absl/strings/str_cat.h"
#include "io/json.h"
#include "tensor/error.h"

namespace sdpo::umt5 {

T5Config T5Config::UMT5Xxl() {
  T5Config c;
  c.text_len = 512;
  c.tokenizer = "google/umt5-xxl/spiece.model";
  return c;
}

T5Config T5Config::T5V11Xxl() {
  T5Config c;
  c.vocab = 32128;
  c.shared_pos = true;
  c.text_len = 226;
  c.tokenizer = "tokenizer/spiece.model";
  return c;
}

void T5Config::Validate(const std::string& source) const {
  auto positive = [&](int64_t v, const char* name) {
    SDPO_CHECK(v > 0 && v <= (int64_t{1} << 31), source, ": T5 config ", name,
               " must be in [1, 2^31], found ", v);
  };
  positive(vocab, "vocab");
  positive(dim, "dim");
  positive(dim_attn, "dim_attn");
  positive(dim_ffn, "dim_ffn");
  positive(num_heads, "num_heads");
  positive(num_layers, "num_layers");
  positive(num_buckets, "num_buckets");
  positive(max_distance, "max_distance");
  SDPO_CHECK(dim_attn % num_heads == 0, source, ": T5 config dim_attn (", dim_attn,
             ") must be a multiple of num_heads (", num_heads, ")");
  // Bidirectional buckets: half per direction, half of those exact (t5.py's
  // layout).
  SDPO_CHECK(num_buckets % 4 == 0, source,
             ": T5 config num_buckets must be a multiple of 4, found ", num_buckets);
  SDPO_CHECK(max_distance > num_buckets / 4, source, ": T5 config max_distance (", max_distance,
             ") must exceed num_buckets / 4 (", num_buckets / 4, ")");
  SDPO_CHECK(eps > 0, source, ": T5 config eps must be positive, found ", eps);
  SDPO_CHECK(text_len >= 0 && text_len <= (int64_t{1} << 20), source,
             ": T5 config text_len must be in [0, 2^20], found ", text_len);
}

std::string T5Config::ToJson() const {
  std::string s = absl::StrCat(
      "{\"T5Encoder\": {\"vocab\": ", vocab, ", \"dim\": ", dim, ", \"dim_attn\": ", dim_attn,
      ", \"dim_ffn\": ", dim_ffn, ", \"num_heads\": ", num_heads, ", \"num_layers\": ", num_layers,
      ", \"num_buckets\": ", num_buckets, ", \"shared_pos\": ", shared_pos ? "true" : "false", "}");
  if (text_len > 0) absl::StrAppend(&s, ", \"text_len\": ", text_len);
  if (!tokenizer.empty()) absl::StrAppend(&s, ", \"tokenizer\": ", json::Quote(tokenizer));
  return s + "}";
}

int64_t T5Config::NumParameters() const {
  const int64_t per_block = 2 * dim + 4 * dim * dim_attn + 3 * dim * dim_ffn;
  const int64_t pos = num_buckets * num_heads;
  return vocab * dim + num_layers * per_block + (shared_pos ? 1 : num_layers) * pos + dim;
}

namespace {

T5Config FromValue(const json::Value& root, const std::string& source) {
  SDPO_CHECK(root.is_object(), source, ": a T5 config must be a JSON object, found ",
             json::TypeName(root.type()));
  const json::Value* kwargs = root.find("T5Encoder");
  if (kwargs == nullptr) kwargs = &root;
  SDPO_CHECK(kwargs->is_object(), source, ": \"T5Encoder\" must be an object, found ",
             json::TypeName(kwargs->type()));
  T5Config c;
  const std::string where = absl::StrCat(source, " T5Encoder");
  auto read_int = [&](const char* key, int64_t* out) {
    if (const json::Value* v = kwargs->find(key)) *out = json::ExpectInt(*v, key, where);
  };
  for (const char* key : {"vocab", "dim", "num_heads", "num_layers"}) {
    SDPO_CHECK(kwargs->contains(key), where, ": missing key \"", key, "\"");
  }
  read_int("vocab", &c.vocab);
  read_int("dim", &c.dim);
  c.dim_attn = c.dim;
  read_int("dim_attn", &c.dim_attn);
  read_int("dim_ffn", &c.dim_ffn);
  read_int("num_heads", &c.num_heads);
  read_int("num_layers", &c.num_layers);
  read_int("num_buckets", &c.num_buckets);
  if (const json::Value* v = kwargs->find("shared_pos")) {
    c.shared_pos = json::ExpectBool(*v, "shared_pos", where);
  }
  if (const json::Value* v = root.find("text_len")) {
    c.text_len = json::ExpectInt(*v, "text_len", source);
  }
  if (const json::Value* v = root.find("tokenizer")) {
    c.tokenizer = json::ExpectString(*v, "tokenizer", source);
  }
  c.Validate(source);
  return c;
}

// The transformers form (`T5Config` / `UMT5Config`, the config.json of a T5EncoderModel folder
// such as CogVideoX's text_encoder/): only the gated-GELU encoders (T5 v1.1, umT5) exist here.
T5Config FromTransformers(const json::Value& root, const std::string& source) {
  const std::string type = root.contains("model_type")
                               ? json::ExpectString(*root.find("model_type"), "model_type", source)
                               : "";
  SDPO_CHECK(type == "t5" || type == "umt5", source, ": model_type \"", type,
             "\" is not a T5 encoder (expected \"t5\" for T5 v1.1 or \"umt5\")");
  if (const json::Value* v = root.find("feed_forward_proj")) {
    const std::string proj = json::ExpectString(*v, "feed_forward_proj", source);
    SDPO_CHECK(proj == "gated-gelu", source, ": feed_forward_proj \"", proj,
               "\" is not implemented (T5 v1.1 and umT5 use \"gated-gelu\"; the original T5's "
               "\"relu\" is not)");
  }
  for (const char* key : {"vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads"}) {
    SDPO_CHECK(root.contains(key), source, ": missing key \"", key, "\"");
  }
  auto read_int = [&](const char* key) { return json::ExpectInt(*root.find(key), key, source); };
  T5Config c = type == "t5" ? T5Config::T5V11Xxl() : T5Config::UMT5Xxl();
  c.tokenizer.clear();  // a transformers folder keeps its tokenizer elsewhere
  c.vocab = read_int("vocab_size");
  c.dim = read_int("d_model");
  c.num_heads = read_int("num_heads");
  const int64_t d_kv = read_int("d_kv");
  SDPO_CHECK(d_kv > 0 && d_kv <= (int64_t{1} << 20) && c.num_heads <= (int64_t{1} << 20), source,
             ": d_kv ", d_kv, " x num_heads ", c.num_heads, " is not a usable attention width");
  c.dim_attn = c.num_heads * d_kv;
  c.dim_ffn = read_int("d_ff");
  c.num_layers = read_int("num_layers");
  if (root.contains("relative_attention_num_buckets")) {
    c.num_buckets = read_int("relative_attention_num_buckets");
  }
  if (root.contains("relative_attention_max_distance")) {
    c.max_distance = read_int("relative_attention_max_distance");
  }
  if (const json::Value* v = root.find("layer_norm_epsilon")) {
    c.eps = json::ExpectDouble(*v, "layer_norm_epsilon", source);
  }
  c.shared_pos = type == "t5";
  c.Validate(source);
  return c;
}

T5Config FromAnyValue(const json::Value& root, const std::string& source) {
  if (root.is_object() && root.contains("d_model")) return FromTransformers(root, source);
  return FromValue(root, source);
}

}  // namespace

T5Config T5Config::FromJson(const std::string& text, const std::string& source) {
  return FromAnyValue(json::Parse(text, source), source);
}

T5Config T5Config::FromFile(const std::string& path) {
  return FromAnyValue(json::ParseFile(path), path);
}

}  // namespace sdpo::umt5
