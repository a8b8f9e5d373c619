// Storage: a reference-counted block of bytes on one device. Several tensors (views) share one.
//
// Device memory comes from a DeviceBackend. The CPU backend is built in; the CUDA backend
// registers itself when it is linked in and a GPU is present (see tensor/cuda/).
#pragma once

#include <cstddef>
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

// Copies bytes between devices through the right backend.
void CopyBytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace sdpo
