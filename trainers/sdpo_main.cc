// //trainers:sdpo — preference fine-tuning of a video diffusion transformer.
//
//   bazel run //trainers:sdpo -- --model=wan21
//       runs the embedded demo: a tiny Wan2.1 pretrained on a synthetic world, pairs of its own
//       samples ranked by the world's reward, SDPO with LoRA, held-out evaluation and a report.
//   bazel run //trainers:sdpo -- --model=wan21 --checkpoint=DIR_OR_FILE --data=DATASET_DIR ...
//       fine-tunes a real checkpoint on an on-disk preference dataset (docs/data.md).
//   bazel run //trainers:sdpo -- --model=wan21 --device=cuda --precision=bf16 ...
//       the same on a GPU: bf16 compute with f32 master weights (README, "Training on a GPU").
#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "io/command_line.h"
#include "io/json.h"
#include "models/cogvideox/vae.h"
#include "models/umt5/prompt_encoder.h"
#include "models/wan21/checkpoint.h"
#include "nn/checkpoint_io.h"
#include "nn/init.h"
#include "nn/lora.h"
#include "tensor/cuda/cuda_available.h"
#include "tensor/thread_pool.h"
#include "trainers/cogvideox_folder.h"
#include "trainers/config_check.h"
#include "trainers/data/preference_dataset.h"
#include "trainers/demo/rounds.h"
#include "trainers/demo_setup.h"
#include "trainers/device_flags.h"
#include "trainers/distributed/device_communicator.h"
#include "trainers/distributed/mpi_communicator.h"
#include "trainers/lora_export.h"
#include "trainers/model_factory.h"
#include "trainers/prepare_vae.h"
#include "trainers/reward_command.h"
#include "trainers/run_dir.h"
#include "trainers/sampling.h"
#include "trainers/scored_rounds.h"
#include "trainers/signals.h"
#include "trainers/trainer.h"
#include "trainers/validation.h"

ABSL_FLAG(std::string, model, "wan21",
          "wan21 | cogvideox-2b | cogvideox-5b (CogVideoX needs --checkpoint and --data)");
ABSL_FLAG(std::string, checkpoint, "",
          "model safetensors (file, sharded index or directory; Wan2.1 official or diffusers "
          "names, CogVideoX diffusers names); empty: the demo model (wan21)");
ABSL_FLAG(std::string, data, "", "preference dataset directory (docs/data.md); empty: demo pairs");
ABSL_FLAG(std::string, objective, "sdpo", "dpo | dpo-cm | sdpo");
ABSL_FLAG(std::vector<std::string>, objective_option, {},
          "objective readings as key=value (e.g. sdpo_reading=loss_level,tau=0.8; see "
          "docs/objectives.md)");
ABSL_FLAG(double, beta, -1,
          "DPO beta (diffusers convention), finite and > 0; -1 (or left out): the objective's "
          "default, or 100 for the demo (calibrated on the demo world, docs/results.md)");
ABSL_FLAG(double, lr, 1e-3, "peak learning rate");
ABSL_FLAG(std::string, schedule, "constant_with_warmup",
          "constant | constant_with_warmup | cosine");
ABSL_FLAG(int64_t, warmup, 10, "warmup steps");
ABSL_FLAG(int64_t, steps, 150, "optimizer steps");
ABSL_FLAG(int64_t, batch, 8, "pairs per micro-batch");
ABSL_FLAG(int64_t, grad_accum, 1, "micro-batches per optimizer step");
ABSL_FLAG(int64_t, lora_rank, 8, "LoRA rank");
ABSL_FLAG(double, lora_alpha, 8, "LoRA alpha");
ABSL_FLAG(std::string, lora_format, "",
          "also write the trained adapters for other tools: peft (directory adapters_peft/), "
          "diffusers or comfyui (adapters_<format>.safetensors); see //trainers:export_lora");
ABSL_FLAG(std::vector<std::string>, lora_targets, {},
          "module-name patterns that get adapters (default: the model's attention and MLP "
          "projections, e.g. blocks.*.self_attn.{q,k,v,o} for wan21)");
ABSL_FLAG(bool, full, false, "full fine-tuning (reference = frozen copy) instead of LoRA");
ABSL_FLAG(bool, recompute, false, "per-block activation recompute");
ABSL_FLAG(std::string, precision, "f32",
          "f32 | bf16 (bf16 compute with f32 master weights and AdamW state; needs --device=cuda)");
ABSL_FLAG(std::string, device, "cpu",
          "cpu | cuda | cuda:N (cuda under mpirun: the GPU of the process's local rank)");
ABSL_FLAG(int, threads, 0, "CPU threads (0: all)");
ABSL_FLAG(uint64_t, seed, 0, "seed: data order, timesteps, noise, demo pairs");
ABSL_FLAG(std::string, out, "",
          "output directory (default: runs/<objective>-<seed> under the "
          "workspace, or the current directory outside bazel run)");
ABSL_FLAG(bool, resume, false,
          "continue the run in --out from its checkpoint.safetensors (from step 0 when it has "
          "none yet); a finished run is left as it is");
ABSL_FLAG(bool, overwrite, false,
          "start a new run in an --out that holds one, removing its metrics, checkpoint, "
          "adapters, summary and report (without it, or --resume, such an --out is refused)");
ABSL_FLAG(bool, allow_config_change, false,
          "--resume even though the objective or hyper-parameters differ from those the "
          "checkpoint was trained with (--steps, --threads and --device may always change)");
ABSL_FLAG(int64_t, eval_every, 50, "evaluate every N steps (0: before and after only)");
ABSL_FLAG(int64_t, save_every, 50, "checkpoint every N steps (0: at the end only)");
ABSL_FLAG(double, max_grad_norm, 1.0, "gradient clipping (<=0: off)");
ABSL_FLAG(int64_t, max_bad_steps, 5, "stop after this many consecutive NaN/Inf steps");
ABSL_FLAG(std::string, timestep_sampling, "uniform_grid",
          "uniform_grid | uniform_sigma | logit_normal");
ABSL_FLAG(int, pairs_per_prompt, 8, "demo: preference pairs generated per training prompt");
ABSL_FLAG(int, eval_samples, 8, "demo: samples per held-out prompt in the evaluation");
ABSL_FLAG(int, rounds, 1,
          "demo: rounds of on-policy data; round r samples new pairs from the current policy, "
          "adds them to the buffer of all earlier rounds' pairs and trains on it up to step "
          "(r + 1) * steps / rounds (docs/demo.md)");
ABSL_FLAG(std::string, demo_pairs, "",
          "demo: a file of the base model's pairs (round 0) for this --seed and "
          "--pairs_per_prompt: loaded when it exists, else generated and written there (lets "
          "many runs of one seed share the sampling)");
ABSL_FLAG(int, until_round, 0,
          "demo with --rounds: stop after this many rounds (0: all); continue with --resume");
ABSL_FLAG(std::string, reward_cmd, "",
          "a Wan2.1 checkpoint folder: rounds of pairs sampled from the policy and ranked by this "
          "command (run by /bin/sh; reads a JSON list of {\"prompt\", \"video\"} on stdin, "
          "prints a JSON list of scores), instead of --data (docs/data.md, \"Scored rounds\")");
ABSL_FLAG(double, reward_timeout_s, 3600, "--reward_cmd: seconds one call may take");
ABSL_FLAG(std::string, prompts, "", "--reward_cmd: a file with one training prompt per line");
ABSL_FLAG(std::string, negative_prompt, "", "--reward_cmd: the negative prompt of guidance");
ABSL_FLAG(int, samples_per_prompt, 2,
          "--reward_cmd: videos per prompt and round (even; each two form a pair)");
