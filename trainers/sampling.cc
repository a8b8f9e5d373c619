#include "trainers/sampling.h"

#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "models/wan21/vae.h"
#include "nn/checkpoint_io.h"
#include "tensor/error.h"
#include "tensor/ops.h"
#include "trainers/progress.h"
#include "trainers/trainer.h"

namespace sdpo::trainers {

namespace fs = std::filesystem;

WanCheckpointFolder FindWanCheckpoint(const std::string& dir) {
  std::error_code ec;
  SDPO_CHECK(fs::is_directory(dir, ec), "--checkpoint=", dir,
             ": not a directory (expected a Wan2.1 checkpoint folder holding ", kWanDitFile, " or ",
             kWanDitIndex, ", and ", kWanVaePth, " or ", kWanVaeSafetensors, ")");
  WanCheckpointFolder folder;
  folder.dir = dir;
  const fs::path d(dir);
  if (fs::exists(d / kWanDitIndex, ec)) {
    folder.dit = (d / kWanDitIndex).string();
  } else if (fs::exists(d / kWanDitFile, ec)) {
    folder.dit = (d / kWanDitFile).string();
  } else {
    SDPO_FAIL("--checkpoint=", dir, ": no DiT weights (expected ", kWanDitIndex, " or ",
              kWanDitFile, ")");
  }
  for (const char* name : {kWanVaeSafetensors, kWanVaePth}) {
    if (fs::exists(d / name, ec)) {
      folder.vae = (d / name).string();
      break;
    }
  }
  return folder;
}

umt5::PromptEncoderOptions FolderPromptEncoderOptions(const std::string& dir,
                                                      const std::string& text_encoder,
                                                      const std::string& tokenizer,
                                                      const std::string& cache_dir,
                                                      const std::string& flag) {
  umt5::PromptEncoderOptions o;
  o.weights = text_encoder;
  for (const char* name : {umt5::kWanT5Safetensors, umt5::kWanT5Pth}) {
    if (o.weights.empty() && fs::exists(fs::path(dir) / name)) {
      o.weights = (fs::path(dir) / name).string();
    }
  }
  SDPO_CHECK(!o.weights.empty(), flag, ": no text encoder in ", dir, " (expected ",
             umt5::kWanT5Safetensors, " or ", umt5::kWanT5Pth, "; or give --text_encoder)");
  o.tokenizer = tokenizer;
  o.cache_dir = cache_dir;
  return o;
}

Shape WanLatentShape(int64_t z_dim, int64_t frames, int64_t height, int64_t width, int64_t patch) {
  SDPO_CHECK(frames >= 1 && (frames - 1) % kWanVaeTimeFactor == 0, "--frames=", frames,
             ": the VAE (Wan2.1, CogVideoX) needs 1 + 4k frames (e.g. 81, 49, 17, 1)");
  const int64_t cell = kWanVaeSpaceFactor * patch;
  SDPO_CHECK(height >= cell && width >= cell && height % cell == 0 && width % cell == 0,
             "--height=", height, " --width=", width, ": both must be positive multiples of ", cell,
             " (VAE factor ", kWanVaeSpaceFactor, " x patch ", patch, ")");
  return {z_dim, 1 + (frames - 1) / kWanVaeTimeFactor, height / kWanVaeSpaceFactor,
          width / kWanVaeSpaceFactor};
}

SamplingContexts ReadSamplingContexts(const std::string& path) {
  SDPO_CHECK(!path.empty(),
             "--context is required with --checkpoint (a safetensors file with "
             "'context' [L, D] and, for guidance, 'negative' [L, D])");
  std::map<std::string, std::string> meta;
  nn::TensorMap tensors = nn::ReadSafetensors(path, &meta);
  auto checked = [&](const std::string& key, const Tensor& t) {
    SDPO_CHECK(t.dim() == 2 && t.size(0) >= 1 && t.size(1) >= 1, path, ": '", key,
               "' must be a text embedding [L, D], found ", ShapeStr(t.shape()));
    return ops::Contiguous(ops::Cast(t, kF32));
  };
  SamplingContexts out;
  if (auto it = tensors.find("context"); it != tensors.end()) {
    out.prompts.push_back(checked("context", it->second));
  } else {
    for (int i = 0;; ++i) {
      const std::string key = absl::StrCat("context_", i);
      auto ci = tensors.find(key);
      if (ci == tensors.end()) break;
      out.prompts.push_back(checked(key, ci->second));
    }
  }
  SDPO_CHECK(!out.prompts.empty(), path, ": no 'context' (or 'context_0', 'context_1', ...) ",
             "among its ", tensors.size(), " tensors");
  if (auto it = tensors.find("negative"); it != tensors.end()) {
    out.negative = checked("negative", it->second);
  }
  for (const Tensor& t : out.prompts) {
    SDPO_CHECK(t.size(1) == out.prompts[0].size(1) &&
                   (!out.negative.defined() || out.negative.size(1) == t.size(1)),
               path, ": the embeddings differ in width D");
  }
  return out;
}

namespace {

// The sampler inputs of every (prompt, sample) on the model's device: sample i of prompt p has
// the noise at counters (p * samples_per_prompt + i) * numel(latent) of Philox(seed).
struct SampleInputs {
  std::vector<Tensor> noise, prompts, negatives;
};
SampleInputs MakeSampleInputs(const models::DiffusionModel& model, const SamplingContexts& contexts,
                              const Shape& latent_shape, int samples_per_prompt, uint64_t seed,
                              double guidance) {
  SDPO_CHECK(latent_shape.size() == 4, "sampling: latent shape ", ShapeStr(latent_shape),
             " is not [C, F, H, W]");
  SDPO_CHECK(samples_per_prompt >= 1, "--samples must be >= 1");
  const bool guided = guidance != 1.0;
  SDPO_CHECK(!guided || contexts.negative.defined(), "--guidance=", guidance,
             " needs the negative prompt's embedding ('negative' in the --context file); "
             "use --guidance=1 for the conditional pass only");
  const Device device = ModelDevice(model);
  const int64_t numel = NumElements(latent_shape);
  SampleInputs in;
  for (const Tensor& c : contexts.prompts) {
    for (int k = 0; k < samples_per_prompt; ++k) {
      in.noise.push_back(ops::RandomNormal(
          latent_shape, seed, static_cast<uint64_t>(in.noise.size() * numel), kF32, device));
      in.prompts.push_back(ops::To(c, device));
      if (guided) in.negatives.push_back(ops::To(contexts.negative, device));
    }
  }
  return in;
}

}  // namespace

std::vector<Tensor> SampleLatentVideos(models::DiffusionModel& model,
                                       const SamplingContexts& contexts,
                                       const VideoSampleRequest& request) {
  const SampleInputs in =
      MakeSampleInputs(model, contexts, request.latent_shape, request.samples_per_prompt,
                       request.seed, request.options.guide_scale);
  samplers::FlowSampleOptions options = request.options;
  ProgressBar bar("sample", options.steps, request.progress);
  options.on_step = [&](int step, int steps) {
    bar.Update(step + 1,
               absl::StrFormat("%zu video(s) %s", in.noise.size(), ShapeStr(request.latent_shape)));
  };
  std::vector<Tensor> latents =
      samplers::SampleFlow(model, in.noise, in.prompts, in.negatives, options);
  bar.Finish();
  for (Tensor& l : latents) l = ops::Cast(ops::To(l, Device::CPU()), kF32);
  return latents;
}

std::vector<Tensor> SampleDdpmLatentVideos(models::DiffusionModel& model,
                                           const std::vector<double>& alphas_cumprod,
                                           const SamplingContexts& contexts,
                                           const DdpmVideoSampleRequest& request) {
  const SampleInputs in =
      MakeSampleInputs(model, contexts, request.latent_shape, request.samples_per_prompt,
                       request.seed, request.options.guidance_scale);
  samplers::DdpmSampleOptions options = request.options;
  options.noise_seed = request.seed;
  ProgressBar bar("sample", options.steps, request.progress);
  options.on_step = [&](int step, int steps) {
    bar.Update(step + 1,
               absl::StrFormat("%zu video(s) %s", in.noise.size(), ShapeStr(request.latent_shape)));
  };
  const Tensor batch =
      samplers::SampleDdpm(model, alphas_cumprod, in.noise, in.prompts, in.negatives, options);
  bar.Finish();
  std::vector<Tensor> latents;
  for (int64_t i = 0; i < batch.size(0); ++i) {
    latents.push_back(
        ops::Contiguous(ops::Cast(ops::To(ops::Select(batch, 0, i), Device::CPU()), kF32)));
  }
  return latents;
}

namespace {

// Latents [z_dim, F, h, w] (normalised, as sampled) -> [3, 1 + 4 (F - 1), 8 h, 8 w] in [-1, 1].
class WanVaeDecoder : public WanVideoDecoder {
 public:
  WanVaeDecoder(std::unique_ptr<wan21::WanVae> vae, Device device)
      : vae_(std::move(vae)), device_(device) {}
  Tensor Decode(const Tensor& latent) override {
    const Shape& s = latent.shape();
    SDPO_CHECK(s.size() == 4, "the VAE decodes a latent [C, F, H, W]");
    const Tensor z =
        ops::To(ops::Cast(ops::Reshape(latent, {1, s[0], s[1], s[2], s[3]}), kF32), device_);
    const Tensor video = ops::Cast(ops::To(vae_->Decode(z), Device::CPU()), kF32);
    const Shape& v = video.shape();
    return ops::Contiguous(ops::Reshape(video, {v[1], v[2], v[3], v[4]}));
  }

 private:
  std::unique_ptr<wan21::WanVae> vae_;
  Device device_;
};

}  // namespace

std::unique_ptr<WanVideoDecoder> WanVideoDecoder::Open(const WanCheckpointFolder& folder,
                                                       Device device, DType dtype,
                                                       std::string* why_not) {
  if (folder.vae.empty()) {
    *why_not = folder.dir.empty()
                   ? "--checkpoint names a DiT file, not a checkpoint folder with the VAE"
                   : absl::StrCat(folder.dir, " has no ", kWanVaePth, " or ", kWanVaeSafetensors);
    return nullptr;
  }
  // The VAE computes in f32 whatever the DiT's dtype: decoding is a small part of sampling.
  (void)dtype;
  std::unique_ptr<wan21::WanVae> vae = wan21::LoadVae(folder.vae);
  vae->SetRequiresGrad(false);
  vae->ToDevice(device);
  return std::make_unique<WanVaeDecoder>(std::move(vae), device);
}

}  // namespace sdpo::trainers
