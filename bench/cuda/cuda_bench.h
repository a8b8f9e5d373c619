// The CUDA micro-benchmarks (see cuda_bench.cc); arguments: [--json FILE] [--only SUBSTRING].
#pragma once

int RunCudaBench(int argc, char** argv);
// `cuda_check wan_step ...`: one SDPO step of Wan2.1-1.3B on cuda:0 (wan_step_cli.cc).
int RunWanStepBench(int argc, char** argv);
