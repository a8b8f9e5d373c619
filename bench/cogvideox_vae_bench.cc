// The CogVideoX-2B VAE at full size (a manual benchmark: minutes on the CPU, not a test), the C++
// side of bench/peers/cogvideox_vae_peer.py (same flags, same JSON fields):
//
//   bazel build -c opt //bench:cogvideox_vae_bench
//   bazel-bin/bench/cogvideox_vae_bench --mode=decode --latent_frames=13 --height=60 --width=90
//       [--threads=N] [--seed=S] [--names=PATH] [--tiling=off|on|HxW:SHxSW]
//
// Random weights with the released shapes (checked against the fixtures' names list, --names)
// and the values of bench/random_weights.h. --height / --width are the latent's (the video is 8x
// that); decode takes an N(0, 1) latent (already divided by the scaling factor, as the peer's
// `decode(z)`), encode a U(-1, 1) video of 1 + 4 (latent_frames - 1) frames, both encodes then
// decodes the posterior mean. One JSON line: wall and process-CPU seconds per phase, the RSS after
// loading and the peak RSS (VmHWM).

#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "bench/proc_status.h"
#include "bench/random_weights.h"
#include "io/command_line.h"
#include "models/cogvideox/vae.h"
#include "models/forward_tool.h"
#include "tensor/ops.h"
#include "tensor/thread_pool.h"

ABSL_FLAG(std::string, mode, "decode", "decode, encode or both");
ABSL_FLAG(int64_t, latent_frames, 13, "latent frames (the video has 1 + 4 (n - 1))");
ABSL_FLAG(int64_t, height, 60, "latent height (the video's is 8x)");
ABSL_FLAG(int64_t, width, 90, "latent width (the video's is 8x)");
ABSL_FLAG(int, threads, 0, "CPU threads (0: SDPO_NUM_THREADS or all)");
ABSL_FLAG(uint64_t, seed, 1, "seed of the random weights");
ABSL_FLAG(std::string, tiling, "off",
          "diffusers' enable_tiling(): off | on (240x360 pixels every 200x288) | HxW:SHxSW");
ABSL_FLAG(std::string, names, "../shared/fixtures/cogvideox_vae/cogvideox_2b_vae_full.names.json",
          "the released model's parameter names and shapes (empty: no check)");

namespace {

using namespace sdpo;  // NOLINT

constexpr char kUsage[] =
    "usage: cogvideox_vae_bench [--mode=decode|encode|both] [--latent_frames=13] [--height=60]\n"
    "                           [--width=90] [--threads=N] [--seed=S] [--names=PATH]\n"
    "The CogVideoX-2B VAE at full size, random weights: time and peak memory as one JSON line.\n";

// Wall and process-CPU seconds since construction.
class PhaseTimer {
 public:
  PhaseTimer() : wall_(std::chrono::steady_clock::now()), cpu_(bench::ProcessCpuSeconds()) {}
  double wall_s() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_).count();
  }
  double cpu_s() const { return bench::ProcessCpuSeconds() - cpu_; }

 private:
  std::chrono::steady_clock::time_point wall_;
  double cpu_;
};

int Run(int argc, char** argv) {
  ParseCommandLine(argc, argv, kUsage);
  if (absl::GetFlag(FLAGS_threads) > 0) SetNumThreads(absl::GetFlag(FLAGS_threads));
  const std::string mode = absl::GetFlag(FLAGS_mode);
  SDPO_CHECK(mode == "decode" || mode == "encode" || mode == "both",
             "--mode must be decode, encode or both, got ", mode);
  const int64_t frames = absl::GetFlag(FLAGS_latent_frames), h = absl::GetFlag(FLAGS_height),
                w = absl::GetFlag(FLAGS_width);
  SDPO_CHECK(frames >= 1 && h >= 1 && w >= 1, "--latent_frames, --height and --width must be >= 1");

  cogvideox::VaeRunOptions options;
  options.tiling = cogvideox::ParseVaeTiling(absl::GetFlag(FLAGS_tiling), "--tiling");
  PhaseTimer load;
  cogvideox::CogVideoXVae vae(cogvideox::CogVideoXVaeConfig::CogVideoX2B());
  const std::string names = absl::GetFlag(FLAGS_names);
  if (!names.empty()) bench::CheckNamesList(vae, forward_tool::Resolve(names));
  vae.SetRequiresGrad(false);
  bench::RandomizeParameters(vae, absl::GetFlag(FLAGS_seed));
  const double load_s = load.wall_s(), rss_loaded = bench::ProcStatusMib("VmRSS:");

  const cogvideox::CogVideoXVaeConfig& c = vae.config();
  const int64_t f = c.spatial_factor();
  double encode_s = 0, encode_cpu_s = 0, decode_s = 0, decode_cpu_s = 0;
  Tensor z;
  if (mode != "decode") {
    Tensor video = ops::AddScalar(
        ops::MulScalar(
            ops::RandomUniform({1, c.in_channels, 1 + 4 * (frames - 1), f * h, f * w}, 7, 0), 2.0),
        -1.0);
    PhaseTimer t;
    z = vae.Encode(video, options).mean;
    encode_s = t.wall_s();
    encode_cpu_s = t.cpu_s();
  } else {
    z = ops::RandomNormal({1, c.latent_channels, frames, h, w}, 8, 0);
  }
  std::string video_shape = "null";
  if (mode != "encode") {
    PhaseTimer t;
    Tensor video = vae.DecodeUnscaled(z, options);
    decode_s = t.wall_s();
    decode_cpu_s = t.cpu_s();
    video_shape = ShapeStr(video.shape());
    const std::vector<float> first =
        ops::Contiguous(ops::Narrow(ops::Reshape(video, {-1}), 0, 0, 1)).ToFloatVector();
    SDPO_CHECK(std::isfinite(first[0]), "decode produced a non-finite value");
  }
  absl::PrintF(
      "{\"bench\": \"cogvideox_vae\", \"mode\": \"%s\", \"dtype\": \"f32\", \"latent_frames\": %d, "
      "\"height\": %d, \"width\": %d, \"latent\": %s, \"video\": %s, \"threads\": %d, "
      "\"tiling\": \"%s\", "
      "\"load_s\": %.2f, \"encode_s\": %.2f, \"decode_s\": %.2f, \"encode_cpu_s\": %.2f, "
      "\"decode_cpu_s\": %.2f, \"rss_after_load_mib\": %.0f, \"peak_rss_mib\": %.0f}\n",
      mode, frames, h, w, ShapeStr(z.shape()), video_shape, NumThreads(),
      options.tiling ? options.tiling->str() : "off", load_s, encode_s, decode_s, encode_cpu_s,
      decode_cpu_s, rss_loaded, bench::ProcStatusMib("VmHWM:"));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sdpo::RunReportingErrors("cogvideox_vae_bench", [&] { return Run(argc, argv); });
}
