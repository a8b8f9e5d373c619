// The Wan2.1 VAE benchmark (bench/wan_vae_bench.cc on the CPU, `cuda_check vae` on a GPU): the
// released model's shapes with random weights (or a checkpoint), an encode and/or decode of one
// clip, time per phase and peak memory, as one JSON line.
#pragma once

#include <cstdint>
#include <string>

#include "tensor/device.h"
#include "tensor/dtype.h"

namespace sdpo::bench {

struct WanVaeBenchOptions {
  std::string mode = "decode";  // decode, encode or both
  int64_t frames = 81, height = 480, width = 832;
  std::string weights, config;  // empty weights: random values with the released shapes
  DType dtype = kF32;           // f32 or bf16
  Device device = Device::CPU();
  bool chunked = true;
  uint64_t seed = 1;
};

// Runs the benchmark and returns its JSON line (no newline): seconds per phase (load, encode,
// decode), the peak RSS (VmHWM) and, on CUDA, the caching allocator's peak allocated and reserved
// bytes. Random weights: bench::RandomizeParameters (bench/random_weights.h); encode takes a U(-1,
// 1) video, decode an N(0, 1) latent of 1 + (frames - 1) / 4 frames (or the encoding, with mode
// both).
std::string RunWanVaeBench(const WanVaeBenchOptions& options);

}  // namespace sdpo::bench
