#include "tensor/storage.h"

#include <atomic>
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

std::atomic<int64_t> host_live_bytes{0};
std::atomic<int64_t> host_peak_bytes{0};

void CountHostBytes(int64_t delta) {
  const int64_t live = host_live_bytes.fetch_add(delta, std::memory_order_relaxed) + delta;
  int64_t peak = host_peak_bytes.load(std::memory_order_relaxed);
  while (live > peak &&
         !host_peak_bytes.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

}  // namespace

HostTensorMemory GetHostTensorMemory() {
  HostTensorMemory m;
  m.live_bytes = host_live_bytes.load(std::memory_order_relaxed);
  m.peak_bytes = host_peak_bytes.load(std::memory_order_relaxed);
  return m;
}

void ResetHostPeakBytes() {
  host_peak_bytes.store(host_live_bytes.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

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
  if (device.is_cpu()) CountHostBytes(static_cast<int64_t>(nbytes));
}

Storage::Storage(void* data, size_t nbytes, Device device, std::function<void()> release)
    : data_(data), nbytes_(nbytes), device_(device), release_(std::move(release)) {}

Storage::~Storage() {
  if (release_) {
    release_();
  } else if (data_ != nullptr) {
    GetDeviceBackend(device_.type).Free(data_, device_.index);
    if (device_.is_cpu()) CountHostBytes(-static_cast<int64_t>(nbytes_));
  }
}

void CopyBytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  DeviceType type = dst_device.is_cuda() ? DeviceType::kCUDA : src_device.type;
  GetDeviceBackend(type).Copy(dst, dst_device, src, src_device, nbytes);
}

}  // namespace sdpo
