// How a flat buffer (e.g. every trainable parameter, concatenated) is split over the ranks for
// ZeRO-1, and the padded reduce-scatter / all-gather that move it (docs/distributed.md).
//
// numel elements over `world` ranks: every rank owns one shard of S = ceil(numel / world)
// elements, rank r the flat range [r S, (r + 1) S) clipped to [0, numel). The buffer is padded
// with zeros to world x S elements so that every collective moves equal blocks; the last ranks'
// shards may be partly (or, when numel < world, wholly) padding.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"
#include "trainers/distributed/communicator.h"

namespace sdpo::distributed {

struct ShardLayout {
  ShardLayout(int64_t numel, int world);
  int64_t numel = 0;
  int world = 1;
  int64_t shard_size = 0;         // S = ceil(numel / world); 0 only when numel is 0
  int64_t padded_numel = 0;       // world x S
  int64_t begin(int rank) const;  // first owned element, clipped to numel
  int64_t end(int rank) const;    // one past the last owned element, clipped to numel
  int64_t owned(int rank) const { return end(rank) - begin(rank); }
};

// Reduce-scatter (sum) of a flat contiguous tensor of any size: returns this rank's shard
// (layout.shard_size elements; the padding past numel is zero).
Tensor ReduceScatterShard(Communicator& comm, const Tensor& flat);
// All-gather of every rank's shard (shard_size elements of ShardLayout(numel, world)) into a flat
// tensor of numel elements (the padding dropped).
Tensor AllGatherShards(Communicator& comm, const Tensor& shard, int64_t numel);

}  // namespace sdpo::distributed
