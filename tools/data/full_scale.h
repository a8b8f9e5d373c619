// Full-scale inputs for the trainer without real weights or videos (issue 20): a Wan2.1 checkpoint
// folder with random bf16 weights under the official file names, a preference dataset of random
// latents in the on-disk format (trainers/data/preference_dataset.h), and a text-embedding file for
// //trainers:sample. Sizes come from the model's own config (wan21::ParameterShapes); the values
// are a function of the seed alone.
//
// Memory stays bounded: the checkpoint is written one shard at a time (at most max_shard_bytes, as
// the official 14B's six shards), the dataset a few pairs at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/wan21/config.h"
#include "tensor/tensor.h"

namespace sdpo::tools {

struct RandomCheckpointOptions {
  uint64_t seed = 0;
  // One file (the official 1.3B's diffusion_pytorch_model.safetensors) when the
  // weights fit, else shards diffusion_pytorch_model-0000i-of-0000n.safetensors
  // and the index (the 14B's).
  int64_t max_shard_bytes = int64_t{5} << 30;
};

struct WrittenFiles {
  std::vector<std::string> files;  // paths, in writing order
  int64_t bytes = 0;               // all files together
  int64_t values = 0;              // tensor elements written
};

// Writes `dir`/config.json (the official keys, "_class_name": "WanModel") and the DiT weights in
// bf16 under the official names. Linear and conv weights are Xavier-uniform, biases
// uniform(+-1/sqrt(fan_in)) as PyTorch's nn.Linear, norm weights 1, modulations and the text/time
// embeddings of the official scale: finite, non-zero values of the trained model's magnitudes, so
// that nothing is timed on zeros.
WrittenFiles WriteRandomWanCheckpoint(const std::string& dir, const wan21::WanConfig& config,
                                      const RandomCheckpointOptions& options = {});

struct RandomPairsOptions {
  Shape latent = {16, 21, 60, 104};  // [C, F, H, W]: 81 frames at 480x832
  int64_t text_tokens = 512;
  int64_t text_dim = 4096;
  int64_t pairs = 4;
  DType dtype = kBF16;  // on disk
  uint64_t seed = 0;
};

// Writes a preference dataset to `dir`: winners N(0, 1) latents, losers the winner plus N(0, 0.5^2)
// noise, one context N(0, 1) per pair (each its own prompt).
WrittenFiles WriteRandomPreferenceData(const std::string& dir, const RandomPairsOptions& options);

// Writes the sampling contexts of //trainers:sample --context: "context" and "negative",
// [text_tokens, text_dim], bf16.
WrittenFiles WriteRandomSamplingContext(const std::string& path, int64_t text_tokens,
                                        int64_t text_dim, uint64_t seed);

// The command line of //tools/data:make_full_scale and `cuda_check make_data` (argv[0] is the
// command's name); prints what it wrote and one JSON line with sizes and seconds.
int MakeFullScaleMain(int argc, char** argv);

}  // namespace sdpo::tools
