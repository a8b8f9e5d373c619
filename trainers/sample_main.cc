// //trainers:sample — sample videos from a Wan2.1 checkpoint folder (optionally with trained LoRA
// adapters), Euler or UniPC, with classifier-free guidance, on the CPU or a GPU; writes the
// latents and, through the Wan2.1 VAE, an H.264 mp4. Without --checkpoint it samples the demo
// world's base model and writes GIF, mp4 and PNG renderings of the latents with their rewards.
//
//   bazel run -c opt //trainers:sample -- --model=wan21 --checkpoint=$PWD/Wan2.1-T2V-1.3B
//       --lora=$PWD/runs/sdpo/adapters.safetensors --context=$PWD/prompt.safetensors
//       --frames=81 --height=480 --width=832 --steps=50 --sampler=unipc --guidance=5
//       --out=$PWD/video.mp4
//   (or --prompt="a cat walks on the grass" [--negative_prompt=...] instead of --context: the
//   folder's umT5 encodes it, through an embedding cache beside --out)
//   bazel run -c opt //trainers:sample -- --model=cogvideox-2b --checkpoint=$PWD/CogVideoX-2b
//       --prompt="a cat walks on the grass" --out=$PWD/video.mp4
//   (a diffusers folder: transformer/, vae/, text_encoder/ (T5 v1.1), tokenizer/spiece.model;
//   49 frames at 480x720, 8 fps, DDIM 50 steps, guidance 6 by default)
//   bazel run -c opt //trainers:sample -- --lora=$PWD/runs/sdpo-seed0/adapters.safetensors
//       --prompts="a red blob moving right slow,a blue blob moving up fast" --out=/tmp/samples
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "io/command_line.h"
#include "io/video.h"
#include "models/cogvideox/vae.h"
#include "models/umt5/prompt_encoder.h"
#include "models/wan21/checkpoint.h"
#include "nn/checkpoint_io.h"
#include "nn/lora.h"
#include "tensor/thread_pool.h"
#include "trainers/cogvideox_folder.h"
#include "trainers/demo/images.h"
#include "trainers/demo/mp4.h"
#include "trainers/demo_setup.h"
#include "trainers/device_flags.h"
#include "trainers/model_factory.h"
#include "trainers/sampling.h"
#include "trainers/trainer.h"

ABSL_FLAG(std::string, model, "wan21", "model family: wan21 | cogvideox-2b | cogvideox-5b");
ABSL_FLAG(std::string, checkpoint, "",
          "Wan2.1 checkpoint folder (diffusion_pytorch_model*.safetensors [+ index], "
          "Wan2.1_VAE.pth or .safetensors) or a DiT safetensors file (latents only); CogVideoX: "
          "the diffusers folder (transformer/, vae/, text_encoder/, tokenizer/); empty: the "
          "demo base model");
ABSL_FLAG(std::string, lora, "", "adapters (//trainers:sdpo's adapters.safetensors)");
ABSL_FLAG(std::string, context, "",
          "safetensors of text embeddings: 'context' [L, D] (or context_0, context_1, ...) and "
          "'negative' [L, D] for guidance");
ABSL_FLAG(int, frames, 0, "video frames (1 + 4k; 0: Wan2.1 81, CogVideoX 49)");
ABSL_FLAG(int, height, 0, "video height (a multiple of 16; 0: 480)");
ABSL_FLAG(int, width, 0, "video width (a multiple of 16; 0: Wan2.1 832, CogVideoX 720)");
ABSL_FLAG(double, fps, 0, "frame rate of the mp4 (0: Wan2.1 16, CogVideoX 8)");
ABSL_FLAG(std::string, prompts, "",
          "demo: comma-separated prompts (empty: the held-out prompts); a checkpoint: a file with "
          "one prompt per line, encoded by the folder's umT5 (instead of --context)");
ABSL_FLAG(std::string, prompt, "",
          "a checkpoint: a prompt, encoded by the folder's text encoder (umT5; CogVideoX: T5)");
ABSL_FLAG(std::string, negative_prompt, "",
          "a checkpoint: the negative prompt of guidance (with --prompt / --prompts)");
ABSL_FLAG(std::string, text_encoder, "",
          "text encoder weights (default: the folder's models_t5_umt5-xxl-enc-bf16.safetensors or "
          ".pth; CogVideoX: text_encoder/)");
ABSL_FLAG(std::string, tokenizer, "",
          "SentencePiece model (default: google/umt5-xxl/spiece.model beside the text encoder; "
          "CogVideoX: tokenizer/spiece.model)");
