// Trained adapters for other tools (//trainers:export_lora): PEFT, diffusers and ComfyUI names
// (nn::ConvertLora) with each model's module names, and the merged model as one safetensors file.
#pragma once

#include <functional>
#include <string>

#include "nn/lora.h"

namespace sdpo::trainers {

// The module path a tool sees for a path of our model (`model`: wan21 | cogvideox). Wan2.1:
// peft and diffusers load into diffusers' WanTransformer3DModel (blocks.0.attn1.to_q), comfyui
// and native keep the official names (blocks.0.self_attn.q). CogVideoX: our names are
// diffusers' already.
std::function<std::string(const std::string&)> LoraModuleRename(const std::string& model,
                                                                nn::LoraFormat format);

// Writes adapters in `format`: one safetensors file at `out`, or for peft the directory `out`
// with adapter_model.safetensors and adapter_config.json. Returns the files written.
std::vector<std::string> WriteLoraAs(const nn::LoraWeights& weights, const std::string& model,
                                     nn::LoraFormat format, const std::string& out);

// Loads a Wan2.1 DiT checkpoint, folds the adapters in (W + alpha / rank B A) and writes the
// merged weights as one safetensors file with official or diffusers names and the config in the
// metadata (loadable wherever the base checkpoint is).
void WriteMergedWan(const std::string& checkpoint, const std::string& adapters,
                    const std::string& out, bool diffusers_names);

}  // namespace sdpo::trainers
