// cuda_check [gtest flags]          runs the CUDA parity tests
// cuda_check bench [--json FILE] [--only SUBSTRING]   the CUDA micro-benchmarks
// cuda_check wan_step [...]          one SDPO step of Wan2.1-1.3B (bench/cuda/wan_step_cli.cc)
// cuda_check nccl                    the NCCL communicator on one GPU (tools/gpu/nccl_check.h)
// cuda_check make_data [...]         full-scale random checkpoint and data (tools/data/full_scale.h)
// The flags of bench, wan_step and nccl are defined here (one flag namespace per binary) and
// parsed with io/command_line.h after the command word; make_data parses its own arguments.
#include <cstdint>
#include <string>

#include "absl/flags/flag.h"
#include "bench/cuda/cuda_bench.h"
#include "gtest/gtest.h"
#include "io/command_line.h"
#include "tools/data/full_scale.h"
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

namespace {

constexpr char kUsage[] =
    "[gtest flags] | bench [--json FILE] [--only S] | wan_step [flags] | nccl | make_data\n"
    "The CUDA parity tests, micro-benchmarks, Wan2.1 step benchmark and NCCL check.";

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

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "make_data") return sdpo::tools::MakeFullScaleMain(argc - 1, argv + 1);
  if (command == "bench" || command == "wan_step" || command == "nccl") {
    // The command word stands for the program name.
    sdpo::ParseCommandLine(argc - 1, argv + 1, kUsage);
    if (command == "bench") {
      return RunCudaBench({absl::GetFlag(FLAGS_json), absl::GetFlag(FLAGS_only)});
    }
    if (command == "wan_step") return RunWanStepBench(WanStepFromFlags());
    return RunNcclCheck();
  }
  ::testing::InitGoogleTest(&argc, argv);
  sdpo::ParseCommandLine(argc, argv, kUsage);  // what GoogleTest left
  return RUN_ALL_TESTS();
}
