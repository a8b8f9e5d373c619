// //trainers:sample — sample videos from a Wan2.1 checkpoint folder (optionally with trained LoRA
// adapters), Euler or UniPC, with classifier-free guidance, on the CPU or a GPU; writes the
// latents and, through the Wan2.1 VAE, an H.264 mp4. Without --checkpoint it samples the demo
// world's base model and writes GIF, mp4 and PNG renderings of the latents with their rewards.
//
//   bazel run -c opt //trainers:sample -- --model=wan21 --checkpoint=$PWD/Wan2.1-T2V-1.3B \
//       --lora=$PWD/runs/sdpo/adapters.safetensors --context=$PWD/prompt.safetensors \
//       --frames=81 --height=480 --width=832 --steps=50 --sampler=unipc --guidance=5 \
//       --out=$PWD/video.mp4
//   (or --prompt="a cat walks on the grass" [--negative_prompt=...] instead of --context: the
//   folder's umT5 encodes it, through an embedding cache beside --out)
//   bazel run -c opt //trainers:sample -- --lora=$PWD/runs/sdpo-seed0/adapters.safetensors \
//       --prompts="a red blob moving right slow,a blue blob moving up fast" --out=/tmp/samples
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "io/command_line.h"
#include "io/video.h"
#include "models/umt5/prompt_encoder.h"
#include "models/wan21/checkpoint.h"
#include "nn/checkpoint_io.h"
#include "nn/lora.h"
#include "tensor/thread_pool.h"
#include "trainers/demo/images.h"
#include "trainers/demo/mp4.h"
#include "trainers/demo_setup.h"
#include "trainers/device_flags.h"
#include "trainers/sampling.h"
#include "trainers/trainer.h"

ABSL_FLAG(std::string, model, "wan21", "model family (wan21)");
ABSL_FLAG(std::string, checkpoint, "",
          "Wan2.1 checkpoint folder (diffusion_pytorch_model*.safetensors [+ index], "
          "Wan2.1_VAE.pth or .safetensors) or a DiT safetensors file (latents only); empty: the "
          "demo base model");
ABSL_FLAG(std::string, lora, "", "adapters (//trainers:sdpo's adapters.safetensors)");
ABSL_FLAG(std::string, context, "",
          "safetensors of text embeddings: 'context' [L, D] (or context_0, context_1, ...) and "
          "'negative' [L, D] for guidance");
ABSL_FLAG(int, frames, 81, "video frames (1 + 4k)");
ABSL_FLAG(int, height, 480, "video height (a multiple of 16)");
ABSL_FLAG(int, width, 832, "video width (a multiple of 16)");
ABSL_FLAG(double, fps, 16, "frame rate of the mp4 (Wan2.1: 16)");
ABSL_FLAG(std::string, prompts, "",
          "demo: comma-separated prompts (empty: the held-out prompts); a checkpoint: a file with "
          "one prompt per line, encoded by the folder's umT5 (instead of --context)");
ABSL_FLAG(std::string, prompt, "", "a checkpoint: a prompt, encoded by the folder's umT5");
ABSL_FLAG(std::string, negative_prompt, "",
          "a checkpoint: the negative prompt of guidance (with --prompt / --prompts)");
ABSL_FLAG(std::string, text_encoder, "",
          "umT5 weights (default: the folder's models_t5_umt5-xxl-enc-bf16.safetensors or .pth)");
ABSL_FLAG(std::string, tokenizer, "",
          "SentencePiece model (default: google/umt5-xxl/spiece.model beside the text encoder)");
ABSL_FLAG(std::string, text_cache, "",
          "prompt-embedding cache directory (default: text_cache beside --out)");
ABSL_FLAG(int, samples, 0, "samples per prompt (0: 1; the demo: 2)");
ABSL_FLAG(uint64_t, seed, 0, "noise seed");
ABSL_FLAG(std::string, sampler, "", "euler | unipc (default: unipc; the demo: euler)");
ABSL_FLAG(int, steps, 0, "sampling steps (0: 50; the demo: 16)");
ABSL_FLAG(double, shift, 5.0, "flow shift of the sigma grid");
ABSL_FLAG(double, guidance, -1,
          "classifier-free guidance scale (1: conditional only; default 5, the demo 1)");
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

