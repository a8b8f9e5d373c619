#include "tensor/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace sdpo {
namespace {

thread_local bool in_parallel_region = false;

// Read once: hardware_concurrency() reads /sys on every call.
int DefaultThreads() {
  static const int threads = [] {
    if (const char* env = std::getenv("SDPO_NUM_THREADS")) {
      int n = std::atoi(env);
      if (n > 0) return n;
    }
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }();
  return threads;
}

// A fixed set of workers; one job (a range split) runs at a time.
class Pool {
 public:
  explicit Pool(int threads) : size_(threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int size() const { return size_; }

  void Run(int chunks, const std::function<void(int)>& fn) {
    std::lock_guard<std::mutex> run_lock(run_mu_);  // one job at a time
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &fn;
      chunks_ = chunks;
      next_.store(0);
      pending_ = chunks;
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    Work();
    std::unique_lock<std::mutex> lock(mu_);
    // Also wait for every worker that joined this job to leave Work(): a late one would
    // otherwise read the next job's state (chunks_, next_) racing with its setup.
    done_cv_.wait(lock, [this] { return pending_ == 0 && active_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void Work() {
    in_parallel_region = true;
    for (;;) {
      int chunk = next_.fetch_add(1);
      if (chunk >= chunks_) break;
      try {
        (*job_)(chunk);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
    in_parallel_region = false;
  }

  void WorkerLoop(int) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || (generation_ != seen && job_ != nullptr); });
        if (stop_) return;
        seen = generation_;
        ++active_;
      }
      Work();
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_ == 0) done_cv_.notify_all();
    }
  }

  int size_;
  std::vector<std::thread> workers_;
  std::mutex run_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  int chunks_ = 0;
  std::atomic<int> next_{0};
  int pending_ = 0;
  int active_ = 0;  // workers inside Work() for the current job
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

std::mutex pool_mu;
std::unique_ptr<Pool>& PoolSlot() {
  static std::unique_ptr<Pool> pool;
  return pool;
}
int requested_threads = 0;

Pool& GetPool() {
  std::lock_guard<std::mutex> lock(pool_mu);
  auto& slot = PoolSlot();
  int want = requested_threads > 0 ? requested_threads : DefaultThreads();
  if (!slot || slot->size() != want) {
    slot.reset();
    slot = std::make_unique<Pool>(want);
  }
  return *slot;
}

}  // namespace

struct ThreadPool::Impl {
  explicit Impl(int threads) : pool(threads) {}
  Pool pool;
};

namespace {
thread_local ThreadPool::Impl* current_pool = nullptr;  // set by ThreadPoolScope
}  // namespace

ThreadPool::ThreadPool(int threads) : impl_(std::make_unique<Impl>(std::max(1, threads))) {}
ThreadPool::~ThreadPool() = default;
int ThreadPool::size() const { return impl_->pool.size(); }

ThreadPoolScope::ThreadPoolScope(ThreadPool& pool) : previous_(current_pool) {
  current_pool = pool.impl_.get();
}
ThreadPoolScope::~ThreadPoolScope() { current_pool = previous_; }

bool InParallelRegion() { return in_parallel_region; }

int NumThreads() {
  if (current_pool != nullptr) return current_pool->pool.size();
  return requested_threads > 0 ? requested_threads : DefaultThreads();
}

void SetNumThreads(int n) {
  std::lock_guard<std::mutex> lock(pool_mu);
  requested_threads = std::max(1, n);
}

void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int threads = NumThreads();
  int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / grain);
  if (chunks <= 1 || in_parallel_region) {
    fn(0, n);
    return;
  }
  int64_t per = (n + chunks - 1) / chunks;
  Pool& pool = current_pool != nullptr ? current_pool->pool : GetPool();
  pool.Run(static_cast<int>(chunks), [&](int c) {
    int64_t begin = c * per;
    int64_t end = std::min(n, begin + per);
    if (begin < end) fn(begin, end);
  });
}

}  // namespace sdpo
