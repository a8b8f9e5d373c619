// Test fixtures shared by the trainer tests: a tiny Wan2.1 configuration, model and run, a
// tiny CogVideoX configuration, and synthetic preference pairs for the Wan2.1 (latents [4, 2, 4, 4]
// = 8 tokens, contexts [3, 8]).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "models/cogvideox/config.h"
#include "models/wan21/model.h"
#include "trainers/data/preference_dataset.h"
#include "trainers/trainer.h"

namespace sdpo::trainers::testing {

// Width 32, 2 heads, in/out 4 channels, text 8-dim; the rest as given.
wan21::WanConfig TinyWanConfig(int64_t num_layers = 2, int64_t ffn_dim = 64, int64_t text_len = 6);

// The default tiny Wan2.1 (init seed 5) with rank-4 LoRA on its self-attention and MLP.
std::unique_ptr<wan21::WanModel> MakeTinyLoraModel();

// A short CPU run: batch 2, lr 1e-3, seed 11, beta 50, no progress bar.
TrainerConfig TinyRunConfig(const std::string& out, int64_t steps);

// A tiny CogVideoX: 2 heads of 8, one layer, 4 channels, 4x4 latents, 2 latent frames.
cogvideox::CogVideoXConfig TinyCogVideoXConfig();

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
