#include "bench/wan_vae_bench_lib.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>

#include "absl/strings/str_format.h"
#include "bench/proc_status.h"
#include "bench/random_weights.h"
#include "models/forward_tool.h"
#include "models/wan21/vae.h"
#include "tensor/ops.h"
#include "tensor/thread_pool.h"
#ifdef SDPO_HAVE_CUDA_BACKEND
#include "tensor/cuda/allocator.h"
#include "tensor/cuda/cuda_runtime.h"
#endif

namespace sdpo::bench {
namespace {

// Waits for the device's queued work (the timers stop after it).
void Sync(Device device) {
#ifdef SDPO_HAVE_CUDA_BACKEND
  if (device.is_cuda()) cuda::SynchronizeStream(device.index);
#endif
}

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

std::string RunWanVaeBench(const WanVaeBenchOptions& o) {
  SDPO_CHECK(o.mode == "decode" || o.mode == "encode" || o.mode == "both",
             "--mode must be decode, encode or both, got ", o.mode);
  SDPO_CHECK(o.dtype == kF32 || o.dtype == kBF16, "--dtype must be f32 or bf16, got ",
             DTypeName(o.dtype));
  wan21::VaeRunOptions run;
  run.chunked = o.chunked;

  auto t0 = Clock::now();
  std::unique_ptr<wan21::WanVae> vae;
  if (!o.weights.empty()) {
    std::optional<wan21::WanVaeConfig> config;
    if (!o.config.empty()) {
      config = wan21::WanVaeConfig::FromFile(forward_tool::Resolve(o.config));
    }
    vae = wan21::LoadVae(forward_tool::Resolve(o.weights), config);
  } else {
    vae = std::make_unique<wan21::WanVae>(wan21::WanVaeConfig());
    RandomizeParameters(*vae, o.seed);
  }
  vae->SetRequiresGrad(false);
  if (o.dtype == kBF16) vae->CastParameters(kBF16);
  vae->ToDevice(o.device);
  Sync(o.device);
  const double load_s = Since(t0);
  const double rss_loaded = ProcStatusMib("VmRSS:");
#ifdef SDPO_HAVE_CUDA_BACKEND
  if (o.device.is_cuda()) cuda::ResetPeakStats(o.device.index);
#endif

  const int64_t f = vae->config().spatial_factor();
  double encode_s = 0, decode_s = 0;
  Tensor latent;
  if (o.mode != "decode") {
    Tensor video = ops::To(
        ops::AddScalar(
            ops::MulScalar(ops::RandomUniform({1, 3, o.frames, o.height, o.width}, 7, 0), 2.0),
            -1.0),
        o.device);
    Sync(o.device);
    auto a = Clock::now();
    latent = vae->Encode(video).mu;
    Sync(o.device);
    encode_s = Since(a);
  } else {
    latent = ops::To(
        ops::RandomNormal(
            {1, vae->config().z_dim, vae->LatentFrames(o.frames), o.height / f, o.width / f}, 8, 0),
        o.device);
    Sync(o.device);
  }
  std::string video_shape;
  if (o.mode != "encode") {
    auto a = Clock::now();
    Tensor video = vae->Decode(latent, {}, run);
    Sync(o.device);
    decode_s = Since(a);
    video_shape = ShapeStr(video.shape());
    const std::vector<float> v =
        ops::To(ops::Contiguous(ops::Narrow(ops::Reshape(video, {-1}), 0, 0, 1)), Device::CPU())
            .ToFloatVector();
    SDPO_CHECK(std::isfinite(v[0]), "decode produced a non-finite value");
  }
  std::string device_memory;
#ifdef SDPO_HAVE_CUDA_BACKEND
  if (o.device.is_cuda()) {
    const cuda::AllocatorStats s = cuda::GetAllocatorStats(o.device.index);
    device_memory =
        absl::StrFormat(", \"peak_allocated_mib\": %.0f, \"peak_reserved_mib\": %.0f",
                        s.peak_allocated_bytes / 1048576.0, s.peak_reserved_bytes / 1048576.0);
  }
#endif
  return absl::StrFormat(
      "{\"bench\": \"wan_vae\", \"mode\": \"%s\", \"dtype\": \"%s\", \"device\": \"%s\", "
      "\"chunked\": %s, \"frames\": %d, \"height\": %d, \"width\": %d, \"latent\": \"%s\", "
      "\"video\": \"%s\", \"threads\": %d, \"load_s\": %.2f, \"encode_s\": %.2f, "
      "\"decode_s\": %.2f, \"rss_after_load_mib\": %.0f, \"peak_rss_mib\": %.0f%s}",
      o.mode, DTypeName(o.dtype), o.device.str(), o.chunked ? "true" : "false", o.frames, o.height,
      o.width, ShapeStr(latent.shape()), video_shape, NumThreads(), load_s, encode_s, decode_s,
      rss_loaded, ProcStatusMib("VmHWM:"), device_memory);
}

}  // namespace sdpo::bench
