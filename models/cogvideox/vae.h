// The CogVideoX 3-D causal VAE (diffusers `AutoencoderKLCogVideoX`, the `vae/` folder of
// CogVideoX-2B/5B), with parameter names equal to the diffusers state_dict names, so
// `vae/diffusion_pytorch_model.safetensors` (single or sharded, bf16 or f32) loads by lookup.
// Semantics: shared/fixtures/cogvideox_vae/README.md.
//
// Encode and Decode cut the clip along time exactly as the official `_encode` / `_decode` do
// (encode 8 frames, decode 2 latent frames at a time, the first piece taking the remainder) and
// carry every causal conv's 2-frame cache from piece to piece. The pieces are part of the
// arithmetic, not only of the memory plan: GroupNorm statistics, the spatial norm's latent and
// the odd/even temporal resampling rules are per piece. Activation memory is bounded by one piece.
//
// Precision and device follow the parameters (CastParameters(kBF16 / kF64), ToDevice()); norms
// accumulate in f64; outputs are f32 (f64 for f64). Runs on the CPU and on CUDA.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "models/cogvideox/vae_config.h"
#include "nn/module.h"

namespace sdpo::cogvideox {

class VaeEncoder;
class VaeDecoder;

// diffusers' `enable_tiling()`: the frame is cut into overlapping tiles of min_height x min_width
// video pixels starting every stride_height / stride_width pixels (the last tile of a row or
// column is cut at the edge); each tile goes through the VAE alone (its own frame pieces, conv
// caches and GroupNorm statistics) and is blended linearly into the tile above it and the tile to
// its left over their overlap (min - stride pixels of video, (min - stride) / 8 of latent), in
// diffusers' order; each tile keeps its first `stride` pixels. Tiles bound activation memory by
// one tile instead of one frame, and change the numbers (a tile sees only its part of the frame).
// Encode tiles a video wider than min_width or taller than min_height, decode a latent wider
// than min_width / 8 or taller than min_height / 8. All four values are multiples of 8 (the
// spatial factor) with 0 < stride <= min.
struct VaeTiling {
  // The CogVideoX pipelines' tiles for 480x720: half the sample size, overlap factors 1/6 and
  // 1/5 (diffusers 0.30-0.31's `enable_tiling()` defaults). Newer diffusers default to
  // 256x256 tiles every 192 pixels: ParseVaeTiling("256x256:192x192").
  int64_t min_height = 240, min_width = 360;
  int64_t stride_height = 200, stride_width = 288;
  std::string str() const;  // "240x360:200x288"
};

// "off" -> none; "on" -> the defaults; "HxW:SHxSW" (e.g. "256x256:192x192") -> tiles of HxW
// video pixels every SH, SW pixels. Throws naming `name` (the flag), `spec` and the rule it breaks.
std::optional<VaeTiling> ParseVaeTiling(const std::string& spec,
                                        const std::string& name = "VAE tiling",
                                        int64_t spatial_factor = 8);

struct VaeRunOptions {
  // The official frame batching (bounded memory; the reference numbers). false: the whole clip
  // as one piece (different numbers, see the fixture README; for experiments only).
  bool batched = true;
  // Spatial tiles (VaeTiling); none by default, as in diffusers. Not with `capture`.
  std::optional<VaeTiling> tiling;
  // Receives every stage output under the fixtures' names ("act.encoder.conv_in",
  // "act.encoder.down_blocks.N", "act.decoder.up_blocks.N", "moments", ...), the pieces joined in
  // time. Costs the memory of every stage.
  std::map<std::string, Tensor>* capture = nullptr;
};

struct VaeEncoding {
  Tensor mean;     // [B, latent_channels, T', H/8, W/8]
  Tensor logvar;   // clamped to [-30, 20] as DiagonalGaussianDistribution does
  Tensor latents;  // mean * scaling_factor: what the DiT is trained on (the posterior mode)
};

class CogVideoXVae : public nn::Module {
 public:
  explicit CogVideoXVae(const CogVideoXVaeConfig& config);
  ~CogVideoXVae() override;
  std::string TypeName() const override { return "AutoencoderKLCogVideoX"; }
  const CogVideoXVaeConfig& config() const { return config_; }

  // video [B, in_channels, T, H, W] in [-1, 1] -> the posterior (1 + (T - 1) / 4 latent frames
  // for T = 1 + 4k, H/8 x W/8 for the released config).
  VaeEncoding Encode(const Tensor& video, const VaeRunOptions& options = {}) const;
  // latents [B, latent_channels, Tl, h, w] as Encode returns them (scaled) -> the video
  // [B, out_channels, T, 8h, 8w], not clamped: DecodeUnscaled(latents * (1 / scaling_factor)), as
  // the pipelines' decode_latents.
  Tensor Decode(const Tensor& latents, const VaeRunOptions& options = {}) const;
  // z = latents / scaling_factor -> `AutoencoderKLCogVideoX.decode(z).sample`. T = 1 + 4 (Tl - 1)
  // for odd Tl but 4 Tl for even Tl (VideoFrames).
  Tensor DecodeUnscaled(const Tensor& z, const VaeRunOptions& options = {}) const;

  // Frame counts through the official batching.
  int64_t LatentFrames(int64_t video_frames) const;
  int64_t VideoFrames(int64_t latent_frames) const;

 private:
  CogVideoXVaeConfig config_;
  VaeEncoder* encoder_;
  VaeDecoder* decoder_;
};

// --- loading ------------------------------------------------------------------------------------

struct VaeLoadReport {
  std::string path;           // the weights as opened
  std::string config_source;  // "--config", a config.json path, or the 2B defaults
  int64_t tensors = 0;
  int64_t values = 0;
};

// The config for a weights path: a `config.json` in the folder (the diffusers `vae/` layout) or
// next to the file, else the CogVideoX-2B values. `source` receives where it came from.
CogVideoXVaeConfig ResolveVaeConfig(const std::string& weights_path, std::string* source = nullptr);

// Copies the tensors of `source` (diffusers names) into the model, converted to the parameters'
// dtype and device. A missing or unexpected key or a shape mismatch is an error naming it and
// the source; nothing is written unless every check passes.
void LoadVaeWeights(CogVideoXVae& vae, const nn::TensorSource& source);

// Builds the VAE for a diffusers `vae/` folder, a .safetensors file or a shard index (what
// nn::OpenTensorSource opens; bf16/f16/f32 on disk) and loads it; then the parameters take
// `dtype` and move to `device`. The config: `config` when given, else ResolveVaeConfig.
std::unique_ptr<CogVideoXVae> LoadVae(
    const std::string& path, Device device = Device::CPU(), DType dtype = kF32,
    const std::optional<CogVideoXVaeConfig>& config = std::nullopt,
    VaeLoadReport* report = nullptr);

}  // namespace sdpo::cogvideox
