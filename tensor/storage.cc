#include "tensor/storage.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "tensor/error.h"

namespace sdpo {

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : absl::StrCat("cuda:", index);
}

namespace {

constexpr size_t kCpuAlignment = 64;

class CpuBackend final : public DeviceBackend {
 public:
  void* Allocate(size_t nbytes, int) override {
    size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    void* ptr = std::aligned_alloc(kCpuAlignment, rounded == 0 ? kCpuAlignment : rounded);
    SDPO_CHECK(ptr != nullptr, "out of host memory allocating ", nbytes, " bytes");
    return ptr;
  }
  void Free(void* ptr, int) override { std::free(ptr); }
  void Copy(void* dst, Device, const void* src, Device, size_t nbytes) override {
    if (nbytes > 0) std::memmove(dst, src, nbytes);
  }
  int DeviceCount() override { return 1; }
};

struct Registry {
  std::mutex mu;
  DeviceBackend* backends[2] = {nullptr, nullptr};
};

Registry& GetRegistry() {
  static Registry* registry = [] {
    auto* r = new Registry();
    static CpuBackend cpu;
    r->backends[static_cast<int>(DeviceType::kCPU)] = &cpu;
    return r;
  }();
  return *registry;
}

}  // namespace

void RegisterDeviceBackend(DeviceType type, DeviceBackend* backend) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.backends[static_cast<int>(type)] = backend;
}

bool HasDeviceBackend(DeviceType type) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.backends[static_cast<int>(type)] != nullptr;
}

DeviceBackend& GetDeviceBackend(DeviceType type) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  DeviceBackend* b = r.backends[static_cast<int>(type)];
  SDPO_CHECK(b != nullptr, "no backend for device type ",
             type == DeviceType::kCUDA ? "cuda (built without CUDA, or no GPU present)" : "cpu");
  return *b;
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = GetDeviceBackend(device.type).Allocate(nbytes, device.index);
}

Storage::Storage(void* data, size_t nbytes, Device device, std::function<void()> release)
    : data_(data), nbytes_(nbytes), device_(device), release_(std::move(release)) {}

Storage::~Storage() {
  if (release_) {
    release_();
  } else if (data_ != nullptr) {
    GetDeviceBackend(device_.type).Free(data_, device_.index);
  }
}

void CopyBytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  DeviceType type = dst_device.is_cuda() ? DeviceType::kCUDA : src_device.type;
  GetDeviceBackend(type).Copy(dst, dst_device, src, src_device, nbytes);
}

}  // namespace sdpo
