// cuda_check [gtest flags]          runs the CUDA parity tests
// cuda_check bench [--json FILE] [--only SUBSTRING]   the CUDA micro-benchmarks
// cuda_check wan_step [...]          one SDPO step of Wan2.1-1.3B (bench/cuda/wan_step_cli.cc)
// cuda_check nccl                    the NCCL communicator on one GPU (tools/gpu/nccl_check.h)
// cuda_check make_data [...]         full-scale random checkpoint and data
// (tools/data/full_scale.h) cuda_check vae [--mode=decode --frames=81 --height=480 --width=832
// --dtype=bf16 --json FILE]
//                                    the Wan2.1 VAE on GPU 0 (bench/wan_vae_bench_lib.h)
// cuda_check cogvideox_vae [--latent_frames=13 --height=480 --width=720 --dtype=bf16
//                           --json FILE]
//                                    the CogVideoX-2B VAE decode on GPU 0 (cogvideox_vae_check.h)
// The flags of bench, wan_step, vae and nccl are defined here (one flag namespace per binary) and
// parsed with io/command_line.h after the command word; make_data parses its own arguments.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "bench/cuda/cuda_bench.h"
#include "bench/wan_vae_bench_lib.h"
#include "gtest/gtest.h"
#include "io/command_line.h"
#include "tools/data/full_scale.h"
#include "tools/gpu/cogvideox_vae_check.h"
#include "tools/gpu/nccl_check.h"

// bench and wan_step
ABSL_FLAG(std::string, json, "", "bench: write the JSON lines to FILE; wan_step: append to it");
// bench
ABSL_FLAG(std::string, only, "", "bench: run only the benchmarks whose name contains this");
// wan_step
ABSL_FLAG(int64_t, f, 6, "wan_step: latent frames");
ABSL_FLAG(int64_t, h, 60, "wan_step: latent height");
ABSL_FLAG(int64_t, w, 104, "wan_step: latent width");
ABSL_FLAG(int, steps, 5, "wan_step: timed steps");
ABSL_FLAG(int, warmup, 2, "wan_step: warm-up steps");
ABSL_FLAG(double, budget_s, 100, "wan_step: seconds the whole run should fit in (<= 0: no cut)");
ABSL_FLAG(int64_t, pairs, 1, "wan_step: preference pairs (2 samples each)");
ABSL_FLAG(int64_t, rank, 64, "wan_step: LoRA rank (with --lora)");
ABSL_FLAG(std::string, config, "1.3b", "wan_step: Wan2.1 preset");
ABSL_FLAG(std::string, label, "", "wan_step: the JSON line's label (default: mode and size)");
ABSL_FLAG(bool, recompute, false, "wan_step: per-block activation recompute");
ABSL_FLAG(bool, lora, false, "wan_step: LoRA on attention and FFN (default: full fine-tuning)");
ABSL_FLAG(bool, rope_f64, false, "wan_step: RoPE tables in f64");
ABSL_FLAG(bool, profile, false, "wan_step: one extra step under the kernel profiler");
// vae (random weights with the released shapes)
ABSL_FLAG(std::string, mode, "decode", "vae: decode, encode or both");
ABSL_FLAG(int64_t, frames, 81, "vae: video frames (1 + 4k)");
ABSL_FLAG(int64_t, height, 480, "vae: video height");
ABSL_FLAG(int64_t, width, 832, "vae: video width");
ABSL_FLAG(std::string, dtype, "bf16", "vae, cogvideox_vae: f32 or bf16");
// cogvideox_vae (also --height, --width: the video's, --dtype and --json)
ABSL_FLAG(int64_t, latent_frames, 13, "cogvideox_vae: latent frames to decode");
ABSL_FLAG(std::string, tiling, "off",
          "cogvideox_vae: diffusers' enable_tiling(): off | on (240x360 every 200x288) | "
          "HxW:SHxSW");

