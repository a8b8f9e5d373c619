// CUDA runtime helpers: checked calls, devices, the current stream per device, events.
// Every CUDA call goes through SDPO_CUDA_CHECK, which throws sdpo::Error naming the call, the
// CUDA error and the file and line.
#pragma once

#include <cstddef>
#include <string>

#include "tensor/cuda/cuda_api.h"
#include "tensor/cuda/launchers.h"

#define SDPO_CUDA_CHECK(call)                                                                \
  do {                                                                                       \
    const cudaError_t sdpo_cuda_err_ = (call);                                               \
    if (sdpo_cuda_err_ != cudaSuccess) {                                                     \
      ::sdpo::cuda::ThrowCudaError(#call, cudaGetErrorString(sdpo_cuda_err_), __FILE__,      \
                                   __LINE__);                                                \
    }                                                                                        \
  } while (0)

namespace sdpo::cuda {

// Number of usable GPUs; 0 (never an exception) when there is no GPU or no working driver.
int DeviceCount();
int CurrentDevice();
void SetDevice(int device);

// Makes `device` current for the scope (no-op when it already is).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

// The stream sdpo's kernels run on for a device (a non-blocking stream created on first use,
// unless replaced with SetCurrentStream). device -1 = the current device.
cudaStream_t CurrentStream(int device = -1);
void SetCurrentStream(cudaStream_t stream, int device = -1);
void SynchronizeStream(int device = -1);

class Event {
 public:
  explicit Event(bool timing = true);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void Record(cudaStream_t stream);
  void Synchronize();
  bool Query();  // true when complete
  // Milliseconds between `start` (recorded earlier) and this event; both must be complete.
  float ElapsedMsSince(const Event& start);
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

struct DeviceInfo {
  std::string name;
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;
  size_t total_memory = 0;
  size_t smem_per_block_optin = 0;
};
DeviceInfo GetDeviceInfo(int device);

}  // namespace sdpo::cuda
