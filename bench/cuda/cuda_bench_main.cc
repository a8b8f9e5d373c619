// cuda_bench [--json FILE] [--only SUBSTRING]: the CUDA micro-benchmarks (cuda_bench.cc).
#include "absl/flags/flag.h"
#include "bench/cuda/cuda_bench.h"
#include "io/command_line.h"

ABSL_FLAG(std::string, json, "", "also write the JSON lines to this file");
ABSL_FLAG(std::string, only, "", "run only the benchmarks whose name contains this");

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv, "the CUDA micro-benchmarks");
  return RunCudaBench({absl::GetFlag(FLAGS_json), absl::GetFlag(FLAGS_only)});
}
