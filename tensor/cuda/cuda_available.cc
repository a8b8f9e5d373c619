#include "tensor/cuda/cuda_available.h"

#if defined(SDPO_WITH_CUDA)
#include "tensor/cuda/cuda_runtime.h"
#endif

namespace sdpo {

#if defined(SDPO_WITH_CUDA)
bool CudaAvailable() { return cuda::DeviceCount() > 0; }
const char* CudaUnavailableReason() {
  return CudaAvailable() ? "" : "no GPU visible (cudaGetDeviceCount failed or found none)";
}
#else
bool CudaAvailable() { return false; }
const char* CudaUnavailableReason() {
  return "built without CUDA (no toolkit found at build time, or --config=nocuda)";
}
#endif

}  // namespace sdpo
