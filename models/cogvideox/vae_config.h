// CogVideoX 3-D causal VAE configuration: the keyword arguments of diffusers'
// `AutoencoderKLCogVideoX(**config)` (the `vae/config.json` of the CogVideoX-2B/5B folders) and
// the frame-batch sizes of its `_encode` / `_decode`. The defaults are the CogVideoX-2B VAE's
// (also the constructor defaults); CogVideoX-5B differs only in scaling_factor 0.7.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/json.h"

namespace sdpo::cogvideox {

struct CogVideoXVaeConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  std::vector<int64_t> block_out_channels = {128, 256, 256, 512};
  int64_t latent_channels = 16;
  int64_t layers_per_block = 3;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-6;
  int64_t temporal_compression_ratio = 4;
  double scaling_factor = 1.15258426;
  // The frames one encoder / decoder run sees (`num_sample_frames_batch_size`,
  // `num_latent_frames_batch_size`); the first batch also takes the remainder.
  int64_t encode_frame_batch = 8;
  int64_t decode_latent_batch = 2;

  static CogVideoXVaeConfig CogVideoX2B();
  static CogVideoXVaeConfig CogVideoX5B();  // scaling_factor 0.7

  // Down blocks 0 .. temporal_levels() - 1 halve the frames (log2 of the temporal ratio).
  int64_t temporal_levels() const;
  int64_t spatial_factor() const;  // 2^(blocks - 1): 8 for the released models

  // Throws (naming `source`) when the values cannot build a model.
  void Validate(const std::string& source = "config") const;

  // The diffusers `vae/config.json` (bare kwargs; "_class_name" and other "_" keys ignored) or
  // the fixtures' `{"AutoencoderKLCogVideoX": {...}, "num_sample_frames_batch_size": 8, ...}`.
  // Keys left out keep the 2B values; unknown keys, wrong types and settings this implementation
  // does not support (quant convs, other block types or activations, tiling) are errors naming
  // the key.
  static CogVideoXVaeConfig FromJson(const json::Value& value,
                                     const std::string& source = "config");
  static CogVideoXVaeConfig FromFile(const std::string& path);
  std::string ToJson() const;  // the fixtures' format

  bool operator==(const CogVideoXVaeConfig& o) const;
};

}  // namespace sdpo::cogvideox
