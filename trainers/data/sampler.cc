#include "trainers/data/sampler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tensor/error.h"
#include "tensor/philox.h"

namespace sdpo::data {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

PairSampler::PairSampler(int64_t dataset_size, int64_t global_batch, uint64_t seed, int rank,
                         int world_size)
    : n_(dataset_size),
      global_batch_(global_batch),
      seed_(seed),
      rank_(rank),
      world_size_(world_size) {
  SDPO_CHECK(n_ > 0, "PairSampler: dataset_size must be > 0, got ", n_);
  SDPO_CHECK(world_size_ >= 1 && rank_ >= 0 && rank_ < world_size_, "PairSampler: rank ", rank_,
             " is not in [0, world_size = ", world_size_, ")");
  SDPO_CHECK(global_batch_ >= 1 && global_batch_ % world_size_ == 0, "PairSampler: global_batch ",
             global_batch_, " must be a positive multiple of world_size ", world_size_,
             " (every rank takes the same number of pairs)");
}

std::vector<int64_t> PairSampler::Permutation(int64_t n, uint64_t seed, int64_t epoch) {
  SDPO_CHECK(n >= 0 && epoch >= 0, "PairSampler::Permutation: need n >= 0 and epoch >= 0, got n ",
             n, ", epoch ", epoch);
  const uint64_t key = SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(epoch) + 0x5EED));
  std::vector<std::pair<uint64_t, int64_t>> keyed(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const Philox4 r = Philox4x32(static_cast<uint64_t>(i), key);
    keyed[i] = {(static_cast<uint64_t>(r.v[0]) << 32) | r.v[1], i};
  }
  std::sort(keyed.begin(), keyed.end());  // ties (vanishingly rare) broken by index
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = keyed[i].second;
  return order;
}

const std::vector<int64_t>& PairSampler::Order(int64_t epoch) {
  if (epoch != order_epoch_) {
    order_ = Permutation(n_, seed_, epoch);
    order_epoch_ = epoch;
  }
  return order_;
}

std::vector<int64_t> PairSampler::NextGlobal() {
  std::vector<int64_t> batch;
  batch.reserve(static_cast<size_t>(global_batch_));
  while (static_cast<int64_t>(batch.size()) < global_batch_) {
    const std::vector<int64_t>& order = Order(cursor_.epoch);
    batch.push_back(order[static_cast<size_t>(cursor_.position)]);
    if (++cursor_.position == n_) {
      cursor_.position = 0;
      ++cursor_.epoch;
    }
  }
  return batch;
}

std::vector<int64_t> PairSampler::Next() {
  const std::vector<int64_t> global = NextGlobal();
  const int64_t b = local_batch();
  return std::vector<int64_t>(global.begin() + rank_ * b, global.begin() + (rank_ + 1) * b);
}

void PairSampler::set_cursor(const SamplerCursor& cursor) {
  SDPO_CHECK(cursor.epoch >= 0 && cursor.position >= 0 && cursor.position < n_,
             "PairSampler: cursor (epoch ", cursor.epoch, ", position ", cursor.position,
             ") out of range for a dataset of ", n_, " pairs");
  cursor_ = cursor;
}

json::Value PairSampler::SaveState() const {
  return json::Value::MakeObject({
      {"epoch", json::Value::Int(cursor_.epoch)},
      {"position", json::Value::Int(cursor_.position)},
      {"dataset_size", json::Value::Int(n_)},
      // As a string: JSON integers are int64 and the seed is a uint64.
      {"seed", json::Value::String(absl::StrCat(seed_))},
  });
}

void PairSampler::RestoreState(const json::Value& state) {
  auto int_field = [&](const char* name) {
    const json::Value* v = state.find(name);
    SDPO_CHECK(v != nullptr && v->is_int(), "PairSampler::RestoreState: expected an integer \"",
               name, "\" in the data cursor ", state.is_null() ? "null" : json::Serialize(state));
    return v->as_int();
  };
  SDPO_CHECK(state.is_object(),
             "PairSampler::RestoreState: the data cursor must be an object, "
             "found ",
             json::TypeName(state.type()));
  const int64_t n = int_field("dataset_size");
  const json::Value* seed = state.find("seed");
  SDPO_CHECK(seed != nullptr && seed->is_string(),
             "PairSampler::RestoreState: expected a string \"seed\" in the data cursor ",
             json::Serialize(state));
  SDPO_CHECK(n == n_ && seed->as_string() == absl::StrCat(seed_),
             "PairSampler::RestoreState: the data cursor was saved for ", n, " pairs with seed ",
             seed->as_string(), ", but this run has ", n_, " pairs with seed ", seed_,
             "; resuming would visit a different sequence of pairs");
  set_cursor(SamplerCursor{int_field("epoch"), int_field("position")});
}

}  // namespace sdpo::data
