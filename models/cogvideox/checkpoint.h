// Loading CogVideoX DiT weights in the diffusers `CogVideoXTransformer3DModel` format
// (`transformer/diffusion_pytorch_model*.safetensors`: one file or shards with a
// `.safetensors.index.json`; F32, BF16, F16 or F64 on disk) by name lookup. Keys may carry a
// common prefix ("model.diffusion_model.", "diffusion_model.", "transformer.", "model."); it is
// stripped. The 2B `patch_embed.pos_embedding` buffer is non-persistent in diffusers and is
// recomputed, so a key of that name is ignored.
//
// Every problem is an sdpo::Error naming the checkpoint and the key: a missing key (with the
// expected shape), an unexpected key (strict), a shape mismatch (expected and found), a dtype
// that is not floating point, and whatever the safetensors reader rejects. Nothing is written
// into the model unless every check passes.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/cogvideox/config.h"
#include "models/cogvideox/model.h"

namespace sdpo::cogvideox {

struct LoadOptions {
  bool strict = true;  // checkpoint keys the model lacks are an error (else ignored, reported)
};

struct LoadReport {
  std::string path;
  std::string prefix;                     // stripped from every key ("" when none)
  std::map<std::string, int64_t> dtypes;  // safetensors dtype name -> tensor count
  int64_t tensors = 0;                    // parameters loaded
  int64_t values = 0;                     // their elements
  std::vector<std::string> ignored;       // checkpoint keys not used
};

LoadReport LoadWeights(CogVideoXModel& model, const std::string& path,
                       const LoadOptions& options = {});
LoadReport LoadWeights(CogVideoXModel& model, const CheckpointView& checkpoint,
                       const LoadOptions& options = {});

// The config of a checkpoint: __metadata__["config"] (single file) or the index's metadata
// "config"; else a config.json next to the weights (the diffusers layout); else an error.
CogVideoXConfig ResolveConfig(const CheckpointView& checkpoint, std::string* source = nullptr);

// Throws, naming the tensors and the config, unless the checkpoint holds a tensor of the right
// shape for every parameter of `config`. Allocates nothing: LoadModel calls it before building.
void CheckConfigMatchesFile(const CogVideoXConfig& config, const CheckpointView& checkpoint);

// Builds a model (config as ResolveConfig, or `config`) without random initialisation and loads
// the weights into it (f32 parameters).
std::unique_ptr<CogVideoXModel> LoadModel(
    const std::string& path, const std::optional<CogVideoXConfig>& config = std::nullopt,
    const LoadOptions& options = {}, LoadReport* report = nullptr);

// Writes the parameters (f32, or their dtype with keep_dtype) under diffusers names, with the
// config JSON in __metadata__["config"].
void SaveWeights(const CogVideoXModel& model, const std::string& path, bool keep_dtype = false);

}  // namespace sdpo::cogvideox
