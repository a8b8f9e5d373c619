// Batches of preference pairs: the synchronous path (LoadBatch) and a background prefetcher
// that prepares the next batches while the training step runs.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "trainers/data/preference_dataset.h"
#include "trainers/data/sampler.h"

namespace sdpo::data {

struct PreferenceBatch {
  std::vector<int64_t> indices;  // dataset indices of this rank's share of the global batch
  // The sampler cursor AFTER this batch: save it with a checkpoint taken after training on this
  // batch, and a resumed run continues with the next one. (A prefetching loader's own sampler
  // runs ahead, so do not save that one.)
  SamplerCursor cursor;
  std::vector<PreferencePair> pairs;  // f32 tensors
  // [B, C, F, H, W] f32 when all latents of the batch share one shape; undefined otherwise
  // (variable-size datasets: use pairs[i].winner).
  Tensor winners, losers;
  Tensor weights;  // [B] f32
  int64_t size() const { return static_cast<int64_t>(pairs.size()); }
};

// Loads and stacks the pairs at `indices` (the synchronous path).
PreferenceBatch LoadBatch(const PairDataset& data, const std::vector<int64_t>& indices,
                          const SamplerCursor& cursor_after);

// Draws this rank's next batch from `sampler` and loads it.
PreferenceBatch NextBatch(const PairDataset& data, PairSampler& sampler);

// A background thread that runs NextBatch ahead of the caller, keeping at most `depth` batches
// ready. Next() returns exactly the batches that calling NextBatch(data, sampler) in a loop
// would. An exception thrown while preparing a batch (e.g. an I/O error) is rethrown by the
// Next() call that would have returned that batch, and by every later call. The destructor
// stops and joins the thread (it does not wait for the queue to drain).
class PrefetchingLoader {
 public:
  // `data` must outlive the loader.
  PrefetchingLoader(const PairDataset& data, PairSampler sampler, int depth = 2);
  ~PrefetchingLoader();
  PrefetchingLoader(const PrefetchingLoader&) = delete;
  PrefetchingLoader& operator=(const PrefetchingLoader&) = delete;

  PreferenceBatch Next();
  // Stops the worker (idempotent). Next() after Stop() throws.
  void Stop();

 private:
  void Run();

  const PairDataset& data_;
  PairSampler sampler_;  // owned by the worker thread
  const int depth_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<PreferenceBatch> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace sdpo::data