// --context, or --prompt / --prompts (a file, one prompt per line) and --negative_prompt encoded
// by the folder's umT5 through the embedding cache (models/umt5/prompt_encoder.h).
SamplingContexts PromptContexts(const WanCheckpointFolder& folder, const std::string& out) {
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
  const std::filesystem::path dir = folder.dir.empty()
                                        ? std::filesystem::path(folder.dit).parent_path()
                                        : std::filesystem::path(folder.dir);
  std::string cache_dir = absl::GetFlag(FLAGS_text_cache);
  if (cache_dir.empty())
    cache_dir = (std::filesystem::path(out).parent_path() / "text_cache").string();
  const umt5::PromptEncoderOptions o =
      FolderPromptEncoderOptions(dir.string(), absl::GetFlag(FLAGS_text_encoder),
                                 absl::GetFlag(FLAGS_tokenizer), cache_dir, "--prompt");
  auto encoder = umt5::PromptEncoder::Open(o);
  texts.push_back(absl::GetFlag(FLAGS_negative_prompt));
  std::vector<Tensor> encoded = encoder->EncodePrompts(texts);
  SamplingContexts contexts;
  contexts.negative = encoded.back();
  encoded.pop_back();
  contexts.prompts = encoded;
  std::printf("text: %zu prompt(s) + negative through %s (%lld encoded, %lld cached in %s)\n",
              contexts.prompts.size(), o.weights.c_str(),
              static_cast<long long>(encoder->encoded()),
              static_cast<long long>(encoder->cache_hits()), o.cache_dir.c_str());
  return contexts;
}

int CheckpointMain(const Device device, const DType dtype) {
  SDPO_CHECK(absl::GetFlag(FLAGS_model) == "wan21", "--model=", absl::GetFlag(FLAGS_model),
             ": //trainers:sample samples Wan2.1 checkpoints (wan21)");
  const std::string out = absl::GetFlag(FLAGS_out);
  SDPO_CHECK(absl::EndsWith(out, ".mp4"), "--out=", out,
             ": name the video file to write (ending in .mp4); the latents go next to it");
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
  const SamplingContexts contexts = PromptContexts(folder, out);

  VideoSampleRequest request;
  request.latent_shape = WanLatentShape(model->config().in_dim, absl::GetFlag(FLAGS_frames),
                                        absl::GetFlag(FLAGS_height), absl::GetFlag(FLAGS_width));
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

  const std::string latents_path = OutputPath(out, ".latents.safetensors");
  nn::TensorMap tensors;
  for (size_t i = 0; i < latents.size(); ++i) tensors[absl::StrCat("latent_", i)] = latents[i];
  nn::SaveSafetensors(latents_path, tensors);
  std::printf("wrote %zu latent(s) to %s\n", latents.size(), latents_path.c_str());

  std::string why_not;
  std::unique_ptr<WanVideoDecoder> decoder = WanVideoDecoder::Open(folder, device, dtype, &why_not);
  if (decoder == nullptr) {
    std::printf("no video written: %s\n", why_not.c_str());
    return 0;
  }
  for (size_t i = 0; i < latents.size(); ++i) {
    const std::string path =
        latents.size() == 1 ? out : OutputPath(out, absl::StrCat("_", i, ".mp4"));
    const Tensor video = decoder->Decode(latents[i]);
    video::WriteOptions wo;
    wo.fps = absl::GetFlag(FLAGS_fps);
    const video::WriteResult r = video::WriteMp4(path, video, wo);
    std::printf("wrote %s: %lld frames %dx%d at %g fps, %s (encoder %s)\n", path.c_str(),
                static_cast<long long>(r.frames), r.width, r.height, wo.fps, r.codec.c_str(),
                r.encoder.c_str());
  }
  return 0;
}

int Main() {
  if (absl::GetFlag(FLAGS_threads) > 0) SetNumThreads(absl::GetFlag(FLAGS_threads));
  const Device device = ParseDevice(absl::GetFlag(FLAGS_device));
  const DType dtype = ParsePrecision(absl::GetFlag(FLAGS_precision), device);
  if (!absl::GetFlag(FLAGS_checkpoint).empty()) return CheckpointMain(device, dtype);
  auto model = wan21::LoadModel(kDemoBaseModelPath);
  if (!absl::GetFlag(FLAGS_lora).empty()) nn::LoadLora(*model, absl::GetFlag(FLAGS_lora));
  PlaceModels(*model, nullptr, device, dtype);
  return DemoMain(std::move(model));
}

}  // namespace
}  // namespace sdpo::trainers

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv,
                         "latent videos from a Wan2.1 checkpoint (and LoRA adapters)");
  return sdpo::RunReportingErrors("sample", [&] { return sdpo::trainers::Main(); });
}
