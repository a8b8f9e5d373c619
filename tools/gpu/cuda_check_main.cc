// cuda_check [gtest flags]          runs the CUDA parity tests
// cuda_check bench [--json FILE]    runs the CUDA micro-benchmarks
// cuda_check wan_step [...]          one SDPO step of Wan2.1-1.3B (bench/cuda/wan_step_cli.cc)
// cuda_check nccl                    the NCCL communicator on one GPU (tools/gpu/nccl_check.h)
// cuda_check make_data [...]         full-scale random checkpoint and data (tools/data/full_scale.h)
#include <cstring>

#include "bench/cuda/cuda_bench.h"
#include "gtest/gtest.h"
#include "tools/data/full_scale.h"
#include "tools/gpu/nccl_check.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "bench") == 0) return RunCudaBench(argc - 1, argv + 1);
  if (argc > 1 && std::strcmp(argv[1], "wan_step") == 0) return RunWanStepBench(argc - 1, argv + 1);
  if (argc > 1 && std::strcmp(argv[1], "nccl") == 0) return RunNcclCheck(argc - 1, argv + 1);
  if (argc > 1 && std::strcmp(argv[1], "make_data") == 0) {
    return sdpo::tools::MakeFullScaleMain(argc - 1, argv + 1);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
