// The models the trainer can fine-tune, behind one interface: what --model names, how its
// checkpoint loads, its noise schedule, its default LoRA targets and the latent layout of its
// datasets. Preference datasets always store latents as [C, F, H, W]; models whose own layout
// differs (CogVideoX: [F, C, H, W]) are wrapped so that the trainer never sees the difference.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/diffusion_model.h"
#include "models/schedules.h"

namespace sdpo::trainers {

struct TrainModel {
  std::unique_ptr<models::DiffusionModel> model;  // takes [C, F, H, W] latents
  std::optional<NoiseSchedule> schedule;          // always set by LoadTrainModel
  std::vector<std::string> lora_targets;          // default adapter targets (checkpoint names)
  int64_t latent_channels = 0, text_dim = 0, max_text_len = 0;
  std::array<int64_t, 3> latent_patch = {1, 1, 1};  // (F, H, W) of a latent are multiples
};

// The training schedule of a model family (what LoadTrainModel sets), without loading a model.
NoiseSchedule TrainSchedule(const std::string& name);

// name: wan21 | cogvideox-2b | cogvideox-5b. checkpoint: a file, shard index or directory (for
// CogVideoX also a diffusers folder, whose transformer/ is loaded).
TrainModel LoadTrainModel(const std::string& name, const std::string& checkpoint);

}  // namespace sdpo::trainers