ABSL_FLAG(std::string, text_cache, "",
          "prompt-embedding cache directory (default: text_cache beside --out)");
ABSL_FLAG(std::string, text_compute, "f32",
          "text encoder numerics: f32 | bf16 (projections on bf16-rounded inputs, f32 "
          "accumulation; the CPU's bf16 units; docs/text.md)");
ABSL_FLAG(std::string, vae_tiling, "off",
          "CogVideoX VAE tiles as diffusers' enable_tiling(): off | on (240x360 pixels every "
          "200x288) | HxW:SHxSW; less memory at 480x720, other numbers (docs/cogvideox.md)");
ABSL_FLAG(int, samples, 0, "samples per prompt (0: 1; the demo: 2)");
ABSL_FLAG(uint64_t, seed, 0, "noise seed");
ABSL_FLAG(std::string, sampler, "",
          "Wan2.1: euler | unipc (default unipc; the demo: euler); CogVideoX: ddim | dpm "
          "(default ddim)");
ABSL_FLAG(int, steps, 0, "sampling steps (0: 50; the demo: 16)");
ABSL_FLAG(double, shift, 5.0, "flow shift of the sigma grid (Wan2.1)");
ABSL_FLAG(double, guidance, -1,
          "classifier-free guidance scale (1: conditional only; default Wan2.1 5, CogVideoX 6, "
          "the demo 1)");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda | cuda:N");
ABSL_FLAG(std::string, precision, "f32", "f32 | bf16 (bf16 needs --device=cuda)");
ABSL_FLAG(std::string, out, "",
          "output: video.mp4 (a checkpoint; latents go to video.latents.safetensors) or a "
          "directory (the demo; default ./samples)");
ABSL_FLAG(bool, progress, true, "progress bar with ETA on stderr");
ABSL_FLAG(int, threads, 0, "CPU threads (0: all)");

