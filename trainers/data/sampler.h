// Deterministic epoch order, batching, resumable cursor and data-parallel sharding.
//
// The global sequence of pair indices is the concatenation of per-epoch permutations:
// epoch e visits every pair once, in the order of Permutation(n, seed, e) (indices sorted by a
// Philox key of (seed, epoch, index), so any machine computes the same order). Global batches
// take the next `global_batch` indices of that sequence; a batch may straddle two epochs, so no
// pair is ever dropped. With world_size ranks, rank r takes the contiguous slice
// [r * B/n, (r + 1) * B/n) of every global batch: the ranks' slices are disjoint and cover the
// batch, and the global sequence does not depend on the number of ranks.
//
// The cursor (epoch, position within the epoch's permutation) is all the state: saving it with
// a checkpoint and restoring it makes a resumed run see exactly the same batches.
#pragma once

#include <cstdint>
#include <vector>

#include "io/json.h"

namespace sdpo::data {

struct SamplerCursor {
  int64_t epoch = 0;
  int64_t position = 0;  // pairs of this epoch already consumed, in [0, dataset_size)
  bool operator==(const SamplerCursor& o) const {
    return epoch == o.epoch && position == o.position;
  }
  bool operator!=(const SamplerCursor& o) const { return !(*this == o); }
};

class PairSampler {
 public:
  // global_batch must be a positive multiple of world_size; 0 <= rank < world_size.
  PairSampler(int64_t dataset_size, int64_t global_batch, uint64_t seed, int rank = 0,
              int world_size = 1);

  // The order in which epoch `epoch` visits [0, n): a permutation, a pure function of
  // (n, seed, epoch).
  static std::vector<int64_t> Permutation(int64_t n, uint64_t seed, int64_t epoch);

  // This rank's indices of the next global batch (global_batch / world_size of them); advances
  // the cursor by global_batch.
  std::vector<int64_t> Next();
  // The whole next global batch (every rank's share, in rank order); advances the cursor.
  std::vector<int64_t> NextGlobal();

  const SamplerCursor& cursor() const { return cursor_; }
  void set_cursor(const SamplerCursor& cursor);  // validates the range

  // {"epoch", "position", "dataset_size", "seed"}: the cursor plus what it is only valid for.
  json::Value SaveState() const;
  // Restores a SaveState() value. Throws sdpo::Error when it was saved for another dataset size
  // or seed (the sequence would silently differ), or is malformed.
  void RestoreState(const json::Value& state);

  int64_t dataset_size() const { return n_; }
  int64_t global_batch() const { return global_batch_; }
  int64_t local_batch() const { return global_batch_ / world_size_; }
  uint64_t seed() const { return seed_; }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

 private:
  const std::vector<int64_t>& Order(int64_t epoch);

  int64_t n_;
  int64_t global_batch_;
  uint64_t seed_;
  int rank_, world_size_;
  SamplerCursor cursor_;
  std::vector<int64_t> order_;  // permutation of order_epoch_
  int64_t order_epoch_ = -1;
};

}  // namespace sdpo::data
