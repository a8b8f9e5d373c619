// Prompts to the text embeddings the DiTs consume, each prompt encoded once: the library the
// trainer, the sampler and `prepare` use.
//
//   PromptEncoderOptions o;
//   o.weights = "Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth";   // or safetensors
//   o.cache_dir = "runs/text_cache";
//   auto encoder = PromptEncoder::Open(o);
//   std::vector<Tensor> contexts = encoder->EncodePrompts({"a cat", ""});
//
// Wan (umT5): clean, tokenize to text_len (512) with the mask, encode with the mask, keep each
// prompt's token rows ([n_i, 4096], what T5EncoderModel returns). CogVideoX (T5 v1.1): 226
// tokens, no mask, all rows ([226, 4096]). The mode follows the encoder (shared_pos) unless set.
//
// The cache: one safetensors file per (prompt, encoder) in cache_dir, named by the SHA-256 of
// the encoder files' content hash, text_len, mode, projection inputs and the text; the text and the
// encoder hash are stored in its metadata and checked on reading. The encoder files' SHA-256 is
// computed once per file version and remembered in cache_dir/encoder_hashes.json (keyed by path,
// size and modification time). The encoder itself is loaded only when a prompt is not cached.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/umt5/checkpoint.h"
#include "models/umt5/model.h"
#include "models/umt5/tokenizer.h"

namespace sdpo::umt5 {

// The umT5 file names of an official Wan2.1 checkpoint folder (the .pth as shipped; a
// safetensors conversion under the same stem).
inline constexpr char kWanT5Pth[] = "models_t5_umt5-xxl-enc-bf16.pth";
inline constexpr char kWanT5Safetensors[] = "models_t5_umt5-xxl-enc-bf16.safetensors";

enum class ContextMode {
  kTrimmed,  // Wan: masked keys, the token rows only
  kFull,     // CogVideoX: no mask, all text_len rows
};

struct PromptEncoderOptions {
  std::string weights;    // the encoder checkpoint (see LoadEncoder)
  std::string tokenizer;  // spiece.model; default: the config's `tokenizer` beside the weights
  std::optional<T5Config> config;   // default: as LoadEncoder resolves it
  int64_t text_len = 0;             // 0: the config's (512 umT5, 226 T5 v1.1)
  std::optional<ContextMode> mode;  // default: kFull for shared_pos (T5 v1.1), else kTrimmed
  // f32 compute; kBF16: the projections on bf16-rounded inputs (T5Encoder::SetProjectionInputs)
  ProjectionInputs projection_inputs = ProjectionInputs::kF32;
  std::string cache_dir;  // "" = no cache
};

class PromptEncoder {
 public:
  static std::unique_ptr<PromptEncoder> Open(const PromptEncoderOptions& options);

  // One f32 CPU tensor [n_i, dim] per text, in order. Cached prompts are read; the others are
  // encoded, each distinct text once and alone (batch 1: the GEMMs' summation order depends on
  // the batch, and a cached embedding must not depend on which prompts came with it), and
  // stored.
  std::vector<Tensor> EncodePrompts(const std::vector<std::string>& texts);

  const T5Config& config() const { return config_; }
  ContextMode mode() const { return mode_; }
  int64_t text_len() const { return text_len_; }
  // SHA-256 (hex) of the encoder's weight files.
  const std::string& encoder_hash() const { return encoder_hash_; }
  int64_t encoded() const { return encoded_; }  // prompts run through the encoder so far
  int64_t cache_hits() const { return cache_hits_; }

 private:
  PromptEncoder() = default;
  std::string CachePath(const std::string& text) const;
  T5Encoder& Encoder();  // loaded on first use

  PromptEncoderOptions options_;
  T5Config config_;
  ContextMode mode_ = ContextMode::kTrimmed;
  int64_t text_len_ = 0;
  std::string encoder_hash_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<T5Encoder> encoder_;
  int64_t encoded_ = 0, cache_hits_ = 0;
};

// SHA-256 (hex) of a file's bytes, streamed.
std::string Sha256File(const std::string& path);
// SHA-256 (hex) of bytes.
std::string Sha256(std::string_view bytes);
// The files a checkpoint path stands for: the file, or an index and its shards, or the
// directory's index and shards (or its one safetensors file), sorted.
std::vector<std::string> WeightFiles(const std::string& path);

}  // namespace sdpo::umt5
