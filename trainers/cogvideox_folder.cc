#include "trainers/cogvideox_folder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autograd/grad_mode.h"
#include "io/checkpoint.h"
#include "io/json.h"
#include "models/cogvideox/checkpoint.h"
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
  if (fs::is_regular_file(d / kCogVideoXScheduler, ec)) {
    folder.scheduler = (d / kCogVideoXScheduler).string();
  }
  return folder;
}

cogvideox::CogVideoXConfig ReadTransformerConfig(const CogVideoXFolder& folder) {
  return cogvideox::ResolveConfig(*OpenCheckpoint(folder.transformer));
}

DdpmScheduleConfig ReadCogVideoXScheduler(const std::string& path) {
  const json::Value v = json::ParseFile(path);
  SDPO_CHECK(v.is_object(), path, ": expected a JSON object (a diffusers scheduler config)");
  // The value of `key` when present (of the right kind), else `fallback`.
  auto number = [&](const char* key, double fallback) {
    const json::Value* x = v.find(key);
    if (x == nullptr) return fallback;
    SDPO_CHECK(x->is_number(), path, ": \"", key, "\" must be a number");
    return x->as_double();
  };
  auto boolean = [&](const char* key, bool fallback) {
    const json::Value* x = v.find(key);
    if (x == nullptr) return fallback;
    SDPO_CHECK(x->is_bool(), path, ": \"", key, "\" must be true or false");
    return x->as_bool();
  };
  auto string = [&](const char* key, const std::string& fallback) {
    const json::Value* x = v.find(key);
    if (x == nullptr) return fallback;
    SDPO_CHECK(x->is_string(), path, ": \"", key, "\" must be a string");
    return x->as_string();
  };
  const std::string cls = string("_class_name", "CogVideoXDDIMScheduler");
  SDPO_CHECK(cls == "CogVideoXDDIMScheduler" || cls == "CogVideoXDPMScheduler", path,
             ": \"_class_name\" is \"", cls,
             "\"; expected CogVideoXDDIMScheduler or CogVideoXDPMScheduler");
  const std::string prediction = string("prediction_type", "epsilon");
  SDPO_CHECK(prediction == "v_prediction", path, ": \"prediction_type\" is \"", prediction,
             "\"; CogVideoX predicts v (v_prediction)");
  const std::string betas = string("beta_schedule", "scaled_linear");
  SDPO_CHECK(betas == "scaled_linear" || betas == "linear", path, ": \"beta_schedule\" is \"",
             betas, "\"; expected scaled_linear or linear");
  const json::Value* trained = v.find("trained_betas");
  SDPO_CHECK(trained == nullptr || trained->is_null(), path,
             ": \"trained_betas\" is not supported (expected null)");
  // Defaults of a key left out: the diffusers constructor's.
  SDPO_CHECK(!boolean("clip_sample", true), path,
             ": \"clip_sample\": true is not supported (the samplers do not clip x0)");
  SDPO_CHECK(number("steps_offset", 0) == 0, path, ": \"steps_offset\" must be 0");
  DdpmScheduleConfig c;
  const double steps = number("num_train_timesteps", 1000);
  SDPO_CHECK(steps >= 2 && steps <= 100000 && steps == std::floor(steps), path,
             ": \"num_train_timesteps\" is ", steps, "; expected an integer in [2, 100000]");
  c.num_steps = static_cast<int>(steps);
  c.beta_start = number("beta_start", 0.00085);
  c.beta_end = number("beta_end", 0.012);
  SDPO_CHECK(c.beta_start > 0 && c.beta_start < c.beta_end && c.beta_end < 1, path, ": beta_start ",
             c.beta_start, " and beta_end ", c.beta_end,
             " must satisfy 0 < beta_start < beta_end < 1");
  c.beta_schedule = betas == "linear" ? BetaSchedule::kLinear : BetaSchedule::kScaledLinear;
  c.snr_shift_scale = number("snr_shift_scale", 3.0);
  SDPO_CHECK(c.snr_shift_scale > 0 && std::isfinite(c.snr_shift_scale), path,
             ": \"snr_shift_scale\" must be > 0");
  c.rescale_zero_terminal_snr = boolean("rescale_betas_zero_snr", false);
  c.set_alpha_to_one = boolean("set_alpha_to_one", true);
  return c;
}