namespace sdpo::trainers {
namespace {

samplers::FlowSampleOptions SampleOptions(const samplers::FlowSampleOptions& defaults) {
  samplers::FlowSampleOptions o = defaults;
  if (!absl::GetFlag(FLAGS_sampler).empty()) {
    o.solver = samplers::ParseFlowSolver(absl::GetFlag(FLAGS_sampler));
  }
  if (absl::GetFlag(FLAGS_steps) > 0) o.steps = absl::GetFlag(FLAGS_steps);
  SDPO_CHECK(absl::GetFlag(FLAGS_steps) >= 0, "--steps must be >= 1");
  o.shift = absl::GetFlag(FLAGS_shift);
  if (absl::GetFlag(FLAGS_guidance) >= 0) o.guide_scale = absl::GetFlag(FLAGS_guidance);
  return o;
}

// The path with its ".mp4" replaced by `suffix`.
std::string OutputPath(const std::string& mp4, const std::string& suffix) {
  return mp4.substr(0, mp4.size() - 4) + suffix;
}

int DemoMain(std::unique_ptr<wan21::WanModel> model) {
  samplers::FlowSampleOptions opt = SampleOptions(DemoSampleOptions());
  SDPO_CHECK(opt.guide_scale == 1.0,
             "--guidance: the demo model was trained without prompt "
             "dropout, so it has no unconditional branch; use 1");
  std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) out = "samples";
  std::filesystem::create_directories(out);
  demo::DemoWorld world;
  std::vector<demo::DemoPrompt> prompts;
  if (absl::GetFlag(FLAGS_prompts).empty()) {
    prompts = world.heldout_prompts();
  } else {
    for (absl::string_view p : absl::StrSplit(absl::GetFlag(FLAGS_prompts), ',')) {
      prompts.push_back(world.Find(std::string(p)));
    }
  }
  std::vector<demo::DemoPrompt> expanded;
  std::vector<uint64_t> seeds;
  const int samples = absl::GetFlag(FLAGS_samples) > 0 ? absl::GetFlag(FLAGS_samples) : 2;
  for (const auto& p : prompts) {
    for (int k = 0; k < samples; ++k) {
      expanded.push_back(p);
      seeds.push_back(absl::GetFlag(FLAGS_seed) * 1000003ull + seeds.size());
    }
  }
  std::vector<Tensor> latents = SampleDemo(*model, world, expanded, seeds, opt);
  nn::TensorMap tensors;
  for (size_t i = 0; i < latents.size(); ++i) {
    tensors[absl::StrCat("sample_", i)] = latents[i];
    std::printf("%2zu  reward %.3f  %s\n", i, world.Reward(expanded[i], latents[i]),
                expanded[i].text.c_str());
  }
  const std::filesystem::path dir(out);
  nn::SaveSafetensors((dir / "samples.safetensors").string(), tensors);
  demo::WriteGif((dir / "samples.gif").string(), latents);
  const std::string encoder = demo::WriteMp4((dir / "samples.mp4").string(), latents);
  demo::WritePng((dir / "samples.png").string(), latents);
  std::printf("wrote %s/samples.{safetensors,gif,mp4,png} (mp4 encoder %s)\n", out.c_str(),
              encoder.c_str());
  return 0;
}

// Opens the text encoder with the given prompt-embedding cache directory.
using OpenTextEncoder = std::function<std::unique_ptr<umt5::PromptEncoder>(const std::string&)>;

// --context, or --prompt / --prompts (a file, one prompt per line) and --negative_prompt encoded
// by the checkpoint's text encoder through the embedding cache (models/umt5/prompt_encoder.h).
SamplingContexts PromptContexts(const std::string& out, const OpenTextEncoder& open) {
  std::vector<std::string> texts;
  if (!absl::GetFlag(FLAGS_prompt).empty()) texts.push_back(absl::GetFlag(FLAGS_prompt));
  if (!absl::GetFlag(FLAGS_prompts).empty()) {
    std::ifstream f(absl::GetFlag(FLAGS_prompts));
    SDPO_CHECK(f.good(), "--prompts=", absl::GetFlag(FLAGS_prompts), ": cannot open");
    for (std::string line; std::getline(f, line);) {
      if (!absl::StripAsciiWhitespace(line).empty()) texts.push_back(line);
    }
  }
  if (texts.empty()) return ReadSamplingContexts(absl::GetFlag(FLAGS_context));
  SDPO_CHECK(absl::GetFlag(FLAGS_context).empty(),
             "--context and --prompt / --prompts exclude each other");
  std::string cache_dir = absl::GetFlag(FLAGS_text_cache);
  if (cache_dir.empty()) {
    cache_dir = (std::filesystem::path(out).parent_path() / "text_cache").string();
  }
  auto encoder = open(cache_dir);
  texts.push_back(absl::GetFlag(FLAGS_negative_prompt));
  std::vector<Tensor> encoded = encoder->EncodePrompts(texts);
  SamplingContexts contexts;
  contexts.negative = encoded.back();
  encoded.pop_back();
  contexts.prompts = encoded;
  std::printf("text: %zu prompt(s) + negative (%lld encoded, %lld cached in %s)\n",
              contexts.prompts.size(), static_cast<long long>(encoder->encoded()),
              static_cast<long long>(encoder->cache_hits()), cache_dir.c_str());
  return contexts;
}

// --text_compute, checked.
umt5::ProjectionInputs TextCompute() {
  return umt5::ParseProjectionInputs(absl::GetFlag(FLAGS_text_compute), "--text_compute");
}

// The folder's umT5 (or --text_encoder / --tokenizer).
std::unique_ptr<umt5::PromptEncoder> OpenWanTextEncoder(const WanCheckpointFolder& folder,
                                                        const std::string& cache_dir) {
  const std::filesystem::path dir = folder.dir.empty()
                                        ? std::filesystem::path(folder.dit).parent_path()
                                        : std::filesystem::path(folder.dir);
  umt5::PromptEncoderOptions o =
      FolderPromptEncoderOptions(dir.string(), absl::GetFlag(FLAGS_text_encoder),
                                 absl::GetFlag(FLAGS_tokenizer), cache_dir, "--prompt");
  o.projection_inputs = TextCompute();
  std::printf("text encoder: %s\n", o.weights.c_str());
  return umt5::PromptEncoder::Open(o);
}

// A flag's value, or `fallback` when the flag is 0 (the model's default).
template <typename T>
T OrDefault(T flag, T fallback) {
  return flag == 0 ? fallback : flag;
}

// Writes the latents beside the mp4 and, with a decoder, one mp4 per latent.
void WriteSamples(const std::vector<Tensor>& latents, const std::string& out, double fps,
                  const std::function<Tensor(const Tensor&)>& decode,
                  const std::string& why_no_video) {
  const std::string latents_path = OutputPath(out, ".latents.safetensors");
  nn::TensorMap tensors;
  for (size_t i = 0; i < latents.size(); ++i) tensors[absl::StrCat("latent_", i)] = latents[i];
  nn::SaveSafetensors(latents_path, tensors);
  std::printf("wrote %zu latent(s) to %s\n", latents.size(), latents_path.c_str());
  if (!decode) {
    std::printf("no video written: %s\n", why_no_video.c_str());
    return;
  }
  for (size_t i = 0; i < latents.size(); ++i) {
    const std::string path =
        latents.size() == 1 ? out : OutputPath(out, absl::StrCat("_", i, ".mp4"));
    const Tensor video = decode(latents[i]);
    video::WriteOptions wo;
    wo.fps = fps;
    const video::WriteResult r = video::WriteMp4(path, video, wo);
    std::printf("wrote %s: %lld frames %dx%d at %g fps, %s (encoder %s)\n", path.c_str(),
                static_cast<long long>(r.frames), r.width, r.height, wo.fps, r.codec.c_str(),
                r.encoder.c_str());
  }
}

int WanMain(const std::string& out, const Device device, const DType dtype) {
  const std::string ckpt = absl::GetFlag(FLAGS_checkpoint);
  WanCheckpointFolder folder;
  if (std::filesystem::is_directory(ckpt)) {
    folder = FindWanCheckpoint(ckpt);
  } else {
    folder.dit = ckpt;  // a DiT file alone: latents only
  }
  wan21::LoadReport report;
  std::unique_ptr<wan21::WanModel> model = wan21::LoadModel(folder.dit, std::nullopt, {}, &report);
  std::printf("DiT: %s (%lld tensors, %s names)\n", report.path.c_str(),
              static_cast<long long>(report.tensors), wan21::NameFormatName(report.format));
  if (!absl::GetFlag(FLAGS_lora).empty()) {
    nn::LoadLora(*model, absl::GetFlag(FLAGS_lora));
    std::printf("LoRA: %s (%zu adapted layers)\n", absl::GetFlag(FLAGS_lora).c_str(),
                nn::LoraLayers(*model).size());
  }
  PlaceModels(*model, nullptr, device, dtype);
  const SamplingContexts contexts = PromptContexts(
      out, [&](const std::string& cache) { return OpenWanTextEncoder(folder, cache); });

  VideoSampleRequest request;
  request.latent_shape = WanLatentShape(
      model->config().in_dim, OrDefault(absl::GetFlag(FLAGS_frames), 81),
      OrDefault(absl::GetFlag(FLAGS_height), 480), OrDefault(absl::GetFlag(FLAGS_width), 832));
  request.samples_per_prompt = std::max(1, absl::GetFlag(FLAGS_samples));
  request.seed = absl::GetFlag(FLAGS_seed);
  request.options = SampleOptions(samplers::FlowSampleOptions{});
  request.progress = absl::GetFlag(FLAGS_progress);
  std::printf(
      "sampling %zu video(s): latent %s, %s %d steps, shift %g, guidance %g, %s %s\n",
      contexts.prompts.size() * request.samples_per_prompt, ShapeStr(request.latent_shape).c_str(),
      samplers::FlowSolverName(request.options.solver), request.options.steps,
      request.options.shift, request.options.guide_scale, device.str().c_str(), DTypeName(dtype));
  const std::vector<Tensor> latents = SampleLatentVideos(*model, contexts, request);

  std::string why_not;
  std::unique_ptr<WanVideoDecoder> decoder = WanVideoDecoder::Open(folder, device, dtype, &why_not);
  std::function<Tensor(const Tensor&)> decode;
  if (decoder != nullptr) decode = [&](const Tensor& z) { return decoder->Decode(z); };
  WriteSamples(latents, out, OrDefault(absl::GetFlag(FLAGS_fps), 16.0), decode, why_not);
  return 0;
}

// CogVideoX from a diffusers folder: T5 v1.1 at 226 tokens, DDIM or DPM, the folder's VAE.
int CogVideoXMain(const std::string& model_name, const std::string& out, const Device device,
                  const DType dtype) {
  const CogVideoXFolder folder = FindCogVideoXCheckpoint(absl::GetFlag(FLAGS_checkpoint));
  TrainModel tm = LoadTrainModel(model_name, folder.transformer);
  std::printf("DiT: %s (%s)\n", folder.transformer.c_str(), model_name.c_str());
  if (!absl::GetFlag(FLAGS_lora).empty()) {
    nn::LoadLora(tm.model->module(), absl::GetFlag(FLAGS_lora));
    std::printf("LoRA: %s (%zu adapted layers)\n", absl::GetFlag(FLAGS_lora).c_str(),
                nn::LoraLayers(tm.model->module()).size());
  }
  PlaceModels(*tm.model, nullptr, device, dtype);
  const SamplingContexts contexts = PromptContexts(out, [&](const std::string& cache) {
    CogVideoXTextOptions o;
    o.weights = absl::GetFlag(FLAGS_text_encoder);
    o.tokenizer = absl::GetFlag(FLAGS_tokenizer);
    o.cache_dir = cache;
    o.text_dim = tm.text_dim;
    o.text_len = tm.max_text_len;
    o.projection_inputs = TextCompute();
    return OpenCogVideoXTextEncoder(folder, o);
  });

  DdpmVideoSampleRequest request;
  request.latent_shape =
      WanLatentShape(tm.latent_channels, OrDefault(absl::GetFlag(FLAGS_frames), 49),
                     OrDefault(absl::GetFlag(FLAGS_height), 480),
                     OrDefault(absl::GetFlag(FLAGS_width), 720), tm.latent_patch[1]);
  request.samples_per_prompt = std::max(1, absl::GetFlag(FLAGS_samples));
  request.seed = absl::GetFlag(FLAGS_seed);
  const std::string sampler = absl::GetFlag(FLAGS_sampler);
  SDPO_CHECK(sampler.empty() || sampler == "ddim" || sampler == "dpm", "--sampler=", sampler,
             ": CogVideoX samples with ddim or dpm");
  request.options.solver =
      sampler == "dpm" ? samplers::DdpmSolver::kDpm : samplers::DdpmSolver::kDdim;
  SDPO_CHECK(absl::GetFlag(FLAGS_steps) >= 0, "--steps must be >= 1");
  request.options.steps = OrDefault(absl::GetFlag(FLAGS_steps), 50);
  request.options.guidance_scale =
      absl::GetFlag(FLAGS_guidance) >= 0 ? absl::GetFlag(FLAGS_guidance) : 6.0;
  request.progress = absl::GetFlag(FLAGS_progress);
  std::printf("sampling %zu video(s): latent %s, %s %d steps, guidance %g, %s %s\n",
              contexts.prompts.size() * request.samples_per_prompt,
              ShapeStr(request.latent_shape).c_str(), sampler == "dpm" ? "dpm" : "ddim",
              request.options.steps, request.options.guidance_scale, device.str().c_str(),
              DTypeName(dtype));
  const std::vector<Tensor> latents =
      SampleDdpmLatentVideos(*tm.model, tm.schedule->alphas_cumprod(), contexts, request);

  std::string why_not;
  std::unique_ptr<CogVideoXVaeRunner> vae = CogVideoXVaeRunner::Open(
      folder, device, &why_not,
      VaeTilingFlag(absl::GetFlag(FLAGS_vae_tiling), "--vae_tiling", true));
  std::function<Tensor(const Tensor&)> decode;
  if (vae != nullptr) decode = [&](const Tensor& z) { return vae->Decode(z); };
  WriteSamples(latents, out, OrDefault(absl::GetFlag(FLAGS_fps), 8.0), decode, why_not);
  return 0;
}

int CheckpointMain(const Device device, const DType dtype) {
  const std::string model = absl::GetFlag(FLAGS_model);
  const std::string out = absl::GetFlag(FLAGS_out);
  SDPO_CHECK(absl::EndsWith(out, ".mp4"), "--out=", out,
             ": name the video file to write (ending in .mp4); the latents go next to it");
  if (model == "wan21") {
    VaeTilingFlag(absl::GetFlag(FLAGS_vae_tiling), "--vae_tiling", false);  // refuses tiles
    return WanMain(out, device, dtype);
  }
  SDPO_CHECK(model == "cogvideox-2b" || model == "cogvideox-5b", "--model=", model,
             ": expected wan21, cogvideox-2b or cogvideox-5b");
  return CogVideoXMain(model, out, device, dtype);
}

int Main() {
  if (absl::GetFlag(FLAGS_threads) > 0) SetNumThreads(absl::GetFlag(FLAGS_threads));
  const Device device = ParseDevice(absl::GetFlag(FLAGS_device));
  const DType dtype = ParsePrecision(absl::GetFlag(FLAGS_precision), device);
  TextCompute();  // checked before anything loads
  if (!absl::GetFlag(FLAGS_checkpoint).empty()) return CheckpointMain(device, dtype);
  auto model = wan21::LoadModel(kDemoBaseModelPath);
  if (!absl::GetFlag(FLAGS_lora).empty()) nn::LoadLora(*model, absl::GetFlag(FLAGS_lora));
  PlaceModels(*model, nullptr, device, dtype);
  return DemoMain(std::move(model));
}

}  // namespace
}  // namespace sdpo::trainers

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv, "latent videos from a Wan2.1 checkpoint (and LoRA adapters)");
  return sdpo::RunReportingErrors("sample", [&] { return sdpo::trainers::Main(); });
}
