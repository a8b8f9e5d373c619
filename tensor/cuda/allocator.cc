#include "tensor/cuda/allocator.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "tensor/cuda/cuda_runtime.h"
#include "tensor/error.h"

namespace sdpo::cuda {

size_t RoundToSizeClass(size_t bytes) {
  if (bytes == 0) return 0;
  constexpr size_t kSmall = size_t{1} << 20;
  if (bytes <= kSmall) return (bytes + 511) / 512 * 512;
  // Four classes per power of two: 2^k * {1, 1.25, 1.5, 1.75}.
  size_t p = kSmall;
  while (p * 2 < bytes) p *= 2;  // p < bytes <= 2p
  const size_t step = p / 4;
  return (bytes + step - 1) / step * step;
}

namespace {

struct Block {
  void* ptr = nullptr;
  size_t size = 0;  // size class
  cudaStream_t stream = nullptr;
  std::vector<cudaStream_t> other_streams;
};

struct PendingFree {
  Block block;
  std::vector<cudaEvent_t> events;
};

class DeviceCache {
 public:
  explicit DeviceCache(int device) : device_(device) {}

  void* Allocate(size_t bytes, cudaStream_t stream) {
    if (bytes == 0) return nullptr;
    const size_t size = RoundToSizeClass(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.num_allocations;
    ProcessPending();
    auto& list = free_[{stream, size}];
    Block block;
    if (!list.empty()) {
      block = list.back();
      list.pop_back();
      ++stats_.num_cache_hits;
    } else {
      block.size = size;
      block.stream = stream;
      block.ptr = Malloc(size);
    }
    stats_.allocated_bytes += static_cast<int64_t>(size);
    if (stats_.allocated_bytes > stats_.peak_allocated_bytes) {
      stats_.peak_allocated_bytes = stats_.allocated_bytes;
    }
    live_[block.ptr] = block;
    return block.ptr;
  }

  void Free(void* ptr) {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(ptr);
    SDPO_CHECK(it != live_.end(), "cuda allocator: free of a pointer it did not allocate");
    Block block = it->second;
    live_.erase(it);
    stats_.allocated_bytes -= static_cast<int64_t>(block.size);
    if (block.other_streams.empty()) {
      free_[{block.stream, block.size}].push_back(block);
      return;
    }
    PendingFree pending;
    DeviceGuard guard(device_);
    for (cudaStream_t s : block.other_streams) {
      cudaEvent_t e;
      SDPO_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      SDPO_CUDA_CHECK(cudaEventRecord(e, s));
      pending.events.push_back(e);
    }
    block.other_streams.clear();
    pending.block = block;
    pending_.push_back(std::move(pending));
  }

  void RecordStream(void* ptr, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(ptr);
    SDPO_CHECK(it != live_.end(), "cuda allocator: record_stream on an unknown pointer");
    if (stream == it->second.stream) return;
    for (cudaStream_t s : it->second.other_streams) {
      if (s == stream) return;
    }
    it->second.other_streams.push_back(stream);
  }

  void EmptyCache() {
    std::lock_guard<std::mutex> lock(mu_);
    ReleaseCached();
  }

  AllocatorStats Stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void ResetPeak() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
    stats_.peak_reserved_bytes = stats_.reserved_bytes;
  }

 private:
  void* Malloc(size_t size) {
    DeviceGuard guard(device_);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, size);
    if (e != cudaSuccess) {
      cudaGetLastError();
      ++stats_.num_oom_retries;
      SDPO_CUDA_CHECK(cudaDeviceSynchronize());
      ProcessPending();
      ReleaseCached();
      e = cudaMalloc(&p, size);
      if (e != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        SDPO_FAIL("CUDA out of memory on cuda:", device_, " allocating ", size, " bytes (",
                  stats_.allocated_bytes, " allocated by sdpo, ", stats_.reserved_bytes,
                  " reserved, ", free_b, " free of ", total_b, "): ", cudaGetErrorString(e));
      }
    }
    ++stats_.num_device_mallocs;
    stats_.reserved_bytes += static_cast<int64_t>(size);
    if (stats_.reserved_bytes > stats_.peak_reserved_bytes) {
      stats_.peak_reserved_bytes = stats_.reserved_bytes;
    }
    return p;
  }

