// A ThreadPool made current with ThreadPoolScope serves the calling thread's ParallelFor (its
// size, its workers) and leaves the process-wide pool and other threads alone.
#include "tensor/thread_pool.h"

#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "gtest/gtest.h"

namespace sdpo {
namespace {

// How ParallelFor split many small items: the number of ranges and the distinct threads that
// ran them.
struct Split {
  int ranges = 0;
  std::set<std::thread::id> threads;
};
Split SplitOfParallelFor() {
  std::mutex mu;
  Split split;
  ParallelFor(64, 1, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mu);
    ++split.ranges;
    split.threads.insert(std::this_thread::get_id());
  });
  return split;
}

TEST(ThreadPoolTest, ScopedPoolSetsTheSizeAndRunsTheWork) {
  SetNumThreads(1);
  EXPECT_EQ(NumThreads(), 1);
  EXPECT_EQ(SplitOfParallelFor().ranges, 1);
  ThreadPool pool(3);
  {
    ThreadPoolScope scope(pool);
    EXPECT_EQ(NumThreads(), 3);
    const Split split = SplitOfParallelFor();
    EXPECT_EQ(split.ranges, 3);
    EXPECT_LE(split.threads.size(), 3u);  // the caller and the pool's two workers
  }
  EXPECT_EQ(NumThreads(), 1);  // the process-wide pool again
}

TEST(ThreadPoolTest, ScopesNestAndStayOnTheirThread) {
  SetNumThreads(1);
  ThreadPool outer(2), inner(4);
  ThreadPoolScope a(outer);
  {
    ThreadPoolScope b(inner);
    EXPECT_EQ(NumThreads(), 4);
    int other = 0;
    std::thread t([&] { other = NumThreads(); });  // no scope there: the process-wide pool
    t.join();
    EXPECT_EQ(other, 1);
  }
  EXPECT_EQ(NumThreads(), 2);
}

TEST(ThreadPoolTest, TwoThreadsWithTheirOwnPoolsRunConcurrently) {
  ThreadPool p2(2), p3(3);
  int64_t sum2 = 0, sum3 = 0;
  auto work = [](ThreadPool& pool, int64_t* out) {
    ThreadPoolScope scope(pool);
    std::mutex mu;
    for (int rep = 0; rep < 50; ++rep) {
      ParallelFor(1000, 10, [&](int64_t b, int64_t e) {
        int64_t s = 0;
        for (int64_t i = b; i < e; ++i) s += i;
        std::lock_guard<std::mutex> lock(mu);
        *out += s;
      });
    }
  };
  std::thread t2(work, std::ref(p2), &sum2), t3(work, std::ref(p3), &sum3);
  t2.join();
  t3.join();
  EXPECT_EQ(sum2, 50 * 999 * 1000 / 2);
  EXPECT_EQ(sum3, 50 * 999 * 1000 / 2);
}

}  // namespace
}  // namespace sdpo
