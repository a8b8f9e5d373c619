// A CogVideoX checkpoint in the diffusers layout (THUDM/CogVideoX-2b, -5b), for
// //trainers:prepare and //trainers:sample:
//
//   DIR/transformer/   config.json, diffusion_pytorch_model.safetensors (or shards + index)
//   DIR/vae/           config.json, diffusion_pytorch_model.safetensors
//   DIR/text_encoder/  config.json (transformers T5Config), model.safetensors (or shards + index)
//   DIR/tokenizer/     spiece.model (the T5 v1.1 SentencePiece model)
//   DIR/scheduler/     scheduler_config.json (optional; checked against --model's built-in
//   schedule)
//
// (model_index.json may be there; it is not read.)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "models/cogvideox/config.h"
#include "models/cogvideox/vae.h"
#include "models/schedules.h"
#include "models/umt5/prompt_encoder.h"
#include "tensor/device.h"
#include "tensor/tensor.h"

namespace sdpo::trainers {

struct CogVideoXFolder {
  std::string dir;
  std::string transformer;   // DIR/transformer (always present)
  std::string vae;           // DIR/vae, empty when absent
  std::string text_encoder;  // DIR/text_encoder, empty when absent
  std::string tokenizer;     // DIR/tokenizer/spiece.model, empty when absent
  std::string scheduler;     // DIR/scheduler/scheduler_config.json, empty when absent
};

inline constexpr char kCogVideoXTokenizer[] = "tokenizer/spiece.model";
inline constexpr char kCogVideoXScheduler[] = "scheduler/scheduler_config.json";

// Finds the parts of a diffusers CogVideoX folder; a path that is not a directory or has no
// transformer/ is an error naming what was looked for.
CogVideoXFolder FindCogVideoXCheckpoint(const std::string& dir);

// The transformer's config (transformer/config.json, or the weights' metadata), read without
// loading the weights: the text length and width the prompts are encoded to.
cogvideox::CogVideoXConfig ReadTransformerConfig(const CogVideoXFolder& folder);

// A diffusers CogVideoX scheduler config (scheduler_config.json of CogVideoXDDIMScheduler or
// CogVideoXDPMScheduler) as the training schedule it describes. The samplers always step on the
// "trailing" grid (as the official demo does), so timestep_spacing is not read; keys that do not
// shape the schedule are ignored. What this implementation does not follow (another class or
// beta schedule, a prediction other than v_prediction, trained_betas, clip_sample,
// steps_offset != 0) is an error naming the file and the key.
DdpmScheduleConfig ReadCogVideoXScheduler(const std::string& path);

// Throws, naming the file and the differing value, unless the folder's scheduler config (when it
// has one) describes `expected` (the schedule of --model): a 5B folder trained as --model=
// cogvideox-2b would train on the wrong SNR shift.
void CheckCogVideoXScheduler(const CogVideoXFolder& folder, const DdpmScheduleConfig& expected,
                             const std::string& model_name);

struct CogVideoXTextOptions {
  std::string weights;    // default: the folder's text_encoder/
  std::string tokenizer;  // default: the folder's tokenizer/spiece.model
  std::string cache_dir;  // the prompt-embedding cache ("" = none)
  // The DiT's text width (text_embed_dim) and its text length (max_text_seq_length, 226 for the
  // released models): the encoder must give embeddings of that width; prompts are tokenized to
  // that length.
  int64_t text_dim = 0;
  int64_t text_len = 226;
  umt5::ProjectionInputs projection_inputs = umt5::ProjectionInputs::kF32;  // --text_compute
};

// T5 v1.1 as the CogVideoX pipeline runs it: text_len tokens (pads included), no mask, all rows
// ([text_len, dim] per prompt), through the prompt cache. Errors name the missing part
// (text_encoder/, tokenizer/spiece.model) or an encoder whose width differs from the DiT's.
// The encoder weights load only when a prompt misses the cache.
std::unique_ptr<umt5::PromptEncoder> OpenCogVideoXTextEncoder(const CogVideoXFolder& folder,
                                                              const CogVideoXTextOptions& options);

// The folder's VAE as the pipelines use it (f32 on `device`):
//   Encode: pixels [3, T, H, W] in [-1, 1] (T = 1 + 4k) -> the latent the DiT trains on,
//           [C, 1 + (T - 1) / 4, H / 8, W / 8] = the posterior mean x scaling_factor (the
//           diffusers fine-tuning scripts scale a posterior draw; the mean is its deterministic
//           centre), f32 on the CPU;
//   Decode: a sampled latent [C, F, h, w] -> pixels [3, T, 8 h, 8 w] in [-1, 1] (unclamped),
//           latent / scaling_factor through the decoder, as the pipeline's decode_latents.
// The value of a VAE tiling flag (prepare's and sample's --vae_tiling, the trainer's
// --validation_vae_tiling): the tiles, none for "off". Throws naming `flag` when the spec cannot
// tile (cogvideox::ParseVaeTiling) or when tiles are asked of a model that is not CogVideoX (the
// Wan2.1 VAE runs untiled).
std::optional<cogvideox::VaeTiling> VaeTilingFlag(const std::string& value, const std::string& flag,
                                                  bool cogvideox);

class CogVideoXVaeRunner {
 public:
  // nullptr when the folder has no vae/ (`why_not` says so); load errors throw. `tiling`:
  // diffusers' enable_tiling() for both directions (cogvideox::VaeTiling; none by default).
  static std::unique_ptr<CogVideoXVaeRunner> Open(
      const CogVideoXFolder& folder, Device device, std::string* why_not,
      const std::optional<cogvideox::VaeTiling>& tiling = std::nullopt);
  virtual ~CogVideoXVaeRunner() = default;
  virtual Tensor Encode(const Tensor& video) = 0;
  virtual Tensor Decode(const Tensor& latent) = 0;
  // SHA-256 of the VAE's weight files (what a resumed prepare must share with the first run).
  virtual std::string WeightsHash() const = 0;
};

}  // namespace sdpo::trainers
