// Loading Wan2.1 DiT weights: the official `diffusion_pytorch_model*.safetensors` (one file or
// shards with a `.safetensors.index.json`; F32, BF16, F16 or F64 on disk) by name lookup, and the
// diffusers `WanTransformer3DModel` layout through one name table. Keys may carry a common
// prefix that other tools add ("model.diffusion_model.", "diffusion_model.", "model.",
// "transformer."); it is stripped. The same names saved by torch.save (.pth / .pt / .bin) load
// too, read without executing anything (io/torch_pickle.h).
//
// Every problem is an sdpo::Error naming the checkpoint and the key: a missing key (with the
// expected shape), an unexpected key, a shape mismatch (expected and found shapes), a dtype that
// is not floating point (expected and found), and whatever the safetensors reader rejects
// (truncated or hostile files). Nothing is written into the model unless every check passes.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/wan21/config.h"
#include "models/wan21/model.h"

namespace sdpo::wan21 {

enum class NameFormat { kOfficial, kDiffusers };
const char* NameFormatName(NameFormat format);  // "official" | "diffusers"

// The diffusers name of an official parameter name and back; nullopt for names outside the
// model (e.g. "blocks.0.attn1.to_q.lora_A.weight").
std::optional<std::string> OfficialToDiffusers(const std::string& official);
std::optional<std::string> DiffusersToOfficial(const std::string& diffusers);

struct LoadOptions {
  // Keys of the checkpoint that the model lacks are an error (else ignored and reported).
  bool strict = true;
};

struct LoadReport {
  std::string path;
  NameFormat format = NameFormat::kOfficial;
  std::string prefix;                     // stripped from every key ("" when none)
  std::map<std::string, int64_t> dtypes;  // safetensors dtype name -> tensor count
  int64_t tensors = 0;                    // parameters loaded
  int64_t values = 0;                     // their elements
  std::vector<std::string> ignored;       // checkpoint keys not used (strict = false)
};

// Loads the weights of a checkpoint (safetensors file, index or directory, or a torch .pth;
// see OpenCheckpoint)
// into `model`, converting to the parameters' dtype. LoRA adapters attached to the model are not
// expected in the file and keep their values.
LoadReport LoadWeights(WanModel& model, const std::string& path, const LoadOptions& options = {});
LoadReport LoadWeights(WanModel& model, const CheckpointView& checkpoint,
                       const LoadOptions& options = {});

// The config of a checkpoint, in this order: __metadata__["config"] (single file) or the
// index's metadata "config"; a config.json next to the weights (official or diffusers); else
// inferred from the tensor shapes with head_dim 128 (the released models'). `source` receives
// where it came from.
WanConfig ResolveConfig(const CheckpointView& checkpoint, std::string* source = nullptr);
// Sizes from the shapes (layers, dim, ffn_dim, text_dim, freq_dim, in_dim, out_dim, patch) and
// num_heads = dim / head_dim.
WanConfig InferConfig(const CheckpointView& checkpoint, int64_t head_dim = 128);

// Throws, naming the config key or the tensor, unless the checkpoint holds a tensor of the right
// shape for every parameter of `config`. Allocates nothing: LoadModel calls it before building.
void CheckConfigMatchesFile(const WanConfig& config, const CheckpointView& checkpoint);

// The DiT weights of `path`: in a folder, diffusion_pytorch_model.safetensors.index.json or
// diffusion_pytorch_model.safetensors when present (a released folder also holds the VAE and the
// text encoder), else `path` itself (a file, or a folder with one checkpoint).
std::string DitWeightsPath(const std::string& path);

// Builds a model for the checkpoint (config as ResolveConfig, or `config` when given) without
// random initialisation and loads it. The config is checked against the file first.
std::unique_ptr<WanModel> LoadModel(const std::string& path,
                                    const std::optional<WanConfig>& config = std::nullopt,
                                    const LoadOptions& options = {}, LoadReport* report = nullptr);

// Writes the model's parameters (f32, or their dtype with keep_dtype) under official or
// diffusers names, with the official config JSON in __metadata__["config"].
void SaveWeights(const WanModel& model, const std::string& path,
                 NameFormat format = NameFormat::kOfficial, bool keep_dtype = false);

}  // namespace sdpo::wan21
