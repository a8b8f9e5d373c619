// The embedded demo world (trainers/demo): a tiny Wan2.1-architecture model pretrained on
// synthetic videos of moving coloured blobs, text embeddings of its prompts, and a reward that
// scores a sample against its prompt. For trying the engine without real checkpoints or data.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/training.h"

namespace sdpo::demo {
class DemoWorld;
}  // namespace sdpo::demo

namespace sdpo::engine {

class Demo {
 public:
  Demo();
  ~Demo();

  // The base model ("wan21" family), relative to the workspace root; Bazel targets get it as
  // the data dependency //trainers/demo:base_model.safetensors.
  static std::string BaseModelPath();

  std::vector<std::string> train_prompts() const;
  std::vector<std::string> heldout_prompts() const;
  std::vector<int64_t> latent_shape() const;  // [C, F, H, W]
  // [L, D]: one row per word of the prompt (the demo's vocabulary only).
  Tensor EncodeText(const std::string& prompt) const;
  // The demo's sampler settings (flow-Euler, 16 steps, no guidance).
  SampleOptions sample_options() const;
  // How well a sample [C, F, H, W] shows the prompt (higher is better, about 0 to 1).
  double Reward(const std::string& prompt, const Tensor& latent) const;

  // Preference pairs made the paper's way: two samples of `base` per training prompt (its
  // adapters switched off), the higher-reward one the winner.
  std::unique_ptr<PairSource> MakePairs(Model& base, int pairs_per_prompt, uint64_t seed) const;

  struct Evaluation {
    double reward = 0;       // mean reward of the model's samples on the held-out prompts
    double base_reward = 0;  // the same with the adapters off, on the same noise
    double win_rate = 0;     // fraction of held-out samples beating the base's (ties 1/2)
  };
  Evaluation Evaluate(Model& policy, int samples_per_prompt, uint64_t seed) const;

 private:
  std::unique_ptr<demo::DemoWorld> world_;
};

}  // namespace sdpo::engine
