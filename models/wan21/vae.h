// The Wan2.1 video VAE (official `WanVAE_` in wan/modules/vae.py), with parameter names equal
// to the official state_dict names, so `Wan2.1_VAE.pth` and its safetensors repackagings load by
// lookup. Semantics: shared/fixtures/wan_vae/README.md.
//
// Every causal part is a stream: each causal conv keeps the last 2 input frames it saw, the
// encoder's temporal downsamples keep the frames of their next stride-2 window, the decoder's
// temporal upsamples pass their stream's first frame through without the temporal conv. So a
// clip can be cut into chunks of any length with the same result as one pass: Encode and Decode
// use the official chunking (encode: the first frame, then 4 frames at a time; decode: one latent
// frame at a time), or one whole-clip pass. Inside a chunk the encoder's high-resolution layers
// (before its first temporal downsample, and that downsample's spatial half) run one frame at a
// time; in the decoder the frames each temporal upsample makes go through the rest one at a time
// (depth first). The caches are shifted in place, the 3-channel head caches partial sums instead
// of input frames, and the forward-only blocks normalise and add in place, so that the peak
// memory is the streams' state plus about three full-resolution frames (docs/wan21.md, "Memory
// bound"; tests/models/wan21/vae_memory_test.cc).
//
// Precision and device follow the parameters: CastParameters(kBF16 / kF64) and ToDevice() switch
// the arithmetic; norms accumulate in f32 (f64 for f64), the latent (de)normalisation runs in f32
// (f64 for f64) and the outputs are f32 (f64 for f64).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/wan21/vae_config.h"
#include "nn/module.h"

namespace sdpo::wan21 {

class VaeEncoder;
class VaeDecoder;
class VaeCausalConv3d;

// The latent normalisation: encode returns (mu - mean) * inv_std, decode starts from
// z / inv_std + mean. Undefined tensors mean the official constants, with inv_std = 1 / std
// computed in f32 as the official wrapper does.
struct VaeScale {
  Tensor mean;     // [z_dim]
  Tensor inv_std;  // [z_dim]
};

struct VaeRunOptions {
  // The official chunking with the causal cache (bounded memory); false: one pass over the whole
  // clip (the same values up to rounding; memory grows with the clip).
  bool chunked = true;
  // Receives every stage output under the fixtures' names ("act.encoder.conv1",
  // "act.encoder.downsamples.N", "act.decoder.upsamples.N", "act.conv2", ..., "z_unscaled"), the
  // chunks joined in time. Costs the memory of every stage.
  std::map<std::string, Tensor>* capture = nullptr;
};

struct VaeEncoding {
  Tensor mu_raw;   // [B, z_dim, T', h, w] before normalisation
  Tensor log_var;  // [B, z_dim, T', h, w]
  Tensor mu;       // [B, z_dim, T', h, w]: (mu_raw - mean) * inv_std (the official return value)
};

class WanVae : public nn::Module {
 public:
  explicit WanVae(const WanVaeConfig& config);
  ~WanVae() override;
  std::string TypeName() const override { return "WanVAE_"; }
  const WanVaeConfig& config() const { return config_; }

  // x [B, 3, T, H, W] in [-1, 1] -> latents of 1 + (T - 1) / 4 frames and H/8 x W/8 (for the
  // released config); frames beyond 1 + 4k are dropped, as the official encode does.
  VaeEncoding Encode(const Tensor& x, const VaeScale& scale = {},
                     const VaeRunOptions& options = {}) const;
  // z [B, z_dim, T, h, w] (normalised) -> the decoder output [B, 3, 1 + 4 (T - 1), 8h, 8w]
  // (the official `WanVAE_.decode`, not clamped).
  Tensor DecodeRaw(const Tensor& z, const VaeScale& scale = {},
                   const VaeRunOptions& options = {}) const;
  // DecodeRaw clamped to [-1, 1] (the official `WanVAE.decode` before its squeeze).
  Tensor Decode(const Tensor& z, const VaeScale& scale = {},
                const VaeRunOptions& options = {}) const;

  // Frames and sizes of the two sides: video frames T -> latent frames, and back.
  int64_t LatentFrames(int64_t video_frames) const;
  int64_t VideoFrames(int64_t latent_frames) const;

 private:
  VaeScale ResolveScale(const VaeScale& scale, DType dtype, Device device) const;

  WanVaeConfig config_;
  VaeEncoder* encoder_;
  VaeCausalConv3d* conv1_;
  VaeCausalConv3d* conv2_;
  VaeDecoder* decoder_;
};

// --- loading ------------------------------------------------------------------------------------

struct VaeLoadReport {
  std::string path;
  std::string config_source;  // "vae_config.json next to the weights", "--config", "official"
  int64_t tensors = 0;
  int64_t values = 0;
};

// The config for a weights file: a `vae_config.json` next to it (the fixtures' format), else the
// released model's. `source` receives where it came from.
WanVaeConfig ResolveVaeConfig(const std::string& weights_path, std::string* source = nullptr);

// Copies the tensors of `source` into the model (converted to the parameters' dtype and device):
// official `WanVAE_` names, or the diffusers `AutoencoderKLWan` names (detected, renamed through
// vae_names.h). A missing or unexpected key or a shape mismatch is an error naming it and the
// source, and nothing is written unless every check passes.
void LoadVaeWeights(WanVae& vae, const nn::TensorSource& source);

// Builds the model for a weights file (config: `config` when given, else ResolveVaeConfig) and
// loads it. Reads what nn::OpenTensorSource opens: safetensors (the ComfyUI single file with
// official names, the diffusers `vae/diffusion_pytorch_model.safetensors`) and the official
// Wan2.1_VAE.pth (torch zip, read without executing anything).
std::unique_ptr<WanVae> LoadVae(const std::string& weights_path,
                                const std::optional<WanVaeConfig>& config = std::nullopt,
                                VaeLoadReport* report = nullptr);

}  // namespace sdpo::wan21
