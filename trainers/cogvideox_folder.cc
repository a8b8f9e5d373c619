#include "trainers/cogvideox_folder.h"

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "autograd/grad_mode.h"
#include "models/cogvideox/vae.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace sdpo::trainers {

namespace fs = std::filesystem;

CogVideoXFolder FindCogVideoXCheckpoint(const std::string& dir) {
  std::error_code ec;
  SDPO_CHECK(fs::is_directory(dir, ec), "--checkpoint=", dir,
             ": not a directory (expected a diffusers CogVideoX folder with transformer/, vae/, "
             "text_encoder/ and tokenizer/)");
  const fs::path d(dir);
  SDPO_CHECK(fs::is_directory(d / "transformer", ec), "--checkpoint=", dir,
             ": no transformer/ folder (expected the diffusers CogVideoX layout: transformer/, "
             "vae/, text_encoder/, tokenizer/)");
  CogVideoXFolder folder;
  folder.dir = dir;
  folder.transformer = (d / "transformer").string();
  if (fs::is_directory(d / "vae", ec)) folder.vae = (d / "vae").string();
  if (fs::is_directory(d / "text_encoder", ec)) {
    folder.text_encoder = (d / "text_encoder").string();
  }
  if (fs::is_regular_file(d / kCogVideoXTokenizer, ec)) {
    folder.tokenizer = (d / kCogVideoXTokenizer).string();
  }
  return folder;
}

std::unique_ptr<umt5::PromptEncoder> OpenCogVideoXTextEncoder(const CogVideoXFolder& folder,
                                                              const CogVideoXTextOptions& options) {
  umt5::PromptEncoderOptions o;
  o.weights = options.weights.empty() ? folder.text_encoder : options.weights;
  SDPO_CHECK(!o.weights.empty(), folder.dir,
             ": no text_encoder/ folder (the T5 v1.1 encoder: config.json and model*.safetensors; "
             "or give --text_encoder)");
  o.tokenizer = options.tokenizer.empty() ? folder.tokenizer : options.tokenizer;
  SDPO_CHECK(!o.tokenizer.empty(), folder.dir, ": no ", kCogVideoXTokenizer,
             " (the T5 tokenizer's SentencePiece model; a tokenizer.json alone is not read; or "
             "give --tokenizer)");
  SDPO_CHECK(options.text_len > 0, "CogVideoX text length must be > 0, got ", options.text_len);
  o.text_len = options.text_len;
  o.mode = umt5::ContextMode::kFull;
  o.cache_dir = options.cache_dir;
  std::unique_ptr<umt5::PromptEncoder> encoder = umt5::PromptEncoder::Open(o);
  const umt5::T5Config& c = encoder->config();
  SDPO_CHECK(options.text_dim <= 0 || c.dim == options.text_dim, o.weights,
             ": the text encoder gives ", c.dim, "-wide embeddings but the transformer takes ",
             options.text_dim,
             " (text_embed_dim in transformer/config.json): the text encoder "
             "and the transformer do not belong to the same model");
  return encoder;
}

namespace {

// The VAE in f32 on the CPU (its GroupNorm has no CUDA kernel yet), one clip per call.
class FolderVae final : public CogVideoXVaeRunner {
 public:
  FolderVae(std::unique_ptr<cogvideox::CogVideoXVae> vae, std::string hash)
      : vae_(std::move(vae)), hash_(std::move(hash)) {}

  Tensor Encode(const Tensor& video) override {
    SDPO_CHECK(video.dim() == 4 && video.size(0) == 3,
               "the CogVideoX VAE encodes a video [3, T, H, W], got ", ShapeStr(video.shape()));
    NoGradGuard no_grad;
    return Unbatched(vae_->Encode(Batched(video)).latents);
  }
  Tensor Decode(const Tensor& latent) override {
    SDPO_CHECK(latent.dim() == 4, "the CogVideoX VAE decodes a latent [C, F, H, W], got ",
               ShapeStr(latent.shape()));
    NoGradGuard no_grad;
    return Unbatched(vae_->Decode(Batched(latent)));
  }
  std::string WeightsHash() const override { return hash_; }

 private:
  static Tensor Batched(const Tensor& x) {
    return ops::Unsqueeze(ops::Contiguous(ops::Cast(ops::To(x, Device::CPU()), kF32)), 0);
  }
  static Tensor Unbatched(const Tensor& x) {
    return ops::Contiguous(ops::Cast(ops::Select(x, 0, 0), kF32));
  }
  std::unique_ptr<cogvideox::CogVideoXVae> vae_;
  std::string hash_;
};

// SHA-256 over the VAE's weight files and its config.json (scaling_factor decides the latents).
std::string VaeHash(const std::string& dir) {
  std::string summary;
  std::vector<std::string> files = umt5::WeightFiles(dir);
  const std::string config = (fs::path(dir) / "config.json").string();
  if (fs::exists(config)) files.push_back(config);
  for (const std::string& f : files) {
    absl::StrAppend(&summary, fs::path(f).filename().string(), " ", umt5::Sha256File(f), "\n");
  }
  return umt5::Sha256(summary);
}

}  // namespace

std::unique_ptr<CogVideoXVaeRunner> CogVideoXVaeRunner::Open(const CogVideoXFolder& folder,
                                                             Device device, std::string* why_not) {
  if (folder.vae.empty()) {
    *why_not = absl::StrCat(folder.dir, " has no vae/ folder");
    return nullptr;
  }
  if (!device.is_cpu()) {
    std::printf("the CogVideoX VAE runs on the CPU (its GroupNorm has no CUDA kernel yet)\n");
  }
  std::unique_ptr<cogvideox::CogVideoXVae> vae = cogvideox::LoadVae(folder.vae);
  vae->SetRequiresGrad(false);
  return std::make_unique<FolderVae>(std::move(vae), VaeHash(folder.vae));
}

}  // namespace sdpo::trainers
