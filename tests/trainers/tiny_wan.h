// Test fixtures shared by the trainer tests: a tiny Wan2.1 configuration and synthetic
// preference pairs for it (latents [4, 2, 4, 4] = 8 tokens, contexts [3, 8]).
#pragma once

#include <cstdint>

#include "models/wan21/config.h"
#include "trainers/data/preference_dataset.h"

namespace sdpo::trainers::testing {

// Width 32, 2 heads, in/out 4 channels, text 8-dim; the rest as given.
wan21::WanConfig TinyWanConfig(int64_t num_layers = 2, int64_t ffn_dim = 64,
                               int64_t text_len = 6);

// n pairs: the winner a random latent scaled by 0.5, the loser the winner plus unit noise,
// a random context; the same values for the same index on every call (Philox).
class SyntheticPairs : public data::PairDataset {
 public:
  explicit SyntheticPairs(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }
  data::PreferencePair Get(int64_t i) const override;

 private:
  int64_t n_;
};

}  // namespace sdpo::trainers::testing