  // Moves blocks whose cross-stream events completed to the free lists.
  void ProcessPending() {
    for (size_t i = 0; i < pending_.size();) {
      bool done = true;
      for (cudaEvent_t e : pending_[i].events) {
        cudaError_t r = cudaEventQuery(e);
        if (r != cudaSuccess) {
          cudaGetLastError();
          done = false;
          break;
        }
      }
      if (done) {
        for (cudaEvent_t e : pending_[i].events) cudaEventDestroy(e);
        const Block& b = pending_[i].block;
        free_[{b.stream, b.size}].push_back(b);
        pending_[i] = std::move(pending_.back());
        pending_.pop_back();
      } else {
        ++i;
      }
    }
  }

  void ReleaseCached() {
    DeviceGuard guard(device_);
    for (auto& [key, list] : free_) {
      for (const Block& b : list) {
        SDPO_CUDA_CHECK(cudaFree(b.ptr));
        ++stats_.num_device_frees;
        stats_.reserved_bytes -= static_cast<int64_t>(b.size);
      }
      list.clear();
    }
  }

  const int device_;
  std::mutex mu_;
  std::map<std::pair<cudaStream_t, size_t>, std::vector<Block>> free_;
  std::unordered_map<void*, Block> live_;
  std::vector<PendingFree> pending_;
  AllocatorStats stats_;
};

DeviceCache& Cache(int device) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<DeviceCache>>* caches =
      new std::vector<std::unique_ptr<DeviceCache>>();  // never destroyed: frees at exit are fine
  std::lock_guard<std::mutex> lock(mu);
  SDPO_CHECK(device >= 0 && device < 64, "cuda allocator: bad device index ", device);
  if (caches->size() <= static_cast<size_t>(device)) caches->resize(device + 1);
  if (!(*caches)[device]) (*caches)[device] = std::make_unique<DeviceCache>(device);
  return *(*caches)[device];
}

// Pinned host cache: free lists per size class.
struct PinnedCache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free;
};
PinnedCache& Pinned() {
  static PinnedCache* c = new PinnedCache();
  return *c;
}

std::atomic<int> g_poison{-1};  // -1: read SDPO_CUDA_POISON on first use

bool Poison() {
  int p = g_poison.load();
  if (p < 0) {
    const char* v = std::getenv("SDPO_CUDA_POISON");
    p = (v != nullptr && v[0] == '1') ? 1 : 0;
    g_poison.store(p);
  }
  return p == 1;
}

}  // namespace

void SetPoisonAllocations(bool on) { g_poison.store(on ? 1 : 0); }

void* DeviceAllocate(size_t bytes, int device, cudaStream_t stream) {
  if (stream == nullptr) stream = CurrentStream(device);
  void* p = Cache(device).Allocate(bytes, stream);
  if (p != nullptr && Poison()) {
    DeviceGuard guard(device);
    SDPO_CUDA_CHECK(cudaMemsetAsync(p, 0xff, bytes, stream));
  }
  return p;
}
void DeviceFree(void* ptr, int device) { Cache(device).Free(ptr); }
void RecordStream(void* ptr, int device, cudaStream_t stream) {
  Cache(device).RecordStream(ptr, stream);
}
AllocatorStats GetAllocatorStats(int device) { return Cache(device).Stats(); }
void ResetPeakStats(int device) { Cache(device).ResetPeak(); }
void EmptyCache(int device) { Cache(device).EmptyCache(); }

PinnedBuffer::PinnedBuffer(size_t bytes) {
  size_ = RoundToSizeClass(bytes == 0 ? 1 : bytes);
  PinnedCache& c = Pinned();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto& list = c.free[size_];
    if (!list.empty()) {
      data_ = list.back();
      list.pop_back();
      return;
    }
  }
  SDPO_CUDA_CHECK(cudaHostAlloc(&data_, size_, cudaHostAllocDefault));
}

PinnedBuffer::~PinnedBuffer() {
  if (data_ == nullptr) return;
  PinnedCache& c = Pinned();
  std::lock_guard<std::mutex> lock(c.mu);
  c.free[size_].push_back(data_);
}

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    this->~PinnedBuffer();
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

}  // namespace sdpo::cuda