namespace {

constexpr char kUsage[] =
    "[gtest flags] | bench [--json FILE] [--only S] | wan_step [flags] | vae [flags] |\n"
    "cogvideox_vae [flags] | nccl | make_data\n"
    "The CUDA parity tests, micro-benchmarks, Wan2.1 step, the VAE benchmarks and NCCL check.";

WanStepCliOptions WanStepFromFlags() {
  WanStepCliOptions o;
  o.step.frames = absl::GetFlag(FLAGS_f);
  o.step.height = absl::GetFlag(FLAGS_h);
  o.step.width = absl::GetFlag(FLAGS_w);
  o.step.steps = absl::GetFlag(FLAGS_steps);
  o.step.warmup = absl::GetFlag(FLAGS_warmup);
  o.step.budget_s = absl::GetFlag(FLAGS_budget_s);
  o.step.pairs = absl::GetFlag(FLAGS_pairs);
  o.step.lora_rank = absl::GetFlag(FLAGS_rank);
  o.step.recompute = absl::GetFlag(FLAGS_recompute);
  o.step.lora = absl::GetFlag(FLAGS_lora);
  o.step.rope_f64 = absl::GetFlag(FLAGS_rope_f64);
  o.step.profile = absl::GetFlag(FLAGS_profile);
  o.preset = absl::GetFlag(FLAGS_config);
  o.json = absl::GetFlag(FLAGS_json);
  o.label = absl::GetFlag(FLAGS_label);
  return o;
}

sdpo::DType VaeDtypeFlag() {
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  SDPO_CHECK(dtype == "f32" || dtype == "bf16", "--dtype must be f32 or bf16, got ", dtype);
  return dtype == "bf16" ? sdpo::kBF16 : sdpo::kF32;
}

// A benchmark's JSON line on stdout, appended to --json when given.
int PrintJsonLine(const std::string& line) {
  std::printf("%s\n", line.c_str());
  if (!absl::GetFlag(FLAGS_json).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_json), std::ios::app) << line << "\n";
  }
  return 0;
}

int RunVae() {
  sdpo::bench::WanVaeBenchOptions o;
  o.mode = absl::GetFlag(FLAGS_mode);
  o.frames = absl::GetFlag(FLAGS_frames);
  o.height = absl::GetFlag(FLAGS_height);
  o.width = absl::GetFlag(FLAGS_width);
  o.dtype = VaeDtypeFlag();
  o.device = sdpo::Device::CUDA(0);
  return PrintJsonLine(sdpo::bench::RunWanVaeBench(o));
}

int RunCogVideoXVae() {
  sdpo::tools::CogVideoXVaeCheckOptions o;
  o.latent_frames = absl::GetFlag(FLAGS_latent_frames);
  o.height = absl::GetFlag(FLAGS_height);
  o.width = absl::GetFlag(FLAGS_width);
  o.dtype = VaeDtypeFlag();
  o.tiling = sdpo::cogvideox::ParseVaeTiling(absl::GetFlag(FLAGS_tiling), "--tiling");
  return PrintJsonLine(sdpo::tools::RunCogVideoXVaeDecode(o));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "make_data") return sdpo::tools::MakeFullScaleMain(argc - 1, argv + 1);
  if (command == "bench" || command == "wan_step" || command == "vae" ||
      command == "cogvideox_vae" || command == "nccl") {
    // The command word stands for the program name.
    sdpo::ParseCommandLine(argc - 1, argv + 1, kUsage);
    if (command == "bench") {
      return RunCudaBench({absl::GetFlag(FLAGS_json), absl::GetFlag(FLAGS_only)});
    }
    if (command == "wan_step") return RunWanStepBench(WanStepFromFlags());
    if (command == "vae") {
      return sdpo::RunReportingErrors("cuda_check vae", [] { return RunVae(); });
    }
    if (command == "cogvideox_vae") {
      return sdpo::RunReportingErrors("cuda_check cogvideox_vae", [] { return RunCogVideoXVae(); });
    }
    return RunNcclCheck();
  }
  ::testing::InitGoogleTest(&argc, argv);
  sdpo::ParseCommandLine(argc, argv, kUsage);  // what GoogleTest left
  return RUN_ALL_TESTS();
}
