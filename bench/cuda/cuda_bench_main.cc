#include "bench/cuda/cuda_bench.h"

int main(int argc, char** argv) { return RunCudaBench(argc, argv); }
