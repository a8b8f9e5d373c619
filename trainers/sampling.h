// Sampling a Wan2.1 checkpoint folder to videos (//trainers:sample): the folder's files, the
// text-embedding file, the latent shape of a pixel size, and the sampler run with a progress bar.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/diffusion_model.h"
#include "models/samplers/ddpm_samplers.h"
#include "models/samplers/flow_samplers.h"
#include "models/umt5/prompt_encoder.h"
#include "tensor/tensor.h"

namespace sdpo::trainers {

// The files of an official Wan2.1 checkpoint folder (as released: Wan-AI/Wan2.1-T2V-1.3B).
struct WanCheckpointFolder {
  std::string dir;
  // diffusion_pytorch_model.safetensors.index.json (sharded, 14B) or
  // diffusion_pytorch_model.safetensors (1.3B).
  std::string dit;
  // Wan2.1_VAE.safetensors (the official names, e.g. the ComfyUI repackaging) or Wan2.1_VAE.pth;
  // empty when the folder has neither.
  std::string vae;
};

inline constexpr char kWanDitIndex[] = "diffusion_pytorch_model.safetensors.index.json";
inline constexpr char kWanDitFile[] = "diffusion_pytorch_model.safetensors";
inline constexpr char kWanVaeSafetensors[] = "Wan2.1_VAE.safetensors";
inline constexpr char kWanVaePth[] = "Wan2.1_VAE.pth";

// Finds the files in `dir`; a folder without DiT weights is an error listing the names looked
// for.
WanCheckpointFolder FindWanCheckpoint(const std::string& dir);

// The umT5 prompt encoder of a checkpoint folder `dir`: text_encoder, or else the folder's
// models_t5_umt5-xxl-enc-bf16.safetensors or .pth (an error naming `flag` and the names looked
// for when it has neither); tokenizer ("" = beside the weights) and the embedding cache as given.
umt5::PromptEncoderOptions FolderPromptEncoderOptions(const std::string& dir,
                                                      const std::string& text_encoder,
                                                      const std::string& tokenizer,
                                                      const std::string& cache_dir,
                                                      const std::string& flag);

// The Wan2.1 VAE's factors: 1 + 4 k frames -> 1 + k latent frames, 8 pixels -> 1 latent cell.
inline constexpr int64_t kWanVaeTimeFactor = 4;
inline constexpr int64_t kWanVaeSpaceFactor = 8;

// The latent [z_dim, 1 + (frames - 1) / 4, height / 8, width / 8] of a video size. frames must
// be 1 + 4k; height and width multiples of 8 * patch (16 for Wan2.1's 2 x 2 patches).
Shape WanLatentShape(int64_t z_dim, int64_t frames, int64_t height, int64_t width,
                     int64_t patch = 2);

// Text embeddings for sampling, from one safetensors file (what the text encoder writes):
//   context    [L, D]  the prompt (or context_0, context_1, ... for several prompts)
//   negative   [L, D]  the negative prompt (needed for guidance != 1)
struct SamplingContexts {
  std::vector<Tensor> prompts;  // f32, one per prompt, in key order
  Tensor negative;              // undefined when the file has none
};
SamplingContexts ReadSamplingContexts(const std::string& path);

struct VideoSampleRequest {
  Shape latent_shape;  // [C, F, H, W]
  int samples_per_prompt = 1;
  uint64_t seed = 0;
  samplers::FlowSampleOptions options;
  bool progress = true;  // a progress bar with ETA on stderr
};

// One latent per (prompt, sample), on the model's device, noise from Philox(seed) at offsets
// that do not depend on the device; latents come back on the CPU in f32. Sample i of prompt p
// uses noise offset (p * samples_per_prompt + i) * numel(latent).
std::vector<Tensor> SampleLatentVideos(models::DiffusionModel& model,
                                       const SamplingContexts& contexts,
                                       const VideoSampleRequest& request);

// The CogVideoX samplers (DDIM / DPM, models/samplers/ddpm_samplers.h) on a model of family
// "ddpm" that takes [C, F, H, W] latents (LoadTrainModel's), with SampleLatentVideos' noise
// convention; the DPM steps' noise comes from the same seed at counters after the initial noise.
struct DdpmVideoSampleRequest {
  Shape latent_shape;  // [C, F, H, W]
  int samples_per_prompt = 1;
  uint64_t seed = 0;
  samplers::DdpmSampleOptions options;
  bool progress = true;
};
std::vector<Tensor> SampleDdpmLatentVideos(models::DiffusionModel& model,
                                           const std::vector<double>& alphas_cumprod,
                                           const SamplingContexts& contexts,
                                           const DdpmVideoSampleRequest& request);

// The Wan2.1 VAE decoder of a checkpoint folder: latents [z_dim, F, h, w] -> videos
// [3, 1 + 4 (F - 1), 8 h, 8 w] in [-1, 1] on the CPU.
class WanVideoDecoder {
 public:
  // nullptr when the folder has no VAE weights (`why_not` says so); load errors throw.
  static std::unique_ptr<WanVideoDecoder> Open(const WanCheckpointFolder& folder, Device device,
                                               DType dtype, std::string* why_not);
  virtual ~WanVideoDecoder() = default;
  virtual Tensor Decode(const Tensor& latent) = 0;
};

}  // namespace sdpo::trainers
