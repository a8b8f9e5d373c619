#include "tensor/cuda/cuda_runtime.h"

#include <cstdlib>
#include <mutex>
#include <vector>

#include "tensor/error.h"

namespace sdpo::cuda {

void ThrowCudaError(const char* what, const char* detail, const char* file, int line) {
  detail::ThrowError(file, line, nullptr, absl::StrCat("CUDA error in ", what, ": ", detail));
}

void CheckLaunch(const char* kernel, cudaStream_t stream, const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    detail::ThrowError(file, line, nullptr,
                       absl::StrCat("CUDA kernel launch failed: ", kernel, ": ",
                                    cudaGetErrorString(e)));
  }
  static const bool sync = [] {
    const char* v = std::getenv("SDPO_CUDA_SYNC");
    return v != nullptr && v[0] == '1';
  }();
  if (sync) {
    e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) {
      detail::ThrowError(file, line, nullptr,
                         absl::StrCat("CUDA kernel failed: ", kernel, ": ", cudaGetErrorString(e),
                                      " (SDPO_CUDA_SYNC=1)"));
    }
  }
}

int DeviceCount() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no device" error
      return 0;
    }
    return n;
  }();
  return count;
}

namespace {
thread_local int t_current_device = -1;

struct Streams {
  std::mutex mu;
  std::vector<cudaStream_t> streams;
};
Streams& GetStreams() {
  static Streams* s = new Streams();
  return *s;
}
}  // namespace

int CurrentDevice() {
  if (t_current_device < 0) {
    int d = 0;
    SDPO_CUDA_CHECK(cudaGetDevice(&d));
    t_current_device = d;
  }
  return t_current_device;
}

void SetDevice(int device) {
  SDPO_CHECK(device >= 0 && device < DeviceCount(), "cuda device ", device,
             " does not exist (", DeviceCount(), " visible)");
  if (t_current_device == device) return;
  SDPO_CUDA_CHECK(cudaSetDevice(device));
  t_current_device = device;
}

DeviceGuard::DeviceGuard(int device) : previous_(CurrentDevice()) { SetDevice(device); }
DeviceGuard::~DeviceGuard() {
  if (previous_ != t_current_device && cudaSetDevice(previous_) == cudaSuccess) {
    t_current_device = previous_;
  }
}

cudaStream_t CurrentStream(int device) {
  if (device < 0) device = CurrentDevice();
  Streams& s = GetStreams();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.streams.size() <= static_cast<size_t>(device)) s.streams.resize(device + 1, nullptr);
  if (s.streams[device] == nullptr) {
    DeviceGuard guard(device);
    cudaStream_t stream;
    SDPO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    s.streams[device] = stream;
  }
  return s.streams[device];
}

void SetCurrentStream(cudaStream_t stream, int device) {
  if (device < 0) device = CurrentDevice();
  Streams& s = GetStreams();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.streams.size() <= static_cast<size_t>(device)) s.streams.resize(device + 1, nullptr);
  s.streams[device] = stream;
}

void SynchronizeStream(int device) { SDPO_CUDA_CHECK(cudaStreamSynchronize(CurrentStream(device))); }

Event::Event(bool timing) {
  SDPO_CUDA_CHECK(cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault
                                                           : cudaEventDisableTiming));
}
Event::~Event() {
  if (event_ != nullptr) cudaEventDestroy(event_);
}
void Event::Record(cudaStream_t stream) { SDPO_CUDA_CHECK(cudaEventRecord(event_, stream)); }
void Event::Synchronize() { SDPO_CUDA_CHECK(cudaEventSynchronize(event_)); }
bool Event::Query() {
  cudaError_t e = cudaEventQuery(event_);
  if (e == cudaSuccess) return true;
#ifndef SDPO_CUDA_EMULATE
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
#endif
  ThrowCudaError("cudaEventQuery", cudaGetErrorString(e), __FILE__, __LINE__);
}
float Event::ElapsedMsSince(const Event& start) {
  float ms = 0;
  SDPO_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
  return ms;
}

DeviceInfo GetDeviceInfo(int device) {
  cudaDeviceProp prop;
  SDPO_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  DeviceInfo info;
  info.name = prop.name;
  info.sm_count = prop.multiProcessorCount;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.total_memory = prop.totalGlobalMem;
  info.smem_per_block_optin = prop.sharedMemPerBlockOptin;
  return info;
}

}  // namespace sdpo::cuda
