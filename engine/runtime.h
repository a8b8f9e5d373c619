// sdpo's embedding API (docs/embedding.md). A Runtime is the compute a host program lends the
// engine: a CPU thread pool of its own and the device models run on.
//
// Failures: every engine call reports failure by throwing sdpo::Error (tensor/error.h, a
// std::runtime_error) whose message names what failed, the file or key, and what was expected
// and found. Nothing else is thrown across the API, and nothing aborts the process.
//
// What stays process-wide (shared with any other sdpo code in the process):
//   - the CUDA caching allocator and streams of each GPU (one per device, as in PyTorch);
//   - the kernel registry (filled once at start-up, read-only afterwards);
//   - the process-wide thread pool (tensor/thread_pool.h), used only by threads that have no
//     Runtime scope open (e.g. the trainer's data-prefetching thread).
// Random numbers are counter-based (Philox: a seed and an offset per draw) and the parameter
// initialisation stream is per thread: the engine seeds it explicitly on each call that draws.
// No flag or environment variable is read inside the engine.
#pragma once

#include <memory>
#include <string>

#include "tensor/error.h"
#include "tensor/tensor.h"
#include "tensor/thread_pool.h"

namespace sdpo::engine {

using sdpo::Error;

struct RuntimeOptions {
  int threads = 1;                // CPU workers of this runtime (the calling thread included)
  Device device = Device::CPU();  // or Device::CUDA(index)
  DType precision = kF32;         // compute dtype: kF32, or kBF16 on CUDA (f32 master weights)
};

class Runtime {
 public:
  explicit Runtime(const RuntimeOptions& options = {});
  Device device() const { return device_; }
  DType compute_dtype() const { return compute_dtype_; }
  int threads() const { return pool_->size(); }

  // While alive, this runtime's thread pool serves the calling thread's CPU kernels. Engine
  // calls open one themselves; a host opens one to run tensor code of its own on the pool.
  class Scope {
   public:
    explicit Scope(const Runtime& runtime) : scope_(*runtime.pool_) {}

   private:
    ThreadPoolScope scope_;
  };

 private:
  std::unique_ptr<ThreadPool> pool_;
  Device device_;
  DType compute_dtype_;
};

}  // namespace sdpo::engine
