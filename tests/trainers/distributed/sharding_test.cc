// ShardLayout arithmetic (ZeRO-1's padded flat layout) and the one-process collectives.
#include "trainers/distributed/sharding.h"

#include "gtest/gtest.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace sdpo::distributed {
namespace {

TEST(ShardLayoutTest, UnevenSizesArePaddedAtTheEnd) {
  const ShardLayout l(10, 4);  // S = 3: [0,3) [3,6) [6,9) [9,10) + 2 padding
  EXPECT_EQ(l.shard_size, 3);
  EXPECT_EQ(l.padded_numel, 12);
  const int64_t begins[] = {0, 3, 6, 9}, ends[] = {3, 6, 9, 10};
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(l.begin(r), begins[r]) << r;
    EXPECT_EQ(l.end(r), ends[r]) << r;
  }
}

TEST(ShardLayoutTest, FewerElementsThanRanksLeaveEmptyShards) {
  const ShardLayout l(2, 4);  // S = 1: ranks 2 and 3 hold only padding
  EXPECT_EQ(l.shard_size, 1);
  EXPECT_EQ(l.padded_numel, 4);
  EXPECT_EQ(l.owned(0), 1);
  EXPECT_EQ(l.owned(1), 1);
  EXPECT_EQ(l.owned(2), 0);
  EXPECT_EQ(l.owned(3), 0);
  EXPECT_EQ(ShardLayout(0, 3).shard_size, 0);
}

TEST(ShardLayoutTest, EvenSizesAndOneRank) {
  const ShardLayout even(12, 3);
  EXPECT_EQ(even.shard_size, 4);
  EXPECT_EQ(even.padded_numel, 12);
  const ShardLayout one(7, 1);
  EXPECT_EQ(one.shard_size, 7);
  EXPECT_EQ(one.end(0), 7);
  EXPECT_THROW(ShardLayout(5, 0), Error);
  EXPECT_THROW(one.begin(1), Error);
}

TEST(ShardLayoutTest, LocalReduceScatterAndAllGatherAreIdentities) {
  LocalCommunicator comm;
  Tensor x = ops::RandomNormal({3, 7}, 1, 0);
  Tensor shard = ReduceScatterShard(comm, x);
  ASSERT_EQ(shard.numel(), 21);
  EXPECT_EQ(shard.ToVector(), ops::Reshape(x, {21}).ToVector());
  Tensor back = AllGatherShards(comm, shard, 21);
  EXPECT_EQ(back.ToVector(), shard.ToVector());
  EXPECT_THROW(AllGatherShards(comm, shard, 20), Error);  // 20 elements need a 20-element shard
}

}  // namespace
}  // namespace sdpo::distributed
