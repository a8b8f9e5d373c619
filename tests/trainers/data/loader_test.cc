#include "trainers/data/loader.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tensor/error.h"
#include "tensor/ops.h"
#include "tests/trainers/data/test_util.h"

namespace sdpo::data {
namespace {

using testing::BitEqual;
using testing::MakePair;

std::vector<PreferencePair> MakePairs(int n) {
  std::vector<PreferencePair> pairs;
  for (int i = 0; i < n; ++i) pairs.push_back(MakePair(i));
  return pairs;
}

void ExpectSameBatch(const PreferenceBatch& a, const PreferenceBatch& b) {
  EXPECT_EQ(a.indices, b.indices);
  EXPECT_EQ(a.cursor, b.cursor);
  ASSERT_EQ(a.size(), b.size());
  for (int64_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a.pairs[i].id, b.pairs[i].id);
    EXPECT_TRUE(BitEqual(a.pairs[i].winner, b.pairs[i].winner));
    EXPECT_TRUE(BitEqual(a.pairs[i].context, b.pairs[i].context));
  }
  EXPECT_TRUE(BitEqual(a.winners, b.winners));
  EXPECT_TRUE(BitEqual(a.losers, b.losers));
  EXPECT_TRUE(BitEqual(a.weights, b.weights));
}

// Fails on one index; counts Get calls.
class FlakyDataset : public PairDataset {
 public:
  FlakyDataset(std::vector<PreferencePair> pairs, int64_t bad)
      : pairs_(std::move(pairs)), bad_(bad) {}
  int64_t size() const override { return static_cast<int64_t>(pairs_.size()); }
  PreferencePair Get(int64_t index) const override {
    ++calls;
    SDPO_CHECK(index != bad_, "shard-00003.safetensors: read error for pair ", index);
    return pairs_[index];
  }
  mutable std::atomic<int> calls{0};

 private:
  std::vector<PreferencePair> pairs_;
  int64_t bad_;
};

TEST(LoadBatchTest, StacksSameShapes) {
  InMemoryPairDataset data(MakePairs(5));
  const PreferenceBatch b = LoadBatch(data, {4, 1, 1}, SamplerCursor{0, 3});
  EXPECT_EQ(b.winners.shape(), (Shape{3, 4, 3, 4, 5}));
  EXPECT_EQ(b.losers.shape(), (Shape{3, 4, 3, 4, 5}));
  EXPECT_TRUE(BitEqual(ops::Select(b.winners, 0, 0), MakePair(4).winner));
  EXPECT_TRUE(BitEqual(ops::Select(b.losers, 0, 2), MakePair(1).loser));
  EXPECT_EQ(b.weights.ToVector(), (std::vector<double>{1.25, 1.25, 1.25}));
  EXPECT_EQ(b.pairs[0].context.shape(), (Shape{2, 8}));  // contexts vary in length: a list

  std::vector<PreferencePair> mixed = MakePairs(2);
  mixed.push_back(MakePair(2, {4, 2, 4, 5}));
  InMemoryPairDataset var(mixed);
  const PreferenceBatch v = LoadBatch(var, {0, 2}, {});
  EXPECT_FALSE(v.winners.defined());
  EXPECT_EQ(v.pairs[1].winner.shape(), (Shape{4, 2, 4, 5}));
}

TEST(PrefetchingLoaderTest, SameBatchesAsSynchronousPath) {
  InMemoryPairDataset data(MakePairs(11));
  for (int depth : {1, 3}) {
    for (int rank : {0, 1}) {
      PairSampler sync_sampler(11, 4, 17, rank, 2);
      PrefetchingLoader loader(data, PairSampler(11, 4, 17, rank, 2), depth);
      for (int step = 0; step < 25; ++step) {
        const PreferenceBatch want = NextBatch(data, sync_sampler);
        const PreferenceBatch got = loader.Next();
        ExpectSameBatch(got, want);
      }
    }
  }
}

TEST(PrefetchingLoaderTest, ResumesFromABatchCursor) {
  InMemoryPairDataset data(MakePairs(9));
  SamplerCursor saved;
  std::vector<PreferenceBatch> after;
  {
    PrefetchingLoader loader(data, PairSampler(9, 2, 3), 3);
    for (int i = 0; i < 5; ++i) saved = loader.Next().cursor;
    for (int i = 0; i < 6; ++i) after.push_back(loader.Next());
  }
  PairSampler resumed(9, 2, 3);
  resumed.set_cursor(saved);
  PrefetchingLoader loader(data, resumed, 2);
  for (const PreferenceBatch& want : after) ExpectSameBatch(loader.Next(), want);
}

TEST(PrefetchingLoaderTest, PropagatesErrorsInOrder) {
  const std::vector<int64_t> order = PairSampler::Permutation(8, 5, 0);
  const int64_t bad = order[5];  // in the third batch of 2
  FlakyDataset data(MakePairs(8), bad);
  PrefetchingLoader loader(data, PairSampler(8, 2, 5), 2);
  EXPECT_EQ(loader.Next().indices, (std::vector<int64_t>{order[0], order[1]}));
  EXPECT_EQ(loader.Next().indices, (std::vector<int64_t>{order[2], order[3]}));
  for (int i = 0; i < 2; ++i) {  // and stays failed
    try {
      loader.Next();
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("read error for pair " + std::to_string(bad)),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(PrefetchingLoaderTest, ShutsDownCleanly) {
  FlakyDataset data(MakePairs(6), -1);
  { PrefetchingLoader idle(data, PairSampler(6, 2, 1), 2); }  // destroyed right away
  {
    PrefetchingLoader full(data, PairSampler(6, 2, 1), 2);
    full.Next();
    // Let the worker fill the queue and block on it; the destructor must still return.
    for (int i = 0; i < 200 && data.calls.load() < 6; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  PrefetchingLoader stopped(data, PairSampler(6, 2, 1), 1);
  stopped.Stop();
  stopped.Stop();  // idempotent
  EXPECT_THROW(
      {
        // Whatever was prepared before Stop() may still come out; then it throws.
        for (int i = 0; i < 3; ++i) stopped.Next();
      },
      Error);
  EXPECT_THROW(PrefetchingLoader(data, PairSampler(7, 2, 1), 1), Error);  // size mismatch
}

TEST(PrefetchingLoaderTest, ReadsAnOnDiskDataset) {
  const std::string dir = testing::TempDir("loader_disk");
  WriterOptions o;
  o.pairs_per_shard = 4;
  PreferenceDatasetWriter writer(dir, o);
  for (int i = 0; i < 10; ++i) writer.Add(MakePair(i));
  writer.Finish();
  auto ds = PreferenceDataset::Open(dir, testing::SmallSpec());
  InMemoryPairDataset mem(MakePairs(10));
  PrefetchingLoader disk_loader(*ds, PairSampler(10, 3, 8), 2);
  PairSampler mem_sampler(10, 3, 8);
  for (int i = 0; i < 8; ++i) ExpectSameBatch(disk_loader.Next(), NextBatch(mem, mem_sampler));
}

}  // namespace
}  // namespace sdpo::data
