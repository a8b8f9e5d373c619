#include "tools/gpu/cogvideox_vae_check.h"

#include <chrono>
#include <cmath>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/random_weights.h"
#include "models/cogvideox/vae.h"
#include "tensor/cuda/allocator.h"
#include "tensor/cuda/cuda_available.h"
#include "tensor/cuda/cuda_runtime.h"
#include "tensor/ops.h"

namespace sdpo::tools {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

std::string RunCogVideoXVaeDecode(const CogVideoXVaeCheckOptions& o) {
  SDPO_CHECK(o.dtype == kF32 || o.dtype == kBF16, "--dtype must be f32 or bf16, got ",
             DTypeName(o.dtype));
  SDPO_CHECK(o.latent_frames >= 1 && o.height >= 8 && o.width >= 8 && o.height % 8 == 0 &&
                 o.width % 8 == 0,
             "cogvideox_vae: --latent_frames >= 1 and --height / --width multiples of 8, got ",
             o.latent_frames, ", ", o.height, ", ", o.width);
  SDPO_CHECK(CudaAvailable(), "cogvideox_vae: CUDA is unavailable (", CudaUnavailableReason(), ")");
  const Device device = Device::CUDA(0);
  auto t0 = Clock::now();
  cogvideox::CogVideoXVae vae(cogvideox::CogVideoXVaeConfig::CogVideoX2B());
  vae.SetRequiresGrad(false);
  bench::RandomizeParameters(vae, o.seed);
  if (o.dtype == kBF16) vae.CastParameters(kBF16);
  vae.ToDevice(device);
  cuda::SynchronizeStream(device.index);
  const double load_s = Since(t0);

  const Tensor z = ops::To(
      ops::RandomNormal(
          {1, vae.config().latent_channels, o.latent_frames, o.height / 8, o.width / 8}, 8, 0),
      device);
  cuda::SynchronizeStream(device.index);
  cuda::ResetPeakStats(device.index);
  auto t1 = Clock::now();
  cogvideox::VaeRunOptions run;
  run.tiling = o.tiling;
  const Tensor video = vae.DecodeUnscaled(z, run);
  cuda::SynchronizeStream(device.index);
  const double decode_s = Since(t1);
  const cuda::AllocatorStats stats = cuda::GetAllocatorStats(device.index);
  const std::vector<float> first =
      ops::To(ops::Contiguous(ops::Narrow(ops::Reshape(video, {-1}), 0, 0, 1)), Device::CPU())
          .ToFloatVector();
  SDPO_CHECK(std::isfinite(first[0]), "cogvideox_vae: the decode produced a non-finite value");
  return absl::StrFormat(
      "{\"bench\": \"cogvideox_vae\", \"mode\": \"decode\", \"dtype\": \"%s\", \"device\": "
      "\"%s\", \"latent\": \"%s\", \"video\": \"%s\", \"tiling\": \"%s\", \"load_s\": %.2f, "
      "\"decode_s\": %.2f, "
      "\"peak_allocated_mib\": %.0f, \"peak_reserved_mib\": %.0f}",
      DTypeName(o.dtype), device.str(), ShapeStr(z.shape()), ShapeStr(video.shape()),
      o.tiling ? o.tiling->str() : "off", load_s, decode_s, stats.peak_allocated_bytes / 1048576.0,
      stats.peak_reserved_bytes / 1048576.0);
}

}  // namespace sdpo::tools
