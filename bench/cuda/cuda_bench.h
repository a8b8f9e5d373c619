// The CUDA micro-benchmarks (see cuda_bench.cc); arguments: [--json FILE] [--only SUBSTRING].
#pragma once

int RunCudaBench(int argc, char** argv);
