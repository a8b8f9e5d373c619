#include "trainers/data/loader.h"

#include <cstring>
#include <utility>

#include "tensor/error.h"
#include "tensor/ops.h"

namespace sdpo::data {
namespace {

// Stacks same-shaped tensors into [B, ...] f32; undefined when the shapes differ.
Tensor StackIfSameShape(const std::vector<const Tensor*>& xs) {
  const Shape& shape = xs[0]->shape();
  for (const Tensor* x : xs) {
    if (x->shape() != shape) return Tensor();
  }
  Shape stacked = shape;
  stacked.insert(stacked.begin(), static_cast<int64_t>(xs.size()));
  Tensor out = Tensor::Empty(stacked, kF32);
  float* dst = out.data<float>();
  const int64_t n = NumElements(shape);
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor c = ops::Contiguous(ops::Cast(*xs[i], kF32));
    std::memcpy(dst + static_cast<int64_t>(i) * n, c.data<float>(),
                static_cast<size_t>(n) * sizeof(float));
  }
  return out;
}

}  // namespace

PreferenceBatch LoadBatch(const PairDataset& data, const std::vector<int64_t>& indices,
                          const SamplerCursor& cursor_after) {
  SDPO_CHECK(!indices.empty(), "LoadBatch: no indices");
  PreferenceBatch batch;
  batch.indices = indices;
  batch.cursor = cursor_after;
  std::vector<const Tensor*> winners, losers;
  std::vector<float> weights;
  batch.pairs.reserve(indices.size());
  for (int64_t i : indices) {
    batch.pairs.push_back(data.Get(i));
  }
  for (const PreferencePair& p : batch.pairs) {
    winners.push_back(&p.winner);
    losers.push_back(&p.loser);
    weights.push_back(static_cast<float>(p.weight));
  }
  batch.winners = StackIfSameShape(winners);
  batch.losers = StackIfSameShape(losers);
  batch.weights = Tensor::FromVector(weights, {static_cast<int64_t>(weights.size())});
  return batch;
}

PreferenceBatch NextBatch(const PairDataset& data, PairSampler& sampler) {
  std::vector<int64_t> indices = sampler.Next();
  return LoadBatch(data, indices, sampler.cursor());
}

PrefetchingLoader::PrefetchingLoader(const PairDataset& data, PairSampler sampler, int depth)
    : data_(data), sampler_(std::move(sampler)), depth_(depth) {
  SDPO_CHECK(depth_ >= 1, "PrefetchingLoader: depth must be >= 1, got ", depth_);
  SDPO_CHECK(sampler_.dataset_size() == data_.size(), "PrefetchingLoader: the sampler is for ",
             sampler_.dataset_size(), " pairs but the dataset has ", data_.size());
  worker_ = std::thread([this] { Run(); });
}

PrefetchingLoader::~PrefetchingLoader() { Stop(); }

void PrefetchingLoader::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  space_.notify_all();
  ready_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void PrefetchingLoader::Run() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      space_.wait(lock, [&] { return stop_ || static_cast<int>(queue_.size()) < depth_; });
      if (stop_) return;
    }
    try {
      PreferenceBatch batch = NextBatch(data_, sampler_);
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(batch));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
      ready_.notify_all();
      return;  // the sequence cannot continue past a batch that failed
    }
    ready_.notify_all();
  }
}

PreferenceBatch PrefetchingLoader::Next() {
  std::unique_lock<std::mutex> lock(mu_);
  ready_.wait(lock, [&] { return !queue_.empty() || error_ != nullptr || stop_; });
  if (!queue_.empty()) {  // batches prepared before a failure are still delivered, in order
    PreferenceBatch batch = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    space_.notify_one();
    return batch;
  }
  if (error_) std::rethrow_exception(error_);
  SDPO_FAIL("PrefetchingLoader::Next() after Stop()");
}

}  // namespace sdpo::data
