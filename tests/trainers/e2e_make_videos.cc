// Writes the e2e test's raw data with our own video writer: `--n` mp4 clips (a
// square moving right or left over a gradient, at 8 fps) in `--dir`, and
// `--dir`/pairs.jsonl pairing them (prompt "a square moving right": the clip
// moving right is chosen).
#include <cstdio>
#include <fstream>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "io/command_line.h"
#include "io/video.h"

ABSL_FLAG(std::string, dir, "", "output folder");
ABSL_FLAG(int, n, 8, "clips (pairs: n / 2)");
ABSL_FLAG(int, frames, 9, "frames per clip");
ABSL_FLAG(int, size, 32, "width and height");

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv, "writes the e2e test's clips and pairs.jsonl");
  const std::string dir = absl::GetFlag(FLAGS_dir);
  const int n = absl::GetFlag(FLAGS_n), t = absl::GetFlag(FLAGS_frames);
  const int s = absl::GetFlag(FLAGS_size);
  for (int k = 0; k < n; ++k) {
    const int direction = k % 2 == 0 ? 1 : -1;
    std::vector<float> px(3 * t * s * s);
    for (int c = 0; c < 3; ++c) {
      for (int f = 0; f < t; ++f) {
        const int x0 = (s / 4 + direction * f * 2 + k + 2 * s) % s;
        for (int y = 0; y < s; ++y) {
          for (int x = 0; x < s; ++x) {
            const bool inside = x >= x0 && x < x0 + s / 4 && y >= s / 3 && y < s / 3 + s / 4;
            const float gradient = (c == 2 ? y : x) / static_cast<float>(s) - 0.5f;
            px[((c * t + f) * s + y) * s + x] = inside ? (c == k % 3 ? 0.9f : -0.6f) : gradient;
          }
        }
      }
    }
    sdpo::video::WriteOptions o;
    o.fps = 8;
    sdpo::video::WriteMp4(absl::StrCat(dir, "/clip", k, ".mp4"),
                          sdpo::Tensor::FromVector(px, {3, t, s, s}), o);
  }
  std::ofstream pairs(dir + "/pairs.jsonl");
  for (int k = 0; k + 1 < n; k += 2) {
    pairs << "{\"prompt\": \"a square moving right, " << (k / 2) % 3 << "\", \"chosen\": \"clip"
          << k << ".mp4\", \"rejected\": \"clip" << k + 1 << ".mp4\"}\n";
  }
  std::printf("wrote %d clips and %d pairs to %s\n", n, n / 2, dir.c_str());
  return 0;
}
