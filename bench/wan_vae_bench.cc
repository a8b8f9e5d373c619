// Wan2.1 VAE at full size (a manual benchmark: minutes on the CPU, not a test):
//
//   bazel run -c opt //bench:wan_vae_bench -- --mode=decode --frames=81 --height=480 --width=832
//       [--weights=W.safetensors [--config=C.json]] [--dtype=f32|bf16] [--threads=N]
//       [--device=cpu|cuda] [--nochunked] [--seed=S]
//
// Without --weights the released model's shapes (dim 96, 126.9 M parameters) get random values
// that keep every activation O(1) (bench/wan_vae_bench_lib.h). --mode encode encodes a U(-1, 1)
// video of --frames frames; decode decodes an N(0, 1) latent of 1 + (frames - 1) / 4 frames to
// that video size; both encodes, then decodes the encoding. One JSON line: seconds per phase,
// peak RSS (VmHWM), the RSS after loading and, on CUDA, the allocator's peaks. On a GPU machine
// the same runs as `cuda_check vae` (tools/gpu/check.sh, part vae).

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "bench/wan_vae_bench_lib.h"
#include "io/command_line.h"
#include "models/forward_tool.h"
#include "tensor/thread_pool.h"

ABSL_FLAG(std::string, mode, "decode", "decode, encode or both");
ABSL_FLAG(int64_t, frames, 81, "video frames (1 + 4k)");
ABSL_FLAG(int64_t, height, 480, "video height");
ABSL_FLAG(int64_t, width, 832, "video width");
ABSL_FLAG(std::string, weights, "", "a VAE checkpoint (default: random weights, released shapes)");
ABSL_FLAG(std::string, config, "", "the checkpoint's config JSON");
ABSL_FLAG(std::string, dtype, "f32", "f32 or bf16");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:N");
ABSL_FLAG(int, threads, 0, "CPU threads (0: SDPO_NUM_THREADS or all)");
ABSL_FLAG(bool, chunked, true, "the official chunking (--nochunked: one pass over the clip)");
ABSL_FLAG(uint64_t, seed, 1, "seed of the random weights");

namespace {

using namespace sdpo;  // NOLINT

constexpr char kUsage[] =
    "usage: wan_vae_bench [--mode=decode|encode|both] [--frames=81] [--height=480] [--width=832]\n"
    "                     [--weights=W --config=C] [--dtype=f32|bf16] [--device=cpu|cuda]\n"
    "                     [--threads=N] [--nochunked] [--seed=S]\n"
    "The Wan2.1 VAE at full size: time and peak memory as one JSON line.\n";

int Run(int argc, char** argv) {
  ParseCommandLine(argc, argv, kUsage);
  if (absl::GetFlag(FLAGS_threads) > 0) SetNumThreads(absl::GetFlag(FLAGS_threads));
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  SDPO_CHECK(dtype == "f32" || dtype == "bf16", "--dtype must be f32 or bf16, got ", dtype);
  bench::WanVaeBenchOptions o;
  o.mode = absl::GetFlag(FLAGS_mode);
  o.frames = absl::GetFlag(FLAGS_frames);
  o.height = absl::GetFlag(FLAGS_height);
  o.width = absl::GetFlag(FLAGS_width);
  o.weights = absl::GetFlag(FLAGS_weights);
  o.config = absl::GetFlag(FLAGS_config);
  o.dtype = dtype == "bf16" ? kBF16 : kF32;
  o.device = forward_tool::ParseDevice(absl::GetFlag(FLAGS_device));
  o.chunked = absl::GetFlag(FLAGS_chunked);
  o.seed = absl::GetFlag(FLAGS_seed);
  std::printf("%s\n", bench::RunWanVaeBench(o).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sdpo::RunReportingErrors("wan_vae_bench", [&] { return Run(argc, argv); });
}
