// `cuda_check cogvideox_vae`: the CogVideoX-2B VAE decode at full size on GPU 0 with random
// weights of the released shapes (the 2B config; values from bench/random_weights.h), its time and
// peak device memory as one JSON line (the GPU check's part cogvideox_vae, tools/gpu/check.sh).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "models/cogvideox/vae.h"
#include "tensor/dtype.h"

namespace sdpo::tools {

struct CogVideoXVaeCheckOptions {
  int64_t latent_frames = 13;
  int64_t height = 480, width = 720;  // the video's (the latent is 8x smaller)
  DType dtype = kBF16;                // bf16 or f32 compute
  uint64_t seed = 1;
  std::optional<cogvideox::VaeTiling> tiling;  // diffusers' enable_tiling(); none by default
};

// Decodes an N(0, 1) latent [1, 16, latent_frames, height / 8, width / 8] (already divided by
// the scaling factor) with the official frame batches (and tiles when set); returns the JSON line:
// load and decode seconds (the decode synchronised), the video's shape and the caching allocator's
// peak allocated and reserved MiB over the decode.
std::string RunCogVideoXVaeDecode(const CogVideoXVaeCheckOptions& options);

}  // namespace sdpo::tools
