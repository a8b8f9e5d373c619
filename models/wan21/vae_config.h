// Wan2.1 video VAE configuration: the keyword arguments of the official `WanVAE_(**config)`
// (Wan-Video/Wan2.1 wan/modules/vae.py), the released model's values (`_video_vae`: dim 96) and
// the latent normalisation constants of the `WanVAE` wrapper.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "io/json.h"

namespace sdpo::wan21 {

struct WanVaeConfig {
  // The released model (Wan2.1_VAE.pth).
  int64_t dim = 96;
  int64_t z_dim = 16;
  std::vector<int64_t> dim_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  std::vector<double> attn_scales = {};
  std::vector<bool> temperal_downsample = {false, true, true};  // the official spelling
  double dropout = 0.0;  // inference only: must be 0 (a nonzero value is accepted and ignored)

  // Spatial and temporal compression: 2^(levels - 1) and 2^(temporal downsamples).
  int64_t spatial_factor() const;
  int64_t temporal_factor() const;

  // Throws (naming `source`) when the values cannot build a model.
  void Validate(const std::string& source = "config") const;

  // `{"WanVAE_": {...}}` (the fixtures' format) or the bare keyword object; keys left out keep
  // the released values; unknown keys and wrong types are errors naming the key.
  static WanVaeConfig FromJson(const json::Value& value, const std::string& source = "config");
  static WanVaeConfig FromFile(const std::string& path);
  std::string ToJson() const;  // `{"WanVAE_": {...}}`

  bool operator==(const WanVaeConfig& o) const;
};

// The official latent statistics (`WanVAE.mean`, `WanVAE.std`, 16 channels): encode returns
// (mu - mean) / std (as (mu - mean) * (1 / std)), decode inverts it.
extern const std::array<double, 16> kWanVaeLatentMean;
extern const std::array<double, 16> kWanVaeLatentStd;

}  // namespace sdpo::wan21
