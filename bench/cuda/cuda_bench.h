// The CUDA micro-benchmarks (cuda_bench.cc) and the Wan2.1 step benchmark (wan_step_cli.cc); the
// programs that run them (cuda_bench_main.cc, tools/gpu/cuda_check_main.cc) own the flags.
#pragma once

#include <string>

#include "bench/cuda/wan_step.h"

struct CudaBenchOptions {
  std::string json;  // also write the JSON lines to this file
  std::string only;  // run only the benchmarks whose name contains this
};
int RunCudaBench(const CudaBenchOptions& options);

// `cuda_check wan_step`: one SDPO step of Wan2.1 on cuda:0.
struct WanStepCliOptions {
  sdpo::bench::WanStepOptions step;  // its device is set to cuda:0
  std::string preset = "1.3b";       // WanConfig::Preset
  std::string json;                  // the JSON line is appended to this file too
  std::string label;                 // default: mode and latent size
};
int RunWanStepBench(WanStepCliOptions options);
