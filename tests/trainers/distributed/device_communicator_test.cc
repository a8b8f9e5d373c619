// MakeCommunicatorFor picks the communicator by device (without mpirun: worlds of one).
#include "trainers/distributed/device_communicator.h"

#include "gtest/gtest.h"
#include "tensor/cuda/cuda_available.h"
#include "tensor/error.h"
#include "trainers/distributed/nccl_communicator.h"

namespace sdpo::distributed {
namespace {

TEST(DeviceCommunicatorTest, CpuIsLocalWithoutMpirun) {
  CommOptions o;
  o.timeout_s = 7;
  o.bucket_bytes = 1000;
  std::unique_ptr<Communicator> comm = MakeCommunicatorFor(Device::CPU(), o);
  EXPECT_EQ(comm->name(), "local");
  EXPECT_EQ(comm->world_size(), 1);
  EXPECT_EQ(comm->options().timeout_s, 7);
  EXPECT_EQ(comm->options().bucket_bytes, 1000);
  EXPECT_EQ(LocalRank(), 0);
}

TEST(DeviceCommunicatorTest, CudaIsNcclOrAClearError) {
  std::string why;
  const bool nccl = NcclAvailable(&why);
  if (CudaAvailable() && nccl) {
    EXPECT_EQ(MakeCommunicatorFor(Device::CUDA(0))->name(), "nccl");
    return;
  }
  // No CUDA build, no libnccl.so.2 or no GPU: an sdpo::Error, not a crash.
  EXPECT_THROW(MakeCommunicatorFor(Device::CUDA(0)), Error) << why;
}

}  // namespace
}  // namespace sdpo::distributed
