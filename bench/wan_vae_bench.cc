// Wan2.1 VAE on the CPU at full size (a manual benchmark: minutes, not a test):
//
//   bazel run -c opt //bench:wan_vae_bench -- --mode=decode --frames=81 --height=480 --width=832
//       [--weights=W.safetensors [--config=C.json]] [--dtype=f32|bf16] [--threads=N]
//       [--nochunked] [--seed=S]
//
// Without --weights the released model's shapes (dim 96, 126.9 M parameters) get random values
// that keep every activation O(1): conv weights N(0, 1/fan_in), gammas 1 + 0.1 N(0, 1), biases
// 0.05 N(0, 1). --mode encode encodes a U(-1, 1) video of --frames frames; decode decodes an
// N(0, 1) latent of 1 + (frames - 1) / 4 frames to that video size; both encodes, then decodes
// the encoding. One JSON line: seconds per phase, peak RSS (VmHWM) and the RSS after loading.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "io/command_line.h"
#include "models/forward_tool.h"
#include "models/wan21/vae.h"
#include "tensor/ops.h"
#include "tensor/thread_pool.h"

ABSL_FLAG(std::string, mode, "decode", "decode, encode or both");
ABSL_FLAG(int64_t, frames, 81, "video frames (1 + 4k)");
ABSL_FLAG(int64_t, height, 480, "video height");
ABSL_FLAG(int64_t, width, 832, "video width");
ABSL_FLAG(std::string, weights, "", "a VAE checkpoint (default: random weights, released shapes)");
ABSL_FLAG(std::string, config, "", "the checkpoint's config JSON");
ABSL_FLAG(std::string, dtype, "f32", "f32 or bf16");
ABSL_FLAG(int, threads, 0, "CPU threads (0: SDPO_NUM_THREADS or all)");
ABSL_FLAG(bool, chunked, true, "the official chunking (--nochunked: one pass over the clip)");
ABSL_FLAG(uint64_t, seed, 1, "seed of the random weights");

namespace {

using namespace sdpo;  // NOLINT

constexpr char kUsage[] =
    "usage: wan_vae_bench [--mode=decode|encode|both] [--frames=81] [--height=480] [--width=832]\n"
    "                     [--weights=W --config=C] [--dtype=f32|bf16] [--threads=N]\n"
    "                     [--nochunked] [--seed=S]\n"
    "The Wan2.1 VAE at full size on the CPU: time and peak RSS as one JSON line.\n";

double StatusMib(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field, 0) == 0) return std::atof(line.c_str() + std::strlen(field)) / 1024.0;
  }
  return -1;
}

// Random values for every parameter by its role (see the header comment).
void RandomizeWeights(wan21::WanVae& vae, uint64_t seed) {
  uint64_t i = 0;
  for (auto& [name, p] : vae.NamedParameters()) {
    Tensor r = ops::RandomNormal(p.shape(), seed, (i++) << 32, kF32);
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, "gamma") == 0) {
      r = ops::AddScalar(ops::MulScalar(r, 0.1), 1.0);
    } else if (name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0) {
      r = ops::MulScalar(r, 0.05);
    } else {
      const double fan_in = static_cast<double>(p.numel() / p.size(0));
      r = ops::MulScalar(r, 1.0 / std::sqrt(fan_in));
    }
    ops::CopyInto(p, r);
  }
}

int Run(int argc, char** argv) {
  ParseCommandLine(argc, argv, kUsage);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  SDPO_CHECK(mode == "decode" || mode == "encode" || mode == "both",
             "--mode must be decode, encode or both, got ", mode);
  const int64_t frames = absl::GetFlag(FLAGS_frames), height = absl::GetFlag(FLAGS_height),
                width = absl::GetFlag(FLAGS_width);
  if (absl::GetFlag(FLAGS_threads) > 0) SetNumThreads(absl::GetFlag(FLAGS_threads));
  const std::string dtype_name = absl::GetFlag(FLAGS_dtype);
  SDPO_CHECK(dtype_name == "f32" || dtype_name == "bf16", "--dtype must be f32 or bf16, got ",
             dtype_name);
  wan21::VaeRunOptions options;
  options.chunked = absl::GetFlag(FLAGS_chunked);

  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<wan21::WanVae> vae;
  if (!absl::GetFlag(FLAGS_weights).empty()) {
    std::optional<wan21::WanVaeConfig> config;
    if (!absl::GetFlag(FLAGS_config).empty()) {
      config = wan21::WanVaeConfig::FromFile(forward_tool::Resolve(absl::GetFlag(FLAGS_config)));
    }
    vae = wan21::LoadVae(forward_tool::Resolve(absl::GetFlag(FLAGS_weights)), config);
  } else {
    vae = std::make_unique<wan21::WanVae>(wan21::WanVaeConfig());
    RandomizeWeights(*vae, absl::GetFlag(FLAGS_seed));
  }
  if (dtype_name == "bf16") vae->CastParameters(kBF16);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double rss_loaded = StatusMib("VmRSS:");

  const int64_t f = vae->config().spatial_factor();
  const int64_t latent_frames = vae->LatentFrames(frames);
  double encode_s = 0, decode_s = 0;
  Tensor latent;
  if (mode != "decode") {
    Tensor video = ops::AddScalar(
        ops::MulScalar(ops::RandomUniform({1, 3, frames, height, width}, 7, 0), 2.0), -1.0);
    auto a = std::chrono::steady_clock::now();
    latent = vae->Encode(video).mu;
    encode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
  } else {
    latent =
        ops::RandomNormal({1, vae->config().z_dim, latent_frames, height / f, width / f}, 8, 0);
  }
  std::string video_shape = "";
  if (mode != "encode") {
    auto a = std::chrono::steady_clock::now();
    Tensor video = vae->Decode(latent, {}, options);
    decode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
    video_shape = ShapeStr(video.shape());
    const std::vector<float> v =
        ops::Contiguous(ops::Narrow(ops::Reshape(video, {-1}), 0, 0, 1)).ToFloatVector();
    SDPO_CHECK(std::isfinite(v[0]), "decode produced a non-finite value");
  }
  std::printf(
      "{\"bench\": \"wan_vae\", \"mode\": \"%s\", \"dtype\": \"%s\", "
      "\"chunked\": %s, "
      "\"frames\": %lld, \"height\": %lld, \"width\": %lld, "
      "\"latent\": \"%s\", \"video\": \"%s\", "
      "\"threads\": %d, \"load_s\": %.2f, \"encode_s\": %.2f, "
      "\"decode_s\": %.2f, "
      "\"rss_after_load_mib\": %.0f, \"peak_rss_mib\": %.0f}\n",
      mode.c_str(), dtype_name.c_str(), options.chunked ? "true" : "false",
      static_cast<long long>(frames), static_cast<long long>(height), static_cast<long long>(width),
      ShapeStr(latent.shape()).c_str(), video_shape.c_str(), NumThreads(), load_s, encode_s,
      decode_s, rss_loaded, StatusMib("VmHWM:"));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sdpo::RunReportingErrors("wan_vae_bench", [&] { return Run(argc, argv); });
}
