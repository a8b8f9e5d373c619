// Where a device's time goes, kernel by kernel: a decorator over the CUDA Kernels that times
// every call between two device synchronisations and sums the times under a key (kernel, op,
// dtypes, shape, layout). For profiling a step (`cuda_check wan_step --profile`), not for
// production: the synchronisations serialise host and device, so each share is an upper bound
// and the profiled step is slower than a normal one. Host time between kernels (graph building,
// allocation) is not attributed; Report() prints it as the rest of the wall time.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace sdpo {

class Kernels;

class KernelProfiler {
 public:
  struct Entry {
    int64_t calls = 0;
    double seconds = 0;
    double bytes = 0;  // every operand read once and the output written once, per call summed
  };

  // Installs itself over the CUDA kernels (throws when no CUDA backend is registered); `sync`
  // waits for the device. The destructor reinstalls the kernels it wrapped.
  explicit KernelProfiler(std::function<void()> sync);
  ~KernelProfiler();
  KernelProfiler(const KernelProfiler&) = delete;
  KernelProfiler& operator=(const KernelProfiler&) = delete;

  void Reset();
  const std::map<std::string, Entry>& entries() const { return entries_; }
  // The `top` costliest keys (time, share of wall_s, calls, mean, effective GB/s), then totals
  // per kernel kind and the unattributed rest of wall_s.
  std::string Report(double wall_s, int top = 40) const;

  // Used by the decorator.
  void Add(const std::string& key, double seconds, double bytes);
  void Sync() const { sync_(); }

 private:
  class Decorator;
  std::function<void()> sync_;
  Kernels* inner_ = nullptr;
  Decorator* decorator_ = nullptr;
  std::map<std::string, Entry> entries_;
};

}  // namespace sdpo
