#include "trainers/prepare_vae.h"

#include "absl/strings/str_cat.h"
#include "models/umt5/prompt_encoder.h"
#include "models/wan21/vae.h"
#include "tensor/ops.h"

namespace sdpo::trainers {
namespace {

// The normalised latent mean ((mu - mean) / std with the VAE's published
// statistics), what the official pipelines train on; one whole clip per call
// with the official chunked causal pass.
class WanVaeVideoEncoder : public VideoLatentEncoder {
 public:
  WanVaeVideoEncoder(std::unique_ptr<wan21::WanVae> vae, Device device)
      : vae_(std::move(vae)), device_(device) {}

  Tensor Encode(const Tensor& video) override {
    SDPO_CHECK(video.dim() == 4 && video.size(0) == 3, "the VAE encodes a video [3, T, H, W]");
    const Shape& s = video.shape();
    const Tensor x = ops::To(ops::Reshape(video, {1, s[0], s[1], s[2], s[3]}), device_);
    const Tensor mu = ops::Cast(ops::To(vae_->Encode(x).mu, Device::CPU()), kF32);
    const Shape& m = mu.shape();
    return ops::Contiguous(ops::Reshape(mu, {m[1], m[2], m[3], m[4]}));
  }

 private:
  std::unique_ptr<wan21::WanVae> vae_;
  Device device_;
};

class CogVideoXEncoder : public VideoLatentEncoder {
 public:
  explicit CogVideoXEncoder(std::unique_ptr<CogVideoXVaeRunner> vae) : vae_(std::move(vae)) {}
  Tensor Encode(const Tensor& video) override { return vae_->Encode(video); }

 private:
  std::unique_ptr<CogVideoXVaeRunner> vae_;
};

}  // namespace

std::unique_ptr<VideoLatentEncoder> CogVideoXVideoEncoder(std::unique_ptr<CogVideoXVaeRunner> vae) {
  return std::make_unique<CogVideoXEncoder>(std::move(vae));
}

std::unique_ptr<VideoLatentEncoder> OpenWanVideoEncoder(const WanCheckpointFolder& folder,
                                                        Device device, std::string* why_not) {
  if (folder.vae.empty()) {
    *why_not = folder.dir.empty()
                   ? "names a DiT file, not a checkpoint folder with the VAE"
                   : absl::StrCat(folder.dir, " has no ", kWanVaePth, " or ", kWanVaeSafetensors);
    return nullptr;
  }
  std::unique_ptr<wan21::WanVae> vae = wan21::LoadVae(folder.vae);
  vae->SetRequiresGrad(false);
  vae->ToDevice(device);
  return std::make_unique<WanVaeVideoEncoder>(std::move(vae), device);
}

std::string VideoEncoderHash(const WanCheckpointFolder& folder) {
  return umt5::Sha256File(folder.vae);
}

}  // namespace sdpo::trainers
