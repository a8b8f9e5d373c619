#include "trainers/distributed/sharding.h"

#include <algorithm>

#include "tensor/error.h"
#include "tensor/ops.h"

namespace sdpo::distributed {

ShardLayout::ShardLayout(int64_t n, int w) : numel(n), world(w) {
  SDPO_CHECK(n >= 0 && w >= 1, "ShardLayout: numel (", n, ") must be >= 0 and world (", w,
             ") >= 1");
  shard_size = (n + w - 1) / w;
  padded_numel = shard_size * w;
}

int64_t ShardLayout::begin(int rank) const {
  SDPO_CHECK(rank >= 0 && rank < world, "ShardLayout: rank ", rank, " outside [0, ", world, ")");
  return std::min(numel, rank * shard_size);
}

int64_t ShardLayout::end(int rank) const {
  SDPO_CHECK(rank >= 0 && rank < world, "ShardLayout: rank ", rank, " outside [0, ", world, ")");
  return std::min(numel, (rank + 1) * shard_size);
}

Tensor ReduceScatterShard(Communicator& comm, const Tensor& flat) {
  const ShardLayout layout(flat.numel(), comm.world_size());
  Tensor input = ops::Contiguous(ops::Reshape(flat, {flat.numel()}));
  if (layout.padded_numel != flat.numel()) {
    Tensor padded = Tensor::Zeros({layout.padded_numel}, flat.dtype(), flat.device());
    ops::CopyInto(ops::Narrow(padded, 0, 0, flat.numel()), input);
    input = padded;
  }
  Tensor shard = Tensor::Empty({layout.shard_size}, flat.dtype(), flat.device());
  comm.ReduceScatterSum(input, shard);
  return shard;
}

Tensor AllGatherShards(Communicator& comm, const Tensor& shard, int64_t numel) {
  const ShardLayout layout(numel, comm.world_size());
  SDPO_CHECK(shard.numel() == layout.shard_size, "AllGatherShards (rank ", comm.rank(), " of ",
             comm.world_size(), "): the shard has ", shard.numel(), " elements, expected ",
             layout.shard_size, " (", numel, " elements over ", comm.world_size(), " ranks)");
  Tensor out = Tensor::Empty({layout.padded_numel}, shard.dtype(), shard.device());
  comm.AllGather(ops::Contiguous(shard), out);
  if (layout.padded_numel == numel) return out;
  return ops::Contiguous(ops::Narrow(out, 0, 0, numel));
}

}  // namespace sdpo::distributed
