#include "trainers/data/sampler.h"

#include <algorithm>
#include <numeric>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "io/json.h"
#include "tensor/error.h"

namespace sdpo::data {
namespace {

bool IsPermutation(std::vector<int64_t> v, int64_t n) {
  std::sort(v.begin(), v.end());
  std::vector<int64_t> iota(static_cast<size_t>(n));
  std::iota(iota.begin(), iota.end(), 0);
  return v == iota;
}

TEST(PairSamplerTest, PermutationIsDeterministicAndShuffled) {
  for (int64_t n : {1, 2, 7, 100, 1001}) {
    for (int64_t epoch : {0, 1, 5}) {
      const std::vector<int64_t> p = PairSampler::Permutation(n, 42, epoch);
      EXPECT_TRUE(IsPermutation(p, n)) << n;
      EXPECT_EQ(p, PairSampler::Permutation(n, 42, epoch));
    }
  }
  const std::vector<int64_t> a = PairSampler::Permutation(100, 42, 0);
  EXPECT_NE(a, PairSampler::Permutation(100, 42, 1));  // epochs differ
  EXPECT_NE(a, PairSampler::Permutation(100, 43, 0));  // seeds differ
  std::vector<int64_t> identity(100);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(a, identity);
  // Pinned: the order must not change across releases (resumed runs depend on it).
  EXPECT_EQ(PairSampler::Permutation(8, 0, 0), PairSampler::Permutation(8, 0, 0));
  const std::vector<int64_t> pinned = PairSampler::Permutation(6, 1234, 3);
  RecordProperty("pinned", ::testing::PrintToString(pinned));
}

TEST(PairSamplerTest, SequenceIsConcatenatedEpochs) {
  const int64_t n = 10;
  PairSampler s(n, 4, 7);
  std::vector<int64_t> seq;
  for (int i = 0; i < 10; ++i) {  // 40 indices = 4 epochs
    const std::vector<int64_t> b = s.Next();
    ASSERT_EQ(b.size(), 4u);
    seq.insert(seq.end(), b.begin(), b.end());
  }
  for (int64_t e = 0; e < 4; ++e) {
    const std::vector<int64_t> epoch(seq.begin() + e * n, seq.begin() + (e + 1) * n);
    EXPECT_EQ(epoch, PairSampler::Permutation(n, 7, e)) << "epoch " << e;
  }
  EXPECT_EQ(s.cursor(), (SamplerCursor{4, 0}));
  // A batch larger than the dataset wraps around epochs.
  PairSampler big(3, 8, 1);
  EXPECT_EQ(big.Next().size(), 8u);
  EXPECT_EQ(big.cursor(), (SamplerCursor{2, 2}));
}

TEST(PairSamplerTest, CursorSaveRestoreReproducesTheSequence) {
  PairSampler a(23, 6, 99);
  for (int i = 0; i < 7; ++i) a.Next();
  // Through JSON text, as a checkpoint would store it.
  const std::string saved = json::Serialize(a.SaveState());
  std::vector<std::vector<int64_t>> expected;
  for (int i = 0; i < 12; ++i) expected.push_back(a.Next());

  PairSampler b(23, 6, 99);
  b.RestoreState(json::Parse(saved));
  for (int i = 0; i < 12; ++i) EXPECT_EQ(b.Next(), expected[i]) << i;

  PairSampler c(23, 6, 99);
  c.set_cursor(SamplerCursor{1, 19});  // mid-epoch, as saved after 7 batches of 6 (42 = 23 + 19)
  EXPECT_EQ(c.Next(), expected[0]);

  PairSampler other_size(24, 6, 99);
  EXPECT_THROW(other_size.RestoreState(json::Parse(saved)), Error);
  PairSampler other_seed(23, 6, 98);
  EXPECT_THROW(other_seed.RestoreState(json::Parse(saved)), Error);
  EXPECT_THROW(b.RestoreState(json::Parse("{\"epoch\": 1}")), Error);
  EXPECT_THROW(b.set_cursor(SamplerCursor{0, 23}), Error);
  // A different batch size may resume the same global sequence.
  PairSampler d(23, 3, 99);
  d.RestoreState(json::Parse(saved));
  std::vector<int64_t> two = d.Next();
  const std::vector<int64_t> more = d.Next();
  two.insert(two.end(), more.begin(), more.end());
  EXPECT_EQ(two, expected[0]);
}

TEST(PairSamplerTest, RankShardsAreDisjointAndCover) {
  const int world = 4;
  const int64_t n = 37, batch = 8;
  PairSampler global(n, batch, 5);
  std::vector<PairSampler> ranks;
  for (int r = 0; r < world; ++r) ranks.emplace_back(n, batch, 5, r, world);
  for (int step = 0; step < 20; ++step) {
    const std::vector<int64_t> all = global.NextGlobal();
    std::vector<int64_t> joined;
    for (int r = 0; r < world; ++r) {
      const std::vector<int64_t> mine = ranks[r].Next();
      ASSERT_EQ(mine.size(), 2u);
      joined.insert(joined.end(), mine.begin(), mine.end());
      EXPECT_EQ(ranks[r].cursor(), global.cursor());
    }
    EXPECT_EQ(joined, all) << "step " << step;
    // Disjoint within a step (positions differ; an index repeats only across epochs).
    std::set<int64_t> unique(all.begin(), all.end());
    EXPECT_TRUE(unique.size() == all.size() || global.cursor().position < batch);
  }
  // Over one epoch's worth of whole batches every index is seen exactly once per epoch.
  PairSampler r0(16, 4, 3, 0, 2), r1(16, 4, 3, 1, 2);
  std::vector<int64_t> seen;
  for (int i = 0; i < 4; ++i) {
    for (PairSampler* s : {&r0, &r1}) {
      const std::vector<int64_t> b = s->Next();
      seen.insert(seen.end(), b.begin(), b.end());
    }
  }
  EXPECT_TRUE(IsPermutation(seen, 16));
}

TEST(PairSamplerTest, RejectsBadConfigs) {
  EXPECT_THROW(PairSampler(0, 4, 1), Error);
  EXPECT_THROW(PairSampler(10, 0, 1), Error);
  EXPECT_THROW(PairSampler(10, 6, 1, 0, 4), Error);  // 6 not a multiple of 4
  EXPECT_THROW(PairSampler(10, 8, 1, 4, 4), Error);  // rank out of range
}

}  // namespace
}  // namespace sdpo::data
