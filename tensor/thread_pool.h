// The CPU kernels' thread pool. Its size comes from SetNumThreads(), else the environment
// variable SDPO_NUM_THREADS, else the number of hardware threads. Kernels split work into
// contiguous ranges so that results do not depend on the thread count (beyond the float
// rounding of a different GEMM blocking).
//
// A program that embeds the engine beside other work can give it a pool of its own: a ThreadPool
// made current on a thread (ThreadPoolScope) serves that thread's ParallelFor calls instead of
// the process-wide pool.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace sdpo {

// The size of the calling thread's pool: its ThreadPoolScope's, else the process-wide one's.
int NumThreads();
// The size of the process-wide pool.
void SetNumThreads(int n);

// CPU workers of a fixed size (the calling thread counts as one of them).
class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // at least 1
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  int size() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  friend class ThreadPoolScope;
};

// While alive, `pool` serves the calling thread's ParallelFor (scopes nest).
class ThreadPoolScope {
 public:
  explicit ThreadPoolScope(ThreadPool& pool);
  ~ThreadPoolScope();
  ThreadPoolScope(const ThreadPoolScope&) = delete;
  ThreadPoolScope& operator=(const ThreadPoolScope&) = delete;

 private:
  ThreadPool::Impl* previous_;
};

// Runs fn(begin, end) over [0, n) split into at most NumThreads() ranges of at least `grain`
// items. Runs inline when the work is small or when called from inside a parallel region.
// True on a pool thread while it runs a ParallelFor body (nested parallelism runs inline).
bool InParallelRegion();

void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace sdpo
