#include "trainers/device_flags.h"

#include "tensor/cuda/cuda_available.h"
#include "tensor/error.h"
#include "trainers/distributed/device_communicator.h"

namespace sdpo::trainers {

Device ParseDevice(const std::string& flag) {
  if (flag == "cpu") return Device::CPU();
  int index = -1;
  if (flag == "cuda") {
    index = distributed::LocalRank();
  } else if (flag.rfind("cuda:", 0) == 0) {
    const std::string digits = flag.substr(5);
    SDPO_CHECK(!digits.empty() && digits.size() <= 4 &&
                   digits.find_first_not_of("0123456789") == std::string::npos,
               "--device=", flag, ": expected cpu, cuda or cuda:N with N a GPU index");
    index = std::stoi(digits);
  } else {
    SDPO_FAIL("--device=", flag, ": expected cpu, cuda or cuda:N");
  }
  SDPO_CHECK(CudaAvailable(), "--device=", flag, ": CUDA is unavailable in this process (",
             CudaUnavailableReason(),
             "); run on a machine with an NVIDIA GPU and a CUDA build "
             "(docs/gpu.md), or use --device=cpu");
  return Device::CUDA(index);
}

DType ParsePrecision(const std::string& flag, Device device) {
  if (flag == "f32") return kF32;
  SDPO_CHECK(flag == "bf16", "--precision=", flag, ": expected f32 or bf16");
  SDPO_CHECK(!device.is_cpu(),
             "--precision=bf16 needs --device=cuda (found --device=", device.str(),
             "; the CPU path is f32)");
  return kBF16;
}

}  // namespace sdpo::trainers
