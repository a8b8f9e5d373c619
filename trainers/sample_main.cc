// //trainers:sample — generate latent videos from a Wan2.1 checkpoint (optionally with trained
// LoRA adapters), Euler or UniPC, with classifier-free guidance; writes the latents as
// safetensors and, for the demo world's prompts, GIF/PNG renderings and their rewards.
//
//   bazel run -c opt //trainers:sample -- --lora=$PWD/runs/sdpo-seed0/adapters.safetensors \
//       --prompts="a red blob moving right slow,a blue blob moving up fast" --out=/tmp/samples
#include <cstdio>
#include <filesystem>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "models/wan21/checkpoint.h"
#include "nn/checkpoint_io.h"
#include "nn/lora.h"
#include "tensor/thread_pool.h"
#include "trainers/demo/images.h"
#include "trainers/demo_setup.h"

ABSL_FLAG(std::string, checkpoint, "", "Wan2.1 safetensors (empty: the demo base model)");
ABSL_FLAG(std::string, lora, "", "adapter file written by //trainers:sdpo (adapters.safetensors)");
ABSL_FLAG(std::string, prompts, "", "comma-separated demo prompts (empty: the held-out prompts)");
ABSL_FLAG(std::string, contexts, "",
          "safetensors of text embeddings [L, D] named context_0, context_1, ... (real models)");
ABSL_FLAG(std::string, null_context, "", "key in --contexts of the negative prompt (CFG)");
ABSL_FLAG(std::vector<std::string>, shape, {}, "latent C,F,H,W for --contexts (real models)");
ABSL_FLAG(int, samples, 2, "samples per prompt");
ABSL_FLAG(uint64_t, seed, 0, "noise seed");
ABSL_FLAG(std::string, solver, "euler", "euler | unipc");
ABSL_FLAG(int, steps, 16, "sampling steps");
ABSL_FLAG(double, shift, 5.0, "flow shift of the sigma grid");
ABSL_FLAG(double, guide_scale, 1.0, "classifier-free guidance scale (1: conditional only)");
ABSL_FLAG(std::string, out, "samples", "output directory");
ABSL_FLAG(int, threads, 0, "CPU threads (0: all)");

namespace sdpo::trainers {
namespace {

int Main() {
  if (absl::GetFlag(FLAGS_threads) > 0) SetNumThreads(absl::GetFlag(FLAGS_threads));
  std::string weights = absl::GetFlag(FLAGS_checkpoint);
  const bool demo_model = weights.empty();
  if (demo_model) weights = kDemoBaseModelPath;
  auto model = wan21::LoadModel(weights);
  if (!absl::GetFlag(FLAGS_lora).empty()) nn::LoadLora(*model, absl::GetFlag(FLAGS_lora));
  samplers::FlowSampleOptions opt;
  opt.solver = samplers::ParseFlowSolver(absl::GetFlag(FLAGS_solver));
  opt.steps = absl::GetFlag(FLAGS_steps);
  opt.shift = absl::GetFlag(FLAGS_shift);
  opt.guide_scale = absl::GetFlag(FLAGS_guide_scale);
  std::string out = absl::GetFlag(FLAGS_out);
  std::filesystem::create_directories(out);

  std::vector<Tensor> noise, contexts, nulls;
  std::vector<std::string> names;
  demo::DemoWorld world;
  std::vector<demo::DemoPrompt> prompts;
  if (absl::GetFlag(FLAGS_contexts).empty()) {
    if (absl::GetFlag(FLAGS_prompts).empty()) {
      prompts = world.heldout_prompts();
    } else {
      for (absl::string_view p : absl::StrSplit(absl::GetFlag(FLAGS_prompts), ',')) {
        prompts.push_back(world.Find(std::string(p)));
      }
    }
    std::vector<demo::DemoPrompt> expanded;
    std::vector<uint64_t> seeds;
    for (const auto& p : prompts) {
      for (int k = 0; k < absl::GetFlag(FLAGS_samples); ++k) {
        expanded.push_back(p);
        seeds.push_back(absl::GetFlag(FLAGS_seed) * 1000003ull + seeds.size());
      }
    }
    SDPO_CHECK(opt.guide_scale == 1.0, "--guide_scale: the demo model was trained without prompt "
               "dropout, so it has no unconditional branch; use 1");
    std::vector<Tensor> samples = SampleDemo(*model, world, expanded, seeds, opt);
    nn::TensorMap tensors;
    for (size_t i = 0; i < samples.size(); ++i) {
      tensors[absl::StrCat("sample_", i)] = samples[i];
      std::printf("%2zu  reward %.3f  %s\n", i, world.Reward(expanded[i], samples[i]),
                  expanded[i].text.c_str());
    }
    nn::SaveSafetensors((std::filesystem::path(out) / "samples.safetensors").string(), tensors);
    demo::WriteGif((std::filesystem::path(out) / "samples.gif").string(), samples);
    demo::WritePng((std::filesystem::path(out) / "samples.png").string(), samples);
    std::printf("wrote %s/samples.{safetensors,gif,png}\n", out.c_str());
    return 0;
  }
  // Real model: pre-encoded text embeddings and an explicit latent shape.
  std::vector<std::string> dims = absl::GetFlag(FLAGS_shape);
  SDPO_CHECK(dims.size() == 4, "--shape=C,F,H,W is required with --contexts");
  Shape shape;
  for (const std::string& d : dims) shape.push_back(std::stoll(d));
  std::map<std::string, std::string> meta;
  nn::TensorMap ctx = nn::ReadSafetensors(absl::GetFlag(FLAGS_contexts), &meta);
  Tensor null_ctx;
  if (!absl::GetFlag(FLAGS_null_context).empty()) {
    auto it = ctx.find(absl::GetFlag(FLAGS_null_context));
    SDPO_CHECK(it != ctx.end(), "--null_context: no key '", absl::GetFlag(FLAGS_null_context),
               "' in ", absl::GetFlag(FLAGS_contexts));
    null_ctx = it->second;
  }
  SDPO_CHECK(opt.guide_scale == 1.0 || null_ctx.defined(),
             "--guide_scale != 1 needs --null_context (the negative prompt's embedding)");
  for (int i = 0;; ++i) {
    auto it = ctx.find(absl::StrCat("context_", i));
    if (it == ctx.end()) break;
    for (int k = 0; k < absl::GetFlag(FLAGS_samples); ++k) {
      noise.push_back(ops::RandomNormal(shape, absl::GetFlag(FLAGS_seed), noise.size() * NumElements(shape)));
      contexts.push_back(it->second);
      if (null_ctx.defined()) nulls.push_back(null_ctx);
    }
  }
  SDPO_CHECK(!contexts.empty(), absl::GetFlag(FLAGS_contexts), " has no context_0");
  std::vector<Tensor> samples = samplers::SampleFlow(*model, noise, contexts, nulls, opt);
  nn::TensorMap tensors;
  for (size_t i = 0; i < samples.size(); ++i) tensors[absl::StrCat("sample_", i)] = samples[i];
  nn::SaveSafetensors((std::filesystem::path(out) / "samples.safetensors").string(), tensors);
  std::printf("wrote %zu latents to %s/samples.safetensors\n", samples.size(), out.c_str());
  return 0;
}

}  // namespace
}  // namespace sdpo::trainers

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  try {
    return sdpo::trainers::Main();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sample: error: %s\n", e.what());
    return 1;
  }
}
