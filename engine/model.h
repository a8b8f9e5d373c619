// A diffusion transformer loaded from a checkpoint, on a Runtime's device: forward passes,
// samplers and LoRA adapters (docs/embedding.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/runtime.h"
#include "models/schedules.h"
#include "tensor/tensor.h"

namespace sdpo::models {
class DiffusionModel;
}  // namespace sdpo::models

namespace sdpo::engine {

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 8;                  // adapter output scaled by alpha / rank
  std::vector<std::string> targets;  // module-path patterns; empty: the model's defaults
  uint64_t seed = 0;                 // initialisation of the adapters
};

struct SampleOptions {
  int steps = 50;
  // Classifier-free guidance: v = v_uncond + g (v_cond - v_uncond); 1 runs the conditional
  // pass only (then null contexts are not needed).
  double guidance = 1.0;
  double shift = 5.0;            // flow models: the sigma grid's shift
  std::string solver = "unipc";  // flow: unipc | euler; DDPM: ddim | dpm
  uint64_t seed = 0;             // the initial noise (sample i draws from (seed, i))
};

class Model {
 public:
  // family: wan21 | cogvideox-2b | cogvideox-5b; checkpoint: a .safetensors file, a shard index
  // or a folder. The model lives on runtime.device() with its compute dtype; `runtime` must
  // outlive it.
  static std::unique_ptr<Model> Load(const Runtime& runtime, const std::string& family,
                                     const std::string& checkpoint);
  ~Model();

  const std::string& family() const { return family_; }
  // Latents are [C, F, H, W] with C = latent_channels(); contexts [L, text_dim()].
  int64_t latent_channels() const;
  int64_t text_dim() const;
  int64_t num_parameters(bool trainable_only = false) const;
  // The noise schedule the model was trained with (flow: Wan2.1's; DDPM: CogVideoX's).
  const NoiseSchedule& noise_schedule() const;

  // Freezes the base weights and attaches LoRA adapters (the only trainable parameters).
  void AttachLora(const LoraOptions& options);
  bool has_lora() const;
  void SaveAdapters(const std::string& path) const;  // PEFT names, safetensors
  void LoadAdapters(const std::string& path);

  // The denoiser's prediction for each latent at its timestep (flow: 1000 * sigma; DDPM: the
  // step index), without gradients. Inputs on any device; outputs on the CPU, f32.
  std::vector<Tensor> Forward(const std::vector<Tensor>& latents,
                              const std::vector<double>& timesteps,
                              const std::vector<Tensor>& contexts);

  // One latent of `latent_shape` per context, sampled from noise drawn with options.seed;
  // null_contexts (the negative prompt, one per context) only when options.guidance != 1.
  // Samples come back on the CPU, f32.
  std::vector<Tensor> Sample(const std::vector<int64_t>& latent_shape,
                             const std::vector<Tensor>& contexts,
                             const std::vector<Tensor>& null_contexts,
                             const SampleOptions& options);

  const Runtime& runtime() const { return runtime_; }
  // The model behind the API, for the engine's own parts (training).
  models::DiffusionModel& diffusion_model();

 private:
  struct State;
  Model(const Runtime& runtime, std::string family, std::unique_ptr<State> state);
  const Runtime& runtime_;
  std::string family_;
  std::unique_ptr<State> state_;
};

}  // namespace sdpo::engine
