// The caching device allocator and pinned host buffers.
//
// Device memory: requests are rounded to a size class (multiples of 512 bytes up to 1 MiB,
// then four classes per power of two: at most 25% slack) and served from per-(stream, class)
// free lists; only a miss calls cudaMalloc. Blocks are stream-ordered: a block freed on stream
// S is reused at once by later work on S; a block also used on other streams (RecordStream)
// returns to the cache only when events recorded on those streams at free time complete. When
// cudaMalloc fails, the cache is released and the allocation retried once.
// In a steady-state training step every request hits the cache: Stats().num_device_mallocs
// stops growing after the first step.
//
// Pinned host memory: PinnedBuffer hands out cudaHostAlloc'd buffers from a cache of the same
// size classes; the backend uses them to stage host <-> device copies.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/cuda/cuda_api.h"

namespace sdpo::cuda {

struct AllocatorStats {
  int64_t allocated_bytes = 0;       // handed out now (size classes)
  int64_t peak_allocated_bytes = 0;
  int64_t reserved_bytes = 0;        // obtained from cudaMalloc and not released
  int64_t peak_reserved_bytes = 0;
  int64_t num_device_mallocs = 0;    // cudaMalloc calls
  int64_t num_device_frees = 0;      // cudaFree calls
  int64_t num_allocations = 0;       // Allocate calls
  int64_t num_cache_hits = 0;
  int64_t num_oom_retries = 0;
};

size_t RoundToSizeClass(size_t bytes);

// Allocate/Free on `device` (ordered on `stream`, the device's current stream by default).
void* DeviceAllocate(size_t bytes, int device, cudaStream_t stream = nullptr);
void DeviceFree(void* ptr, int device);
// Marks ptr as also used by work queued on `stream`.
void RecordStream(void* ptr, int device, cudaStream_t stream);
AllocatorStats GetAllocatorStats(int device);
void ResetPeakStats(int device);
// Releases every cached (free) block back to the driver.
void EmptyCache(int device);
// Tests: fill every block handed out with 0xff bytes (NaN for every float type), so that output
// elements a kernel fails to write are caught. Also on with SDPO_CUDA_POISON=1.
void SetPoisonAllocations(bool on);

// A pinned host buffer from the cache; returned to the cache on destruction.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace sdpo::cuda
