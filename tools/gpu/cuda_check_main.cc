// cuda_check [gtest flags]          runs the CUDA parity tests
// cuda_check bench [--json FILE]    runs the CUDA micro-benchmarks
#include <cstring>

#include "bench/cuda/cuda_bench.h"
#include "gtest/gtest.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "bench") == 0) return RunCudaBench(argc - 1, argv + 1);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