void CheckCogVideoXScheduler(const CogVideoXFolder& folder, const DdpmScheduleConfig& expected,
                             const std::string& model_name) {
  if (folder.scheduler.empty()) return;
  const DdpmScheduleConfig found = ReadCogVideoXScheduler(folder.scheduler);
  std::vector<std::string> differences;
  auto differ = [&](const char* key, double want, double got) {
    if (std::fabs(want - got) > 1e-12 * std::max(1.0, std::fabs(want))) {
      differences.push_back(absl::StrCat(key, " ", got, " (", model_name, ": ", want, ")"));
    }
  };
  differ("num_train_timesteps", expected.num_steps, found.num_steps);
  differ("beta_start", expected.beta_start, found.beta_start);
  differ("beta_end", expected.beta_end, found.beta_end);
  differ("beta_schedule (0 scaled_linear, 1 linear)", static_cast<double>(expected.beta_schedule),
         static_cast<double>(found.beta_schedule));
  differ("snr_shift_scale", expected.snr_shift_scale, found.snr_shift_scale);
  differ("rescale_betas_zero_snr", expected.rescale_zero_terminal_snr,
         found.rescale_zero_terminal_snr);
  differ("set_alpha_to_one", expected.set_alpha_to_one, found.set_alpha_to_one);
  SDPO_CHECK(differences.empty(), folder.scheduler,
             " describes another schedule than --model=", model_name, ": ",
             absl::StrJoin(differences, "; "),
             " (the 2B shifts the SNR by 3.0, the 5B by 1.0: is --model the folder's model?)");
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
  o.projection_inputs = options.projection_inputs;
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

// The VAE in f32 on the run's device (CPU or CUDA), one clip per call; results on the CPU.
class FolderVae final : public CogVideoXVaeRunner {
 public:
  FolderVae(std::unique_ptr<cogvideox::CogVideoXVae> vae, std::string hash,
            const std::optional<cogvideox::VaeTiling>& tiling)
      : vae_(std::move(vae)), hash_(std::move(hash)) {
    options_.tiling = tiling;
  }

  Tensor Encode(const Tensor& video) override {
    SDPO_CHECK(video.dim() == 4 && video.size(0) == 3,
               "the CogVideoX VAE encodes a video [3, T, H, W], got ", ShapeStr(video.shape()));
    NoGradGuard no_grad;
    return Unbatched(vae_->Encode(Batched(video), options_).latents);
  }
  Tensor Decode(const Tensor& latent) override {
    SDPO_CHECK(latent.dim() == 4, "the CogVideoX VAE decodes a latent [C, F, H, W], got ",
               ShapeStr(latent.shape()));
    NoGradGuard no_grad;
    return Unbatched(vae_->Decode(Batched(latent), options_));
  }
  std::string WeightsHash() const override { return hash_; }

 private:
  static Tensor Batched(const Tensor& x) {
    return ops::Unsqueeze(ops::Contiguous(ops::Cast(ops::To(x, Device::CPU()), kF32)), 0);
  }
  static Tensor Unbatched(const Tensor& x) {
    return ops::Contiguous(ops::Cast(ops::To(ops::Select(x, 0, 0), Device::CPU()), kF32));
  }
  std::unique_ptr<cogvideox::CogVideoXVae> vae_;
  std::string hash_;
  cogvideox::VaeRunOptions options_;
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

std::optional<cogvideox::VaeTiling> VaeTilingFlag(const std::string& value, const std::string& flag,
                                                  bool cogvideox) {
  SDPO_CHECK(cogvideox || value == "off", flag,
             " is for the CogVideoX VAE (the Wan2.1 VAE runs untiled), got ", value);
  return cogvideox::ParseVaeTiling(value, flag);
}

std::unique_ptr<CogVideoXVaeRunner> CogVideoXVaeRunner::Open(
    const CogVideoXFolder& folder, Device device, std::string* why_not,
    const std::optional<cogvideox::VaeTiling>& tiling) {
  if (folder.vae.empty()) {
    *why_not = absl::StrCat(folder.dir, " has no vae/ folder");
    return nullptr;
  }
  std::unique_ptr<cogvideox::CogVideoXVae> vae = cogvideox::LoadVae(folder.vae, device);
  vae->SetRequiresGrad(false);
  return std::make_unique<FolderVae>(std::move(vae), VaeHash(folder.vae), tiling);
}

}  // namespace sdpo::trainers
