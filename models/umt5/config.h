// The T5 encoder's sizes (umT5-XXL for Wan2.1, T5 v1.1-XXL for CogVideoX), in
// the official Wan `T5Encoder` kwargs and the fixtures' `t5_config.json` form:
//
//   {"T5Encoder": {"vocab": 256384, "dim": 4096, "dim_attn": 4096, "dim_ffn":
//   10240,
//                  "num_heads": 64, "num_layers": 24, "num_buckets": 32,
//                  "shared_pos": false, "dropout": 0.1}, "text_len": 512,
//                  "tokenizer": "spiece.model"}
//
// (a bare kwargs object is accepted too), or the transformers form (the `config.json` of a
// `T5EncoderModel` / `UMT5EncoderModel` folder: vocab_size, d_model, d_kv, d_ff, num_layers,
// num_heads, relative_attention_*, layer_norm_epsilon; model_type "t5" is T5 v1.1 with
// shared_pos and text_len 226, "umt5" text_len 512; feed_forward_proj must be "gated-gelu").
#pragma once

#include <cstdint>
#include <string>

namespace sdpo::umt5 {

struct T5Config {
  int64_t vocab = 256384;
  int64_t dim = 4096;
  int64_t dim_attn = 4096;  // heads * head_dim
  int64_t dim_ffn = 10240;
  int64_t num_heads = 64;
  int64_t num_layers = 24;
  int64_t num_buckets = 32;
  int64_t max_distance = 128;  // of the relative position buckets (fixed in t5.py)
  // true: one relative position table for all blocks (T5 v1.1); false: one per
  // block (umT5).
  bool shared_pos = false;
  double eps = 1e-6;
  // Tokens per prompt (from a config file; 0 when unknown) and the tokenizer
  // file named there.
  int64_t text_len = 0;
  std::string tokenizer;

  int64_t head_dim() const { return dim_attn / num_heads; }
  // Throws sdpo::Error naming `source` and the bad field.
  void Validate(const std::string& source = "config") const;
  std::string ToJson() const;  // the fixtures' form
  int64_t NumParameters() const;

  static T5Config UMT5Xxl();   // Wan2.1: text_len 512
  static T5Config T5V11Xxl();  // CogVideoX: vocab 32128, shared_pos, text_len 226
  static T5Config FromJson(const std::string& text, const std::string& source = "config");
  static T5Config FromFile(const std::string& path);
};

}  // namespace sdpo::umt5