ABSL_FLAG(int, frames, 17, "--reward_cmd: video frames (1 + 4k)");
ABSL_FLAG(int, height, 480, "--reward_cmd: video height (a multiple of 16)");
ABSL_FLAG(int, width, 832, "--reward_cmd: video width (a multiple of 16)");
ABSL_FLAG(double, fps, 16, "--reward_cmd: frame rate of the videos");
ABSL_FLAG(int, sample_steps, 50, "--reward_cmd: sampling steps (UniPC)");
ABSL_FLAG(double, guidance, 5.0, "--reward_cmd: classifier-free guidance scale (1: off)");
ABSL_FLAG(bool, progress, true, "progress bar on stderr");
ABSL_FLAG(double, val_fraction, 0,
          "hold out this fraction of --data's pairs (chosen by --seed, never trained on; "
          "recorded in val_split.json) and report their loss and implicit reward accuracy at "
          "each evaluation; 0: none");
ABSL_FLAG(std::string, val_data, "",
          "a preference dataset of held-out pairs, reported like --val_fraction's (exclusive "
          "with it)");
ABSL_FLAG(std::string, validation_prompts, "",
          "a checkpoint folder (Wan2.1, or CogVideoX in the diffusers layout): render these "
          "prompts (one per line, or JSONL with prompt, seed, negative_prompt) at every "
          "evaluation with fixed noise into validation/step_NNNNNN/pK.{mp4,gif} and report.md");
ABSL_FLAG(int, validation_frames, 0,
          "validation videos: frames (1 + 4k; 0: Wan2.1 81, CogVideoX 49)");
ABSL_FLAG(int, validation_height, 480, "validation videos: height (a multiple of 16)");
ABSL_FLAG(int, validation_width, 0,
          "validation videos: width (a multiple of 16; 0: Wan2.1 832, CogVideoX 720)");
ABSL_FLAG(int, validation_steps, 50, "validation videos: sampling steps");
ABSL_FLAG(std::string, validation_sampler, "",
          "validation videos: Wan2.1 euler | unipc (default unipc); CogVideoX ddim | dpm "
          "(default ddim)");
ABSL_FLAG(double, validation_shift, 5.0,
          "validation videos: flow shift of the sigma grid (Wan2.1)");
ABSL_FLAG(double, validation_guidance, -1,
          "validation videos: classifier-free guidance scale (1: conditional only; default "
          "Wan2.1 5, CogVideoX 6)");
ABSL_FLAG(std::string, validation_negative_prompt, "",
          "validation videos: the negative prompt of prompts that give none");
ABSL_FLAG(double, validation_fps, 0,
          "validation videos: frame rate of the mp4 and GIF (0: Wan2.1 16, CogVideoX 8)");
ABSL_FLAG(std::string, validation_vae_tiling, "off",
          "validation videos, CogVideoX: VAE tiles as diffusers' enable_tiling(): off | on "
          "(240x360 pixels every 200x288) | HxW:SHxSW (less memory at 480x720; docs/cogvideox.md)");
ABSL_FLAG(std::string, text_encoder, "",
          "validation prompts: text encoder weights (default: the checkpoint folder's "
          "models_t5_umt5-xxl-enc-bf16.safetensors or .pth; CogVideoX: text_encoder/)");
ABSL_FLAG(std::string, tokenizer, "",
          "validation prompts: SentencePiece model (default: beside the text encoder; "
          "CogVideoX: tokenizer/spiece.model)");
ABSL_FLAG(std::string, text_cache, "",
          "validation prompts: embedding cache directory (default: text_cache in --out)");
ABSL_FLAG(std::string, text_compute, "f32",
          "validation and --reward_cmd prompts: text encoder numerics, f32 | bf16 (projections "
          "on bf16-rounded inputs, f32 accumulation; docs/text.md)");
ABSL_FLAG(int, zero, 0,
          "0: every rank holds the whole optimizer state (gradients all-reduced); 1: ZeRO-1, f32 "
          "master weights and AdamW moments sharded over the ranks (docs/distributed.md)");
ABSL_FLAG(double, collective_timeout_s, 600,
          "mpirun: a collective that does not complete in this many seconds (a hung rank) ends "
          "the job with an error (<= 0: wait forever)");
ABSL_FLAG(double, bucket_mb, 25, "mpirun: gradient all-reduce bucket size in MiB");

