// The CPU kernels' thread pool. Its size comes from SetNumThreads(), else the environment
// variable SDPO_NUM_THREADS, else the number of hardware threads. Kernels split work into
// contiguous ranges so that results do not depend on the thread count (beyond the float
// rounding of a different GEMM blocking).
#pragma once

#include <cstdint>
#include <functional>

namespace sdpo {

int NumThreads();
void SetNumThreads(int n);

// Runs fn(begin, end) over [0, n) split into at most NumThreads() ranges of at least `grain`
// items. Runs inline when the work is small or when called from inside a parallel region.
// True on a pool thread while it runs a ParallelFor body (nested parallelism runs inline).
bool InParallelRegion();

void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace sdpo
