// ZeRO stage 1 (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
// Parameter Models", 2020) for AdamW: the f32 master weights and both AdamW moments are sharded
// over the ranks instead of replicated (docs/distributed.md, "ZeRO-1").
//
// The trainable parameters, in order, form one flat f32 buffer laid out by ShardLayout (padded to
// world x S). Each step: the gradients are packed into that buffer and reduce-scattered (sum), so
// every rank holds the summed gradient of its shard only; the NaN/Inf check and the squared norm
// are reduced over ranks (one all-reduce of two doubles) so clipping uses the global norm; each
// rank runs AdamW on its shard, element for element what nn::AdamW does (nn::AdamWUpdate); the
// updated shards are all-gathered into every rank's full parameters.
//
// The state dict has nn::AdamW's keys and shapes ("step", "<param>.step", "<param>.exp_avg",
// "<param>.exp_avg_sq"): GatherStateDict() assembles it from the shards, LoadStateDict() takes
// this rank's shard of it, so checkpoints are interchangeable with unsharded runs and with any
// number of ranks.
#pragma once

#include <cstdint>
#include <vector>

#include "nn/optim.h"
#include "trainers/distributed/communicator.h"
#include "trainers/distributed/sharding.h"

namespace sdpo::distributed {

class ZeroAdamW {
 public:
  // params: contiguous CPU f32 tensors, identical on every rank (e.g. after a broadcast); the
  // master shard is copied from them. Not owned; `comm` must outlive this.
  ZeroAdamW(nn::NamedTensors params, const nn::AdamWOptions& options, Communicator& comm);

  struct StepResult {
    bool finite = false;   // false: NaN/Inf on some rank; nothing was updated on any rank
    double grad_norm = 0;  // global L2 norm of the summed gradient, before clipping
  };
  // Collective. Sums the parameters' gradients over ranks (a missing gradient counts as zero and
  // every parameter's update count advances), clips them to max_grad_norm (<= 0: no clipping) by
  // the global norm, updates this rank's shard with AdamW at learning rate `lr` and all-gathers
  // the new weights into the parameters. Gradients are left as they were.
  StepResult Step(double lr, double max_grad_norm);

  // Collective: the full state (nn::AdamW::StateDict() keys and shapes), on every rank.
  nn::TensorMap GatherStateDict();
  // Restores this rank's shard from a full state (validated like nn::AdamW::LoadStateDict,
  // strict) and re-reads the master shard from the parameters: call it after restoring them.
  void LoadStateDict(const nn::TensorMap& state);

  const ShardLayout& layout() const { return layout_; }
  int64_t step() const { return step_; }

 private:
  // The part of one parameter inside this rank's shard.
  struct Segment {
    size_t param;         // index into params_
    int64_t param_begin;  // first element, in the parameter
    int64_t shard_begin;  // where it sits in the shard
    int64_t length;
    bool decay;
  };
  void RefreshMaster();  // master shard <- the parameters' current values

  nn::NamedTensors params_;
  nn::AdamWOptions options_;
  Communicator& comm_;
  std::vector<int64_t> offsets_;  // each parameter's first element in the flat buffer
  ShardLayout layout_;
  std::vector<Segment> segments_;
  Tensor master_, exp_avg_, exp_avg_sq_;  // this rank's shard: layout_.shard_size f32 each
  int64_t step_ = 0;
  std::vector<int64_t> steps_;  // per parameter (replicated: tiny)
};

}  // namespace sdpo::distributed
