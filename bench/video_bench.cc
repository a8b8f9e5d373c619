// Video I/O timings (io/video.h): decode + conditioning of a real clip to Wan2.1's training input
// (16 fps, 81 frames, 480 x 832), and writing a sampled 81 x 480 x 832 video as H.264 mp4.
//
//   ffmpeg -f lavfi -i testsrc2=size=1920x1080:rate=30 -t 6 -pix_fmt yuv420p /tmp/in.mp4
//   bazel run -c opt //bench:video_bench -- --input=/tmp/in.mp4 --out=/tmp/bench.mp4
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "absl/flags/flag.h"
#include "io/command_line.h"
#include "io/video.h"

ABSL_FLAG(std::string, input, "", "a video to read (e.g. 1080p H.264)");
ABSL_FLAG(std::string, out, "/tmp/video_bench.mp4", "where to write the 81 x 480 x 832 mp4");
ABSL_FLAG(int, repeats, 3, "runs of each (the best is reported)");

namespace {

double Seconds(const std::chrono::steady_clock::time_point& start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Process CPU seconds (all threads): meaningful on a loaded machine, where wall time is not.
double CpuSeconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

}  // namespace

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv, "video file read/write benchmark (io/video.h)");
  using sdpo::Tensor;
  namespace video = sdpo::video;
  try {
    if (!absl::GetFlag(FLAGS_input).empty()) {
      video::ReadOptions o;
      o.fps = 16;
      o.max_frames = 81;
      o.one_plus_4k = true;
      o.height = 480;
      o.width = 832;
      double best = 1e30, best_cpu = 1e30;
      Tensor v;
      video::VideoInfo info;
      for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
        const auto start = std::chrono::steady_clock::now();
        const double cpu = CpuSeconds();
        v = video::ReadVideo(absl::GetFlag(FLAGS_input), o, &info);
        best = std::min(best, Seconds(start));
        best_cpu = std::min(best_cpu, CpuSeconds() - cpu);
      }
      std::printf("read %s (%s %dx%d %.3g fps) -> %s: %.3f s wall, %.3f s CPU\n",
                  absl::GetFlag(FLAGS_input).c_str(), info.codec.c_str(), info.width, info.height,
                  info.fps, v.str().c_str(), best, best_cpu);
    }
    // A smooth moving pattern, like a decoded sample.
    const int64_t T = 81, H = 480, W = 832;
    Tensor clip = Tensor::Empty({3, T, H, W});
    float* x = clip.data<float>();
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t w = 0; w < W; ++w)
            x[((c * T + t) * H + h) * W + w] =
                0.8f * std::sin(0.02f * w + 0.1f * t + c) * std::cos(0.015f * h - 0.05f * t);
    double best = 1e30, best_cpu = 1e30;
    video::WriteResult r;
    for (int rep = 0; rep < absl::GetFlag(FLAGS_repeats); ++rep) {
      const auto start = std::chrono::steady_clock::now();
      const double cpu = CpuSeconds();
      r = video::WriteMp4(absl::GetFlag(FLAGS_out), clip);
      best = std::min(best, Seconds(start));
      best_cpu = std::min(best_cpu, CpuSeconds() - cpu);
    }
    std::printf("wrote %s: %lld frames %dx%d with %s: %.3f s wall, %.3f s CPU\n",
                absl::GetFlag(FLAGS_out).c_str(), static_cast<long long>(r.frames), r.width,
                r.height, r.encoder.c_str(), best, best_cpu);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "video_bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
