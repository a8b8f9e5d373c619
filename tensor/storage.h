// Storage: a reference-counted block of bytes on one device. Several tensors (views) share one.
//
// Device memory comes from a DeviceBackend. The CPU backend is built in; the CUDA backend
// registers itself when it is linked in and a GPU is present (see tensor/cuda/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "tensor/device.h"

namespace sdpo {

// What a device type must provide to hold tensors.
class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  virtual void* Allocate(size_t nbytes, int device_index) = 0;
  virtual void Free(void* ptr, int device_index) = 0;
  // Copies nbytes between any two of (this device, CPU). Synchronous with respect to the host.
  virtual void Copy(void* dst, Device dst_device, const void* src, Device src_device,
                    size_t nbytes) = 0;
  virtual int DeviceCount() = 0;
};

// Registers the backend for a device type (called once by the backend's translation unit).
void RegisterDeviceBackend(DeviceType type, DeviceBackend* backend);
// The backend for a device type; throws a clear error if none is available (e.g. no GPU).
DeviceBackend& GetDeviceBackend(DeviceType type);
bool HasDeviceBackend(DeviceType type);

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  // Wraps memory owned elsewhere (e.g. a memory-mapped file); `release` runs when the last
  // tensor referring to it goes away.
  Storage(void* data, size_t nbytes, Device device, std::function<void()> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  std::function<void()> release_;
};

// Host memory held by tensors (storages this process allocated on the CPU; memory-mapped files
// and other wrapped memory are not counted): now, and the most at once since the start or the
// last ResetHostPeakBytes. Counts the tensors' bytes, not the allocator's or the kernels' scratch.
struct HostTensorMemory {
  int64_t live_bytes = 0;
  int64_t peak_bytes = 0;
};
HostTensorMemory GetHostTensorMemory();
// Starts a new peak at the current live bytes.
void ResetHostPeakBytes();

// Copies bytes between devices through the right backend.
void CopyBytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace sdpo
