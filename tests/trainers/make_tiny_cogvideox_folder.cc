// Test helper: writes the tiny diffusers-shaped CogVideoX folder of tiny_cogvideox_folder.h.
//   make_tiny_cogvideox_folder --out=DIR --fixtures=shared/fixtures [--five_b] [--frames=9
//       --height=32 --width=32]
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "io/command_line.h"
#include "tensor/error.h"
#include "tests/trainers/tiny_cogvideox_folder.h"

ABSL_FLAG(std::string, out, "", "the folder to write (required)");
ABSL_FLAG(std::string, fixtures, "", "the shared fixtures folder (required)");
ABSL_FLAG(bool, five_b, false, "the 5B architecture (3-D RoPE) instead of 2B");
ABSL_FLAG(int64_t, frames, 9, "the DiT's sample frames");
ABSL_FLAG(int64_t, height, 32, "the DiT's sample height in pixels");
ABSL_FLAG(int64_t, width, 32, "the DiT's sample width in pixels");

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv, "writes a tiny diffusers-shaped CogVideoX folder");
  return sdpo::RunReportingErrors("make_tiny_cogvideox_folder", [] {
    SDPO_CHECK(!absl::GetFlag(FLAGS_out).empty() && !absl::GetFlag(FLAGS_fixtures).empty(),
               "--out and --fixtures are required");
    sdpo::testing::TinyCogVideoXOptions o;
    o.five_b = absl::GetFlag(FLAGS_five_b);
    o.frames = absl::GetFlag(FLAGS_frames);
    o.height = absl::GetFlag(FLAGS_height);
    o.width = absl::GetFlag(FLAGS_width);
    sdpo::testing::WriteTinyCogVideoXFolder(absl::GetFlag(FLAGS_out), absl::GetFlag(FLAGS_fixtures),
                                            o);
    return 0;
  });
}