namespace sdpo::trainers {
namespace {

constexpr double kDemoBeta = 100.0;

ObjectiveConfig MakeObjective(bool demo) {
  std::string name = absl::GetFlag(FLAGS_objective);
  ObjectiveConfig c;
  if (name == "dpo" || name == "diffusion-dpo") {
    c = ObjectiveConfig::DiffusionDpo();
  } else if (name == "dpo-cm" || name == "dpo_cm") {
    c = ObjectiveConfig::DpoCm();
  } else if (name == "sdpo") {
    c = ObjectiveConfig::Sdpo();
  } else {
    SDPO_FAIL("--objective=", name, ": expected dpo, dpo-cm or sdpo");
  }
  if (absl::GetFlag(FLAGS_beta) != -1) {
    c.beta = absl::GetFlag(FLAGS_beta);  // checked with the other flags (CheckTrainerConfig)
  } else if (demo) {
    c.beta = kDemoBeta;
  }
  for (const std::string& kv : absl::GetFlag(FLAGS_objective_option)) {
    std::vector<std::string> parts = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    SDPO_CHECK(parts.size() == 2, "--objective_option: '", kv, "' is not key=value");
    SetObjectiveOption(&c, parts[0], parts[1]);
  }
  return c;
}

std::string OutDir() {
  std::string out = absl::GetFlag(FLAGS_out);
  if (!out.empty()) return out;
  std::string name =
      absl::StrCat("runs/", absl::GetFlag(FLAGS_objective), "-seed", absl::GetFlag(FLAGS_seed));
  // bazel run: write next to the user's workspace, not into the runfiles tree.
  if (const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY")) {
    return (std::filesystem::path(ws) / name).string();
  }
  return name;
}

std::string Quoted(const std::string& s) { return json::Quote(s); }

// The trainable parameters as they are now (a round's generator), and back from a training
// checkpoint's "param/" entries.
void SaveTrainable(const models::DiffusionModel& model, const std::string& path) {
  nn::TensorMap tensors;
  for (const auto& [name, p] : model.module().NamedTrainableParameters()) tensors[name] = p;
  nn::SaveSafetensors(path, tensors);
}

nn::TensorMap ReadTrainable(const std::string& path, const std::string& prefix) {
  nn::TensorMap out;
  for (auto& [key, t] : nn::ReadSafetensors(path)) {
    if (key.rfind(prefix, 0) == 0) out[key.substr(prefix.size())] = t;
  }
  return out;
}

void LoadTrainable(models::DiffusionModel& model, const nn::TensorMap& values,
                   const std::string& source) {
  for (const auto& [name, p] : model.module().NamedTrainableParameters()) {
    auto it = values.find(name);
    SDPO_CHECK(it != values.end() && it->second.shape() == p.shape(), source,
               " lacks trainable parameter '", name, "' of shape ", ShapeStr(p.shape()));
    ops::CopyInto(p, it->second);
  }
}

// Round r's pairs are sampled with these seeds (round 0: the single-round demo's).
uint64_t RoundSeed(uint64_t seed, int round) { return seed + 7919ull * round; }

// --reward_cmd: what every scored round shares (prompts and their embeddings, the VAE both ways,
// the scorer) and the request of round r.
struct ScoredRoundSetup {
  std::vector<std::string> prompts;
  SamplingContexts contexts;
  std::unique_ptr<WanVideoDecoder> decoder;
  std::unique_ptr<VideoLatentEncoder> encoder;
  std::unique_ptr<RewardCommand> scorer;
  Shape latent_shape;
};

// --text_compute, checked.
umt5::ProjectionInputs TextCompute() {
  return umt5::ParseProjectionInputs(absl::GetFlag(FLAGS_text_compute), "--text_compute");
}

ScoredRoundSetup OpenScoredRounds(const std::string& checkpoint, const TrainModel& model,
                                  const std::string& out, Device device) {
  ScoredRoundSetup s;
  const WanCheckpointFolder folder = FindWanCheckpoint(checkpoint);
  std::string why_not;
  s.decoder = WanVideoDecoder::Open(folder, device, kF32, &why_not);
  SDPO_CHECK(s.decoder != nullptr, "--reward_cmd needs the VAE: ", why_not);
  s.encoder = OpenWanVideoEncoder(folder, device, &why_not);
  SDPO_CHECK(s.encoder != nullptr, "--reward_cmd needs the VAE: ", why_not);
  std::ifstream f(absl::GetFlag(FLAGS_prompts));
  SDPO_CHECK(!absl::GetFlag(FLAGS_prompts).empty() && f.good(),
             "--reward_cmd needs --prompts=FILE "
             "(one training prompt per line); cannot read '",
             absl::GetFlag(FLAGS_prompts), "'");
  for (std::string line; std::getline(f, line);) {
    if (!absl::StripAsciiWhitespace(line).empty()) s.prompts.push_back(line);
  }
  SDPO_CHECK(!s.prompts.empty(), "--prompts=", absl::GetFlag(FLAGS_prompts), ": no prompt");
  const std::string cache = absl::GetFlag(FLAGS_text_cache);
  umt5::PromptEncoderOptions o = FolderPromptEncoderOptions(
      folder.dir, absl::GetFlag(FLAGS_text_encoder), absl::GetFlag(FLAGS_tokenizer),
      cache.empty() ? (std::filesystem::path(out) / "text_cache").string() : cache, "--reward_cmd");
  o.projection_inputs = TextCompute();
  std::vector<std::string> texts = s.prompts;
  texts.push_back(absl::GetFlag(FLAGS_negative_prompt));
  std::vector<Tensor> encoded = umt5::PromptEncoder::Open(o)->EncodePrompts(texts);
  s.contexts.negative = encoded.back();
  encoded.pop_back();
  s.contexts.prompts = encoded;
  s.scorer = std::make_unique<RewardCommand>(absl::GetFlag(FLAGS_reward_cmd),
                                             absl::GetFlag(FLAGS_reward_timeout_s), StopRequested);
  s.latent_shape = WanLatentShape(model.latent_channels, absl::GetFlag(FLAGS_frames),
                                  absl::GetFlag(FLAGS_height), absl::GetFlag(FLAGS_width));
  return s;
}

ScoredRoundRequest RoundRequest(const ScoredRoundSetup& s, const std::string& dir, uint64_t seed,
                                bool progress) {
  ScoredRoundRequest r;
  r.prompts = s.prompts;
  r.contexts = s.contexts;
  r.sample.latent_shape = s.latent_shape;
  r.sample.samples_per_prompt = absl::GetFlag(FLAGS_samples_per_prompt);
  r.sample.seed = seed;
  r.sample.options.steps = absl::GetFlag(FLAGS_sample_steps);
  r.sample.options.guide_scale = absl::GetFlag(FLAGS_guidance);
  r.sample.progress = progress;
  r.clip.frames = absl::GetFlag(FLAGS_frames);
  r.clip.height = absl::GetFlag(FLAGS_height);
  r.clip.width = absl::GetFlag(FLAGS_width);
  r.clip.fps = absl::GetFlag(FLAGS_fps);
  r.dir = dir;
  return r;
}

// The flags that do not end up in the TrainerConfig, checked with it before anything loads.
void CheckOtherFlags() {
  SDPO_CHECK(absl::GetFlag(FLAGS_threads) >= 0, "--threads=", absl::GetFlag(FLAGS_threads),
             ": must be >= 0 (0: all cores)");
  SDPO_CHECK(absl::GetFlag(FLAGS_full) || absl::GetFlag(FLAGS_lora_rank) > 0,
             "--lora_rank=", absl::GetFlag(FLAGS_lora_rank), ": must be > 0");
  SDPO_CHECK(std::isfinite(absl::GetFlag(FLAGS_lora_alpha)) && absl::GetFlag(FLAGS_lora_alpha) > 0,
             "--lora_alpha=", absl::GetFlag(FLAGS_lora_alpha), ": must be a finite number > 0");
  SDPO_CHECK(absl::GetFlag(FLAGS_pairs_per_prompt) > 0,
             "--pairs_per_prompt=", absl::GetFlag(FLAGS_pairs_per_prompt), ": must be > 0");
  SDPO_CHECK(absl::GetFlag(FLAGS_eval_samples) > 0,
             "--eval_samples=", absl::GetFlag(FLAGS_eval_samples), ": must be > 0");
  SDPO_CHECK(!(absl::GetFlag(FLAGS_resume) && absl::GetFlag(FLAGS_overwrite)),
             "--resume and --overwrite exclude each other: --resume continues the run in --out, "
             "--overwrite replaces it");
}

// The validation videos' settings of a model family: a flag, or the family's default (as
// //trainers:sample).
struct ValidationDefaults {
  bool cogvideox = false;
  int frames() const {
    const int f = absl::GetFlag(FLAGS_validation_frames);
    return f != 0 ? f : cogvideox ? 49 : 81;
  }
  int width() const {
    const int w = absl::GetFlag(FLAGS_validation_width);
    return w != 0 ? w : cogvideox ? 720 : 832;
  }
  std::string sampler() const {
    const std::string s = absl::GetFlag(FLAGS_validation_sampler);
    return !s.empty() ? s : cogvideox ? "ddim" : "unipc";
  }
  double guidance() const {
    const double g = absl::GetFlag(FLAGS_validation_guidance);
    return g != -1 ? g : cogvideox ? 6.0 : 5.0;
  }
  double fps() const {
    const double f = absl::GetFlag(FLAGS_validation_fps);
    return f != 0 ? f : cogvideox ? 8.0 : 16.0;
  }
};

bool IsCogVideoX(const std::string& model_name) { return model_name != "wan21"; }

// --validation_vae_tiling for --model, checked.
std::optional<cogvideox::VaeTiling> ValidationVaeTiling() {
  return VaeTilingFlag(absl::GetFlag(FLAGS_validation_vae_tiling), "--validation_vae_tiling",
                       IsCogVideoX(absl::GetFlag(FLAGS_model)));
}

// The held-out and validation flags: they need real data and, for videos, a checkpoint folder
// with its VAE and text encoder.
void CheckValidationFlags(bool demo, const std::string& model_name) {
  const double fraction = absl::GetFlag(FLAGS_val_fraction);
  const std::string val_data = absl::GetFlag(FLAGS_val_data);
  const std::string prompts = absl::GetFlag(FLAGS_validation_prompts);
  SDPO_CHECK(fraction == 0 || val_data.empty(), "--val_fraction=", fraction,
             " and --val_data=", val_data,
             " exclude each other: hold out a fraction of --data, or give the held-out "
             "pairs");
  SDPO_CHECK(fraction == 0 || (std::isfinite(fraction) && fraction > 0 && fraction < 1),
             "--val_fraction=", fraction, ": expected a fraction of the pairs, 0 < F < 1");
  SDPO_CHECK(!demo || (fraction == 0 && val_data.empty() && prompts.empty()),
             "--val_fraction, --val_data and --validation_prompts need --data and --checkpoint; "
             "the demo evaluates on its own held-out prompts");
  if (prompts.empty()) return;
  const ValidationDefaults d{IsCogVideoX(model_name)};
  SDPO_CHECK(absl::GetFlag(FLAGS_validation_steps) >= 1,
             "--validation_steps=", absl::GetFlag(FLAGS_validation_steps), ": must be >= 1");
  SDPO_CHECK(std::isfinite(d.guidance()) && d.guidance() >= 0,
             "--validation_guidance=", d.guidance(), ": must be a finite number >= 0");
  SDPO_CHECK(std::isfinite(d.fps()) && d.fps() > 0, "--validation_fps=", d.fps(), ": must be > 0");
  if (d.cogvideox) {
    SDPO_CHECK(d.sampler() == "ddim" || d.sampler() == "dpm", "--validation_sampler=", d.sampler(),
               ": CogVideoX samples with ddim or dpm");
  } else {
    samplers::ParseFlowSolver(d.sampler());
  }
  const int frames = d.frames();
  const int height = absl::GetFlag(FLAGS_validation_height);
  const int width = d.width();
  SDPO_CHECK(frames >= 1 && (frames - 1) % kWanVaeTimeFactor == 0, "--validation_frames=", frames,
             ": the ", d.cogvideox ? "CogVideoX" : "Wan2.1",
             " VAE needs 1 + 4k frames (e.g. 81, 49, 17, 1)");
  SDPO_CHECK(height > 0 && width > 0 && height % 16 == 0 && width % 16 == 0,
             "--validation_height=", height, " --validation_width=", width,
             ": both must be positive multiples of 16 (VAE factor 8 x patch 2)");
}

// What the validation videos need, made before the DiT loads: the prompts encoded once (through
// the embedding cache; the text encoder is freed again) and the model family's renderer (its
// sampler and the checkpoint folder's VAE).
struct ValidationVideos {
  std::vector<ValidationPrompt> prompts;
  std::vector<Tensor> contexts, negatives;
  std::unique_ptr<VideoRenderer> renderer;
  ValidationVideoOptions options;
};

// Every prompt and its negative through the encoder (prompts first, then the negatives).
void EncodeValidationPrompts(umt5::PromptEncoder& encoder, const std::string& cache,
                             ValidationVideos* v) {
  std::vector<std::string> texts;
  for (const ValidationPrompt& p : v->prompts) texts.push_back(p.text);
  for (const ValidationPrompt& p : v->prompts) texts.push_back(p.negative);
  std::vector<Tensor> encoded = encoder.EncodePrompts(texts);
  const size_t n = v->prompts.size();
  v->contexts.assign(encoded.begin(), encoded.begin() + n);
  v->negatives.assign(encoded.begin() + n, encoded.end());
  std::printf("validation: %zu prompt(s) from %s (%lld encoded, %lld cached in %s)\n", n,
              absl::GetFlag(FLAGS_validation_prompts).c_str(),
              static_cast<long long>(encoder.encoded()),
              static_cast<long long>(encoder.cache_hits()), cache.c_str());
}

// Wan2.1: the folder's umT5 and VAE, flow sampling.
std::unique_ptr<VideoRenderer> PrepareWanValidation(const std::string& checkpoint,
                                                    const std::string& cache, Device device,
                                                    ValidationVideos* v) {
  SDPO_CHECK(std::filesystem::is_directory(checkpoint),
             "--validation_prompts needs --checkpoint "
             "to be the Wan2.1 checkpoint folder (with ",
             kWanVaePth, " or ", kWanVaeSafetensors,
             " and the umT5 text encoder), found --checkpoint=", checkpoint);
  const WanCheckpointFolder folder = FindWanCheckpoint(checkpoint);
  SDPO_CHECK(!folder.vae.empty(), "--validation_prompts: ", checkpoint,
             " has no VAE to decode "
             "the videos (expected ",
             kWanVaePth, " or ", kWanVaeSafetensors, ")");
  umt5::PromptEncoderOptions text =
      FolderPromptEncoderOptions(checkpoint, absl::GetFlag(FLAGS_text_encoder),
                                 absl::GetFlag(FLAGS_tokenizer), cache, "--validation_prompts");
  text.projection_inputs = TextCompute();
  EncodeValidationPrompts(*umt5::PromptEncoder::Open(text), cache, v);
  std::string why_not;
  // As //trainers:sample: the VAE decodes on the DiT's device, in f32.
  std::unique_ptr<WanVideoDecoder> decoder = WanVideoDecoder::Open(folder, device, kF32, &why_not);
  SDPO_CHECK(decoder != nullptr, "--validation_prompts: ", why_not);
  const ValidationDefaults d{false};
  samplers::FlowSampleOptions o;
  o.solver = samplers::ParseFlowSolver(d.sampler());
  o.steps = absl::GetFlag(FLAGS_validation_steps);
  o.shift = absl::GetFlag(FLAGS_validation_shift);
  o.guide_scale = d.guidance();
  return MakeWanRenderer(std::move(decoder), o);
}

// CogVideoX: the diffusers folder's T5 (at the transformer's text length and width, read from
// its config before the weights load) and VAE, DDIM or DPM on the model's schedule.
std::unique_ptr<VideoRenderer> PrepareCogVideoXValidation(const std::string& model_name,
                                                          const std::string& checkpoint,
                                                          const std::string& cache, Device device,
                                                          ValidationVideos* v) {
  const CogVideoXFolder folder = FindCogVideoXCheckpoint(checkpoint);
  SDPO_CHECK(!folder.vae.empty(), "--validation_prompts: ", checkpoint,
             " has no vae/ folder to decode the videos");
  const cogvideox::CogVideoXConfig dit = ReadTransformerConfig(folder);
  CogVideoXTextOptions text;
  text.weights = absl::GetFlag(FLAGS_text_encoder);
  text.tokenizer = absl::GetFlag(FLAGS_tokenizer);
  text.cache_dir = cache;
  text.text_dim = dit.text_embed_dim;
  text.text_len = dit.max_text_seq_length;
  text.projection_inputs = TextCompute();
  EncodeValidationPrompts(*OpenCogVideoXTextEncoder(folder, text), cache, v);
  std::string why_not;
  std::unique_ptr<CogVideoXVaeRunner> vae =
      CogVideoXVaeRunner::Open(folder, device, &why_not, ValidationVaeTiling());
  SDPO_CHECK(vae != nullptr, "--validation_prompts: ", why_not);
  const ValidationDefaults d{true};
  samplers::DdpmSampleOptions o;
  o.solver = d.sampler() == "dpm" ? samplers::DdpmSolver::kDpm : samplers::DdpmSolver::kDdim;
  o.steps = absl::GetFlag(FLAGS_validation_steps);
  o.guidance_scale = d.guidance();
  return MakeCogVideoXRenderer(std::move(vae), TrainSchedule(model_name).alphas_cumprod(), o);
}

std::optional<ValidationVideos> PrepareValidationVideos(const std::string& model_name,
                                                        const std::string& checkpoint,
                                                        const std::string& out, Device device) {
  const std::string file = absl::GetFlag(FLAGS_validation_prompts);
  if (file.empty()) return std::nullopt;
  ValidationVideos v;
  v.prompts = ReadValidationPrompts(file, absl::GetFlag(FLAGS_validation_negative_prompt));
  std::string cache = absl::GetFlag(FLAGS_text_cache);
  if (cache.empty()) cache = (std::filesystem::path(out) / "text_cache").string();
  v.renderer = IsCogVideoX(model_name)
                   ? PrepareCogVideoXValidation(model_name, checkpoint, cache, device, &v)
                   : PrepareWanValidation(checkpoint, cache, device, &v);
  v.options.out_dir = out;
  v.options.fps = ValidationDefaults{IsCogVideoX(model_name)}.fps();
  v.options.progress = absl::GetFlag(FLAGS_progress);
  return v;
}

// The command line that continues this run: the same flags plus --resume (and without
// --overwrite, which would discard what the run saved).
std::string ResumeCommand(const std::vector<std::string>& argv) {
  std::string cmd;
  bool has_resume = false;
  for (const std::string& arg : argv) {
    if (arg == "--overwrite" || arg == "--overwrite=true") continue;
    has_resume = has_resume || arg == "--resume" || arg == "--resume=true";
    const bool plain = arg.find_first_not_of(
                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                           "0123456789-_=/.,:+@%") == std::string::npos;
    absl::StrAppend(&cmd, cmd.empty() ? "" : " ", plain ? arg : "'" + arg + "'");
  }
  return has_resume ? cmd : cmd + " --resume";
}

int Main(distributed::Communicator& comm, Device device, const std::vector<std::string>& argv) {
  const std::string model_name = absl::GetFlag(FLAGS_model);
  SDPO_CHECK(model_name == "wan21" || model_name == "cogvideox-2b" || model_name == "cogvideox-5b",
             "--model=", model_name, ": expected wan21, cogvideox-2b or cogvideox-5b");
  const DType compute_dtype = ParsePrecision(absl::GetFlag(FLAGS_precision), device);
  SDPO_CHECK(device.is_cpu() || absl::GetFlag(FLAGS_zero) == 0,
             "--zero=", absl::GetFlag(FLAGS_zero), " with --device=", device.str(),
             ": ZeRO-1 keeps its shards on the CPU; use --zero=0 on GPUs (gradients are "
             "all-reduced with NCCL, docs/distributed.md)");
  CheckOtherFlags();
  CheckValidationFlags(absl::GetFlag(FLAGS_data).empty(), model_name);
  if (absl::GetFlag(FLAGS_threads) > 0) SetNumThreads(absl::GetFlag(FLAGS_threads));
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const bool scored = !absl::GetFlag(FLAGS_reward_cmd).empty();
  const bool demo = absl::GetFlag(FLAGS_data).empty() && !scored;
  const bool full = absl::GetFlag(FLAGS_full);
  const std::string lora_format_flag = absl::GetFlag(FLAGS_lora_format);
  const nn::LoraFormat lora_format =
      lora_format_flag.empty() ? nn::LoraFormat::kNative : nn::ParseLoraFormat(lora_format_flag);
  SDPO_CHECK(lora_format_flag.empty() || !full, "--lora_format=", lora_format_flag,
             " exports adapters; a --full run has none");
  const std::string out = OutDir();
  const int rounds = absl::GetFlag(FLAGS_rounds);
  SDPO_CHECK(rounds >= 1 && rounds <= absl::GetFlag(FLAGS_steps), "--rounds=", rounds,
             ": expected 1 <= rounds <= --steps (", absl::GetFlag(FLAGS_steps), ")");
  SDPO_CHECK(rounds == 1 || ((demo || scored) && !full && comm.world_size() == 1),
             "--rounds=", rounds,
             ": rounds need the demo or --reward_cmd (no --data), LoRA (no --full) and one "
             "process");
  SDPO_CHECK(!scored || (model_name == "wan21" && absl::GetFlag(FLAGS_data).empty() && !full &&
                         comm.world_size() == 1 && !absl::GetFlag(FLAGS_checkpoint).empty()),
             "--reward_cmd: needs --model=wan21 with --checkpoint=FOLDER (DiT, VAE, umT5), no "
             "--data (the rounds make the pairs), LoRA (no --full) and one process");
  SDPO_CHECK(absl::GetFlag(FLAGS_until_round) >= 0, "--until_round must be >= 0");
  std::string weights = absl::GetFlag(FLAGS_checkpoint);
  SDPO_CHECK(model_name == "wan21" || (!weights.empty() && !demo), "--model=", model_name,
             ": the embedded demo is a Wan2.1 model; CogVideoX needs --checkpoint and --data");
  if (weights.empty()) {
    SDPO_CHECK(std::filesystem::exists(kDemoBaseModelPath), "the demo base model ",
               kDemoBaseModelPath,
               " is missing; regenerate it with `bazel run -c opt "
               "//trainers:pretrain -- --out=$PWD/",
               kDemoBaseModelPath, "`");
    weights = kDemoBaseModelPath;
  }

  // --- trainer configuration: every flag is checked before anything is loaded ----------------
  TrainerConfig tc;
  tc.objective = MakeObjective(demo);
  tc.timesteps.sampling = ParseTimestepSampling(absl::GetFlag(FLAGS_timestep_sampling));
  tc.timesteps.min_timestep = tc.objective.min_timestep;
  tc.timesteps.max_timestep = tc.objective.max_timestep;
  tc.steps = absl::GetFlag(FLAGS_steps);
  tc.batch = absl::GetFlag(FLAGS_batch);
  tc.grad_accum = absl::GetFlag(FLAGS_grad_accum);
  tc.lr.kind = nn::ParseLrScheduleKind(absl::GetFlag(FLAGS_schedule));
  tc.lr.base_lr = absl::GetFlag(FLAGS_lr);
  tc.lr.warmup_steps =
      tc.lr.kind == nn::LrScheduleKind::kConstant ? 0 : absl::GetFlag(FLAGS_warmup);
  tc.lr.total_steps = tc.steps;
  tc.max_grad_norm = absl::GetFlag(FLAGS_max_grad_norm);
  tc.seed = seed;
  tc.eval_every = absl::GetFlag(FLAGS_eval_every);
  tc.save_every = absl::GetFlag(FLAGS_save_every);
  tc.max_bad_steps = absl::GetFlag(FLAGS_max_bad_steps);
  tc.out_dir = out;
  tc.progress = absl::GetFlag(FLAGS_progress);
  tc.comm = &comm;
  tc.zero_stage = absl::GetFlag(FLAGS_zero);
  tc.device = device;
  tc.compute_dtype = compute_dtype;
  tc.stop_requested = StopRequested;
  CheckTrainerConfig(tc);
  tc.description = absl::StrCat(
      "{\"model\": ", Quoted(model_name), ", \"checkpoint\": ", Quoted(weights), ", \"data\": ",
      Quoted(demo     ? "demo"
             : scored ? absl::StrCat("reward_cmd ", absl::GetFlag(FLAGS_reward_cmd))
                      : absl::GetFlag(FLAGS_data)),
      ", \"objective\": ", Quoted(DescribeObjectiveConfig(tc.objective)),
      ", \"lr\": ", tc.lr.base_lr, ", \"schedule\": ", Quoted(absl::GetFlag(FLAGS_schedule)),
      ", \"warmup\": ", tc.lr.warmup_steps, ", \"steps\": ", tc.steps, ", \"batch\": ", tc.batch,
      ", \"grad_accum\": ", tc.grad_accum, ", \"max_grad_norm\": ", tc.max_grad_norm,
      ", \"timestep_sampling\": ", Quoted(absl::GetFlag(FLAGS_timestep_sampling)), ", \"mode\": ",
      Quoted(full ? "full" : absl::StrCat("lora r", absl::GetFlag(FLAGS_lora_rank))),
      ", \"lora_alpha\": ", full ? 0.0 : absl::GetFlag(FLAGS_lora_alpha), ", \"seed\": ", seed,
      ", \"rounds\": ", absl::GetFlag(FLAGS_rounds),
      ", \"val_fraction\": ", absl::GetFlag(FLAGS_val_fraction),
      ", \"val_data\": ", Quoted(absl::GetFlag(FLAGS_val_data)), ", \"threads\": ", NumThreads(),
      ", \"device\": ", Quoted(device.is_cpu() ? "cpu" : "cuda"),
      ", \"precision\": ", Quoted(DTypeName(compute_dtype)), "}");

  // --- run folder: locked; a rerun never replaces a run unless asked to ----------------------
  bool resume = absl::GetFlag(FLAGS_resume);
  std::unique_ptr<RunDir> run_dir;
  if (comm.is_root()) {
    run_dir = RunDir::Open(out, resume                           ? RunDirMode::kResume
                                : absl::GetFlag(FLAGS_overwrite) ? RunDirMode::kOverwrite
                                                                 : RunDirMode::kFresh);
    for (const std::string& removed : run_dir->removed())
      std::printf("removed %s\n", removed.c_str());
  }
  const std::string checkpoint_path = Trainer::CheckpointPath(out);
  if (resume) {
    const std::optional<CheckpointInfo> saved = PeekCheckpoint(checkpoint_path);
    if (!saved) {
      std::printf("--resume: %s holds no checkpoint yet; starting the run from step 0\n",
                  out.c_str());
      resume = false;
    } else {
      const std::vector<std::string> changes =
          DescriptionChanges(saved->config, tc.description, {"steps", "threads", "device"});
      SDPO_CHECK(changes.empty() || absl::GetFlag(FLAGS_allow_config_change),
                 "--resume: ", checkpoint_path, " was trained with other settings (",
                 absl::StrJoin(changes, "; "),
                 "); pass --allow_config_change to continue it with the new ones, or start a new "
                 "run with --overwrite or another --out");
      for (const std::string& c : changes) {
        std::printf("warning: --allow_config_change: resuming with %s\n", c.c_str());
      }
      if (saved->step >= tc.steps) {
        std::printf(
            "the run in %s is finished: its checkpoint is at step %lld and --steps=%lld; "
            "nothing to do, nothing changed (raise --steps to train further)\n",
            out.c_str(), static_cast<long long>(saved->step), static_cast<long long>(tc.steps));
        return 0;
      }
    }
  }

  // --- validation videos: prompts encoded and the VAE loaded before the DiT ------------------
  std::optional<ValidationVideos> validation;
  if (comm.is_root()) validation = PrepareValidationVideos(model_name, weights, out, device);

  // --- model ------------------------------------------------------------------------------
  TrainModel loaded = LoadTrainModel(model_name, weights);
  models::DiffusionModel* policy = loaded.model.get();
  policy->SetRecompute(absl::GetFlag(FLAGS_recompute));
  TrainModel reference_model;
  models::DiffusionModel* reference = nullptr;
  if (full) {
    reference_model = LoadTrainModel(model_name, weights);
    reference = reference_model.model.get();
    reference->module().SetRequiresGrad(false);
  } else {
    policy->module().SetRequiresGrad(false);
    nn::LoraConfig lora;
    lora.rank = absl::GetFlag(FLAGS_lora_rank);
    lora.alpha = absl::GetFlag(FLAGS_lora_alpha);
    lora.targets = absl::GetFlag(FLAGS_lora_targets).empty() ? loaded.lora_targets
                                                             : absl::GetFlag(FLAGS_lora_targets);
    nn::SetInitSeed(seed + 1);
    std::vector<std::string> adapted = nn::AttachLora(policy->module(), lora);
    std::printf("LoRA rank %lld alpha %g on %zu linear layers\n", static_cast<long long>(lora.rank),
                lora.alpha, adapted.size());
  }
  // On the device before anything runs (the demo's pairs are generated there too).
  PlaceModels(*policy, reference, device, compute_dtype);
  if (!device.is_cpu()) {
    std::printf("device: %s, %s compute, f32 master weights\n", device.str().c_str(),
                DTypeName(compute_dtype));
  }

  // --- data ---------------------------------------------------------------------------------
  demo::DemoWorld world;
  std::unique_ptr<data::PairDataset> dataset;
  std::unique_ptr<Evaluator> evaluator;
  std::unique_ptr<data::PreferenceDataset> all_pairs;  // --val_fraction: before the split
  std::unique_ptr<data::PairDataset> heldout;
  demo::PairBuffer buffer;  // --rounds > 1 or --reward_cmd: every round's pairs
  ScoredRoundSetup scoring;
  const std::filesystem::path rounds_dir = std::filesystem::path(out) / "rounds";
  if (scored) {
    scoring = OpenScoredRounds(weights, loaded, out, device);
    std::filesystem::create_directories(rounds_dir);
    const std::string file = (rounds_dir / "round0_pairs.safetensors").string();
    std::vector<data::PreferencePair> pairs;
    demo::Generator base{0, demo::GeneratorId(0), ""};
    if (std::filesystem::exists(file)) {
      pairs = demo::LoadRoundPairs(file, &base);
    } else {
      nn::LoraDisabledScope base_model(policy->module());
      ScoredRoundStats stats;
      pairs = ScoredRound(
          *policy, *scoring.decoder, *scoring.encoder, *scoring.scorer,
          RoundRequest(scoring, (rounds_dir / "round0").string(), seed, tc.progress), &stats);
      std::printf(
          "round 0: %lld videos of the base model scored, %lld pairs, mean score "
          "chosen %.4g rejected %.4g\n",
          static_cast<long long>(stats.videos), static_cast<long long>(stats.pairs),
          stats.mean_score_winner, stats.mean_score_loser);
      demo::SaveRoundPairs(file, base, pairs);
    }
    SDPO_CHECK(!pairs.empty(),
               "--reward_cmd: round 0 gave no pair (every two videos of a prompt "
               "scored the same)");
    buffer.AddRound(base, pairs);
    dataset = std::make_unique<data::InMemoryPairDataset>(std::move(pairs));
  } else if (demo) {
    DemoPairStats stats;
    std::vector<data::PreferencePair> pairs;
    const std::string cache = absl::GetFlag(FLAGS_demo_pairs);
    if (!cache.empty() && std::filesystem::exists(cache)) {
      demo::Generator g;
      pairs = demo::LoadRoundPairs(cache, &g);
      SDPO_CHECK(g.round == 0 && !pairs.empty(), "--demo_pairs=", cache,
                 ": expected the base model's pairs (round 0), found round ", g.round, " with ",
                 pairs.size(), " pairs");
      std::printf("demo: %zu pairs from %s\n", pairs.size(), cache.c_str());
    } else {
      std::printf(
          "demo: generating %d pairs per prompt for %zu training prompts with the base "
          "model ...\n",
          absl::GetFlag(FLAGS_pairs_per_prompt), world.train_prompts().size());
      {
        nn::LoraDisabledScope base(policy->module());
        pairs = GenerateDemoPairs(full ? *reference : *policy, world,
                                  absl::GetFlag(FLAGS_pairs_per_prompt), 0.02, seed, &stats);
      }
      std::printf("demo: %lld pairs, mean reward winner %.3f loser %.3f (gap %.3f)\n",
                  static_cast<long long>(stats.pairs), stats.mean_reward_winner,
                  stats.mean_reward_loser, stats.mean_gap);
      if (!cache.empty()) demo::SaveRoundPairs(cache, {0, demo::GeneratorId(0), ""}, pairs);
    }
    if (rounds > 1) {
      if (!absl::GetFlag(FLAGS_resume)) {  // a fresh run: no pairs of an earlier run's rounds
        std::filesystem::remove_all(std::filesystem::path(out) / "rounds");
        std::filesystem::remove(std::filesystem::path(out) / "rounds.jsonl");
      }
      std::filesystem::create_directories(std::filesystem::path(out) / "rounds");
      demo::Generator base{0, demo::GeneratorId(0), ""};
      demo::SaveRoundPairs(
          (std::filesystem::path(out) / "rounds" / "round0_pairs.safetensors").string(), base,
          pairs);
      buffer.AddRound(base, pairs);
    }
    dataset = std::make_unique<data::InMemoryPairDataset>(std::move(pairs));
    evaluator = std::make_unique<DemoEvaluator>(world, absl::GetFlag(FLAGS_eval_samples), seed);
  } else {
    data::DatasetSpec spec;
    spec.channels = loaded.latent_channels;
    spec.text_dim = loaded.text_dim;
    spec.max_text_len = loaded.max_text_len;
    spec.patch = loaded.latent_patch;
    dataset = data::PreferenceDataset::Open(absl::GetFlag(FLAGS_data), spec);
    std::printf("data: %lld pairs from %s\n", static_cast<long long>(dataset->size()),
                absl::GetFlag(FLAGS_data).c_str());
    const double val_fraction = absl::GetFlag(FLAGS_val_fraction);
    if (val_fraction > 0) {
      all_pairs.reset(static_cast<data::PreferenceDataset*>(dataset.release()));
      const PairSplit split = SplitPairs(all_pairs->size(), val_fraction, seed);
      if (comm.is_root()) {
        std::vector<std::string> ids;
        for (int64_t i = 0; i < all_pairs->size(); ++i) ids.push_back(all_pairs->id(i));
        RecordOrCheckSplit((std::filesystem::path(out) / "val_split.json").string(), split,
                           val_fraction, seed, ids, resume);
      }
      dataset = std::make_unique<PairSubset>(*all_pairs, split.train);
      heldout = std::make_unique<PairSubset>(*all_pairs, split.heldout);
      std::printf(
          "held out: %zu of the pairs (--val_fraction=%g, --seed=%llu; val_split.json), "
          "training on %zu\n",
          split.heldout.size(), val_fraction, static_cast<unsigned long long>(seed),
          split.train.size());
    } else if (!absl::GetFlag(FLAGS_val_data).empty()) {
      heldout = data::PreferenceDataset::Open(absl::GetFlag(FLAGS_val_data), spec);
      std::printf("held out: %lld pairs from %s\n", static_cast<long long>(heldout->size()),
                  absl::GetFlag(FLAGS_val_data).c_str());
    }
    std::vector<std::unique_ptr<Evaluator>> evaluators;
    if (heldout != nullptr) {
      evaluators.push_back(std::make_unique<HeldOutEvaluator>(*heldout, *loaded.schedule, reference,
                                                              tc.objective, tc.timesteps, tc.target,
                                                              tc.batch, seed));
    }
    if (validation.has_value() && comm.is_root()) {
      const ValidationDefaults d{IsCogVideoX(model_name)};
      validation->options.latent_shape =
          WanLatentShape(loaded.latent_channels, d.frames(), absl::GetFlag(FLAGS_validation_height),
                         d.width(), loaded.latent_patch[1]);
      for (size_t k = 0; k < validation->prompts.size(); ++k) {
        for (const Tensor* t : {&validation->contexts[k], &validation->negatives[k]}) {
          SDPO_CHECK(t->size(0) <= loaded.max_text_len, "--validation_prompts: prompt ", k, " (\"",
                     t == &validation->contexts[k] ? validation->prompts[k].text
                                                   : validation->prompts[k].negative,
                     "\") encodes to ", t->size(0), " tokens; the model takes at most ",
                     loaded.max_text_len);
        }
      }
      evaluators.push_back(std::make_unique<ValidationVideoEvaluator>(
          std::move(validation->prompts), std::move(validation->contexts),
          std::move(validation->negatives), std::move(validation->renderer),
          std::move(validation->options)));
    }
    if (!evaluators.empty()) evaluator = std::make_unique<EvaluatorList>(std::move(evaluators));
  }

  const int64_t trainable = policy->module().NumParameters(/*trainable_only=*/true);
  const int64_t total = policy->module().NumParameters();
  const double mib = 1.0 / (1024.0 * 1024.0);
  const double reference_bytes = compute_dtype == kBF16 ? 2 : 4;
  std::printf(
      "memory plan (%s): weights %.1f MiB (f32), trainable %lld params: master %.1f MiB, "
      "AdamW moments %.1f MiB, gradients %.1f MiB%s\n",
      device.str().c_str(), total * 4 * mib, static_cast<long long>(trainable), trainable * 4 * mib,
      trainable * 8 * mib, trainable * 4 * mib,
      full ? absl::StrFormat(", reference copy %.1f MiB (%s)", total * reference_bytes * mib,
                             DTypeName(compute_dtype))
                 .c_str()
           : "");
  if (comm.world_size() > 1) {
    const std::string optimizer =
        tc.zero_stage == 1 ? absl::StrFormat("ZeRO-1 (master + moments %.1f MiB per rank)",
                                             trainable * 12 * mib / comm.world_size())
                           : "replicated optimizer";
    std::printf(
        "data parallel: %d ranks (%s) x batch %lld = global batch %lld pairs, %s, "
        "collective timeout %g s, buckets %.0f MiB\n",
        comm.world_size(), comm.name().c_str(), static_cast<long long>(tc.batch),
        static_cast<long long>(tc.batch * comm.world_size()), optimizer.c_str(),
        comm.options().timeout_s, comm.options().bucket_bytes * mib);
  }
  std::printf("objective: %s\noutput: %s\n", DescribeObjectiveConfig(tc.objective).c_str(),
              out.c_str());

  EvalResult after;
  int64_t final_step = 0;
  if (rounds == 1 && !scored) {
    Trainer trainer(tc, *loaded.schedule, *policy, reference, *dataset, evaluator.get());
    if (resume) {
      trainer.Resume(checkpoint_path);
      std::printf("resumed at step %lld\n", static_cast<long long>(trainer.step()));
    }
    after = trainer.Run();
    if (trainer.interrupted()) {
      std::printf(
          "\nstopped by %s at step %lld of %lld: checkpoint %s written. Continue with:\n  "
          "%s\n",
          StopSignal() == SIGINT ? "SIGINT" : "SIGTERM", static_cast<long long>(trainer.step()),
          static_cast<long long>(tc.steps), checkpoint_path.c_str(), ResumeCommand(argv).c_str());
      return kExitInterrupted;
    }
    final_step = trainer.step();
  } else {
    // Rounds: every round boundary goes through the checkpoint file, so an uninterrupted run and
    // one resumed at any step (a boundary included) train identically.
    const std::string& checkpoint = checkpoint_path;
    const int64_t total = tc.steps;
    const int64_t resume_step = resume ? PeekCheckpoint(checkpoint)->step : 0;
    const int first = demo::RoundOfStep(total, rounds, resume_step);
    const int until = absl::GetFlag(FLAGS_until_round);
    const int last = until > 0 ? std::min(until, rounds) : rounds;
    int64_t step = resume_step;
    for (int r = first; r < last; ++r) {
      while (buffer.rounds() <= r) {
        const int q = buffer.rounds();
        const std::string file =
            (rounds_dir / absl::StrCat("round", q, "_pairs.safetensors")).string();
        if (std::filesystem::exists(file)) {
          demo::Generator g;
          std::vector<data::PreferencePair> loaded_pairs = demo::LoadRoundPairs(file, &g);
          buffer.AddRound(g, std::move(loaded_pairs));
          continue;
        }
        SDPO_CHECK(q == r, "resume: ", file, " is missing but round ", r, " is under way");
        // The generator is the policy at the end of round q - 1 (the checkpoint's weights).
        LoadTrainable(*policy, ReadTrainable(checkpoint, "param/"), checkpoint);
        demo::Generator g{
            q, demo::GeneratorId(q),
            (rounds_dir / absl::StrCat("round", q, "_generator.safetensors")).string()};
        SaveTrainable(*policy, g.adapters);
        std::vector<data::PreferencePair> new_pairs;
        if (scored) {
          ScoredRoundStats round_stats;
          new_pairs =
              ScoredRound(*policy, *scoring.decoder, *scoring.encoder, *scoring.scorer,
                          RoundRequest(scoring, (rounds_dir / absl::StrCat("round", q)).string(),
                                       RoundSeed(seed, q), tc.progress),
                          &round_stats);
          std::printf(
              "round %d: %lld videos of the policy at step %lld scored, %lld pairs, mean score "
              "chosen %.4g rejected %.4g\n",
              q, static_cast<long long>(round_stats.videos), static_cast<long long>(step),
              static_cast<long long>(round_stats.pairs), round_stats.mean_score_winner,
              round_stats.mean_score_loser);
        } else {
          DemoPairStats round_stats;
          new_pairs = GenerateDemoPairs(*policy, world, absl::GetFlag(FLAGS_pairs_per_prompt), 0.02,
                                        RoundSeed(seed, q), &round_stats);
          std::printf(
              "round %d: %lld new pairs from the policy at step %lld, mean reward winner "
              "%.3f loser %.3f (gap %.3f)\n",
              q, static_cast<long long>(round_stats.pairs), static_cast<long long>(step),
              round_stats.mean_reward_winner, round_stats.mean_reward_loser, round_stats.mean_gap);
        }
        demo::SaveRoundPairs(file, g, new_pairs);
        buffer.AddRound(g, std::move(new_pairs));
      }
      data::InMemoryPairDataset round_data(buffer.pairs());
      TrainerConfig rc = tc;
      rc.steps = demo::RoundEndStep(total, rounds, r);
      for (const demo::Generator& g : buffer.generators()) {
        if (!g.adapters.empty()) rc.generators[g.id] = ReadTrainable(g.adapters, "");
      }
      Trainer trainer(rc, *loaded.schedule, *policy, reference, round_data, evaluator.get());
      if (step > 0) {
        const int64_t round_start = r == 0 ? 0 : demo::RoundEndStep(total, rounds, r - 1);
        trainer.Resume(checkpoint, /*new_data=*/step == round_start);
        std::printf("round %d: %lld pairs in the buffer, resumed at step %lld\n", r,
                    static_cast<long long>(round_data.size()),
                    static_cast<long long>(trainer.step()));
      }
      after = trainer.Run();
      step = final_step = trainer.step();
      if (trainer.interrupted()) {
        std::printf(
            "\nstopped by %s at step %lld of %lld (round %d of %d): checkpoint %s written. "
            "Continue with:\n  %s\n",
            StopSignal() == SIGINT ? "SIGINT" : "SIGTERM", static_cast<long long>(step),
            static_cast<long long>(total), r, rounds, checkpoint.c_str(),
            ResumeCommand(argv).c_str());
        return kExitInterrupted;
      }
      std::ofstream log(std::filesystem::path(out) / "rounds.jsonl", std::ios::app);
      std::string evals;
      for (const auto& [k, v] : after.values) {
        absl::StrAppend(&evals, evals.empty() ? "" : ", ", Quoted(k), ": ",
                        absl::StrFormat("%.9g", v));
      }
      log << absl::StrFormat(
          "{\"round\": %d, \"end_step\": %d, \"buffer_pairs\": %d, "
          "\"round_pairs\": %d, \"eval\": {%s}}\n",
          r, step, round_data.size(), buffer.RoundSize(r), evals);
    }
  }
  std::printf("done: %lld steps; report: %s\n", static_cast<long long>(final_step),
              (std::filesystem::path(out) / "report.md").c_str());
  if (!after.values.empty()) {
    for (const auto& [k, v] : after.values) std::printf("  %-22s %.4f\n", k.c_str(), v);
  }
  if (lora_format != nn::LoraFormat::kNative && comm.is_root()) {
    const std::string name =
        lora_format == nn::LoraFormat::kPeft
            ? "adapters_peft"
            : absl::StrCat("adapters_", nn::LoraFormatName(lora_format), ".safetensors");
    const std::string dst = (std::filesystem::path(out) / name).string();
    for (const std::string& f :
         WriteLoraAs(nn::LoraStateDict(policy->module()), model_name, lora_format, dst)) {
      std::printf("adapters for other tools (%s): %s\n", nn::LoraFormatName(lora_format),
                  f.c_str());
    }
  }
  return 0;
}

}  // namespace
}  // namespace sdpo::trainers

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv, "preference fine-tuning of video diffusion transformers");
  // Under mpirun (detected from OpenMPI's environment) this process is one data-parallel rank;
  // otherwise the world is this process alone and MPI is never initialised.
  // The device's communicator: MPI (or none) for the CPU; for a GPU, NCCL under mpirun and a
  // world of one on that GPU otherwise (no NCCL needed).
  std::unique_ptr<sdpo::distributed::Communicator> comm;
  sdpo::Device device;
  try {
    device = sdpo::trainers::ParseDevice(absl::GetFlag(FLAGS_device));
    sdpo::trainers::TextCompute();  // a bad --text_compute fails before anything loads
    sdpo::trainers::ValidationVaeTiling();
    sdpo::distributed::CommOptions options;
    options.timeout_s = absl::GetFlag(FLAGS_collective_timeout_s);
    options.bucket_bytes = static_cast<int64_t>(absl::GetFlag(FLAGS_bucket_mb) * (1 << 20));
    if (device.is_cpu()) {
      comm = sdpo::distributed::MakeCommunicator(options);
    } else if (sdpo::distributed::LaunchedByMpirun()) {
      comm = sdpo::distributed::MakeCommunicatorFor(device, options);
    } else {
      comm = std::make_unique<sdpo::distributed::LocalCommunicator>(device);
      comm->set_options(options);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sdpo: error: %s\n", e.what());
    return 1;
  }
  // Only rank 0 prints; the others keep stderr for warnings and errors.
  if (!comm->is_root() && std::freopen("/dev/null", "w", stdout) == nullptr) return 1;
  try {
    sdpo::trainers::InstallStopHandlers();
    return sdpo::trainers::Main(*comm, device, std::vector<std::string>(argv, argv + argc));
  } catch (const std::exception& e) {
    if (comm->world_size() > 1) {
      std::fprintf(stderr, "\nsdpo: error (rank %d of %d): %s\n", comm->rank(), comm->world_size(),
                   e.what());
      // Other ranks may be waiting in a collective: end the whole job.
      comm->Abort(1);
    }
    std::fprintf(stderr, "\nsdpo: error: %s\n", e.what());
    return 1;
  }
}
