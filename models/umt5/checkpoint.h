// Loading T5 encoder weights by name: the official Wan names
// (models/umt5/model.h; the `models_t5_umt5-xxl-enc-bf16.pth` state dict) and
// the transformers names
// (`UMT5EncoderModel` / `T5EncoderModel`: `shared.weight` or
// `encoder.embed_tokens.weight`,
// `encoder.block.N.layer.0.SelfAttention.q.weight`, ...), one file, a sharded
// index or a directory holding one, through one name table. A prefix common to
// every key that some tools add (`text_encoder.`, `model.`) is stripped.
//
// The config comes from LoadOptions::config, else a `t5_config.json` beside the
// weights (the fixtures' form, models/umt5/config.h), else a transformers `config.json` beside
// them (one with `d_model`: a diffusers `text_encoder/` folder), else the tensor shapes
// (which give the official sizes for the official checkpoints). Every problem
// is an sdpo::Error naming the file and the key.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "models/umt5/config.h"
#include "models/umt5/model.h"
#include "nn/module.h"

namespace sdpo::umt5 {

enum class NameFormat { kOfficial, kTransformers };
const char* NameFormatName(NameFormat format);  // "official" | "transformers"

// The official name of a transformers name; `shared_pos` tells where block 0's
// relative attention bias goes (the encoder's one table, or block 0's own).
// nullopt for other names.
std::optional<std::string> TransformersToOfficial(const std::string& name, bool shared_pos);
// The transformers name of an official name (the embedding as `shared.weight`).
std::optional<std::string> OfficialToTransformers(const std::string& name);

// The weights of a file: safetensors (file, index or directory) or a PyTorch `.pth` (read
// without executing anything), through nn::OpenTensorSource.
std::unique_ptr<nn::TensorSource> OpenWeightFile(const std::string& path);

// A source renamed to the official names with the prefix stripped; `format`
// says which names the file used.
struct OfficialSource {
  std::unique_ptr<nn::TensorSource> source;
  NameFormat format = NameFormat::kOfficial;
  std::string prefix;
};
OfficialSource ToOfficialNames(std::unique_ptr<nn::TensorSource> source);

// Sizes from the shapes of official-named tensors.
T5Config InferConfig(const nn::TensorSource& official);

// The config of a checkpoint: `config` when given, else a t5_config.json beside `path`, else a
// transformers config.json beside it, else InferConfig. `source` receives which ("--config", the
// file's path, "tensor shapes").
T5Config ResolveConfig(const std::string& path, const nn::TensorSource& official,
                       const std::optional<T5Config>& config, std::string* source = nullptr);

struct LoadOptions {
  std::optional<T5Config> config;
  // Parameter dtype; default: the dtype the embedding is stored in (bf16 stays
  // bf16, so the 5.7B encoder takes 11.4 GB), or f32 when the file does not
  // say.
  std::optional<DType> param_dtype;
  bool strict = true;  // keys the encoder lacks are an error
};

struct LoadReport {
  std::string path;
  NameFormat format = NameFormat::kOfficial;
  std::string prefix;
  std::string
      config_source;  // "--config", a t5_config.json or config.json path, or "tensor shapes"
  int64_t tensors = 0;
  int64_t values = 0;
};

std::unique_ptr<T5Encoder> LoadEncoder(const std::string& path, const LoadOptions& options = {},
                                       LoadReport* report = nullptr);

}  // namespace sdpo::umt5
