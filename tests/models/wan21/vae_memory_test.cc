// The Wan VAE decode stays within the memory bound docs/wan21.md states ("Memory bound"), counted
// in tensor bytes (GetHostTensorMemory) on the released architecture at a smaller width (dim 32)
// and size, where the bound has the same form as at dim 96 and 480 x 832:
//
//   peak - before <= 4 B x ((22.625 + 4) c·H·W + 30 H·W)  +  12 B x T·H·W  +  latent-sized terms
//
// 22.625 c·H·W: the streams' state (two cached input frames per causal conv; the heads cache
// partial sums), 4 c·H·W: the working set (three full-resolution frames in a residual block and
// at most one c·H·W of lower-resolution frames waiting), 30 H·W: the 3-channel head's partial
// sums (6 channels cached, up to 24 while it runs), 12 B x T·H·W: the f32 output video.
#include <cstdint>

#include "gtest/gtest.h"
#include "models/wan21/vae.h"
#include "tensor/ops.h"
#include "tensor/storage.h"

namespace sdpo::wan21 {
namespace {

constexpr int64_t kHeight = 48, kWidth = 64;

WanVaeConfig SmallWidthConfig() {
  WanVaeConfig c;  // the released structure
  c.dim = 32;
  return c;
}

// Peak tensor bytes above what was alive before one decode of `latent_frames` frames.
int64_t DecodePeakBytes(const WanVae& vae, int64_t latent_frames) {
  const int64_t f = vae.config().spatial_factor();
  const Tensor z = ops::RandomNormal(
      {1, vae.config().z_dim, latent_frames, kHeight / f, kWidth / f}, 3, 0, kF32);
  const int64_t before = GetHostTensorMemory().live_bytes;
  ResetHostPeakBytes();
  const Tensor video = vae.Decode(z);
  EXPECT_EQ(video.size(2), vae.VideoFrames(latent_frames));
  return GetHostTensorMemory().peak_bytes - before;
}

// The bound of docs/wan21.md for a video of `frames` frames, in bytes.
double DecodeBoundBytes(const WanVaeConfig& c, int64_t frames) {
  const double chw = static_cast<double>(c.dim) * kHeight * kWidth;
  const double hw = static_cast<double>(kHeight) * kWidth;
  const double latent_hw = hw / (c.spatial_factor() * c.spatial_factor());
  // The latent-sized terms: the decoder's conv1 cache, the un-normalised latent and conv2 of it.
  return 4.0 * ((22.625 + 4.0) * chw + 30.0 * hw) + 12.0 * frames * hw +
         4.0 * 4 * c.z_dim * latent_hw;
}

TEST(VaeMemoryTest, DecodePeakIsWithinTheDocumentedBound) {
  const WanVaeConfig c = SmallWidthConfig();
  WanVae vae(c);
  const int64_t peak = DecodePeakBytes(vae, 3);
  const double bound = DecodeBoundBytes(c, vae.VideoFrames(3));
  const double state = 4.0 * 22.625 * c.dim * kHeight * kWidth;
  std::printf(
      "[memory] decode 3 latent frames at %lldx%lld, dim %lld: peak %.0f KiB, bound %.0f "
      "KiB (%.1f c*H*W)\n",
      static_cast<long long>(kHeight), static_cast<long long>(kWidth),
      static_cast<long long>(c.dim), peak / 1024.0, bound / 1024.0,
      peak / (4.0 * c.dim * kHeight * kWidth));
  EXPECT_LE(peak, bound);
  EXPECT_GE(peak, state);  // the streams' state must be counted: the counter works
}

TEST(VaeMemoryTest, DecodePeakGrowsOnlyByTheOutputVideo) {
  WanVae vae(SmallWidthConfig());
  const int64_t short_peak = DecodePeakBytes(vae, 2);
  const int64_t long_peak = DecodePeakBytes(vae, 6);
  const int64_t extra_video =
      12 * (vae.VideoFrames(6) - vae.VideoFrames(2)) * kHeight * kWidth;  // f32, 3 channels
  // The un-normalised latent, its transient and conv2 of it: 3 latent-sized f32 tensors.
  const int64_t extra_latent = 3 * 4 * 16 * 4 * (kHeight / 8) * (kWidth / 8);
  EXPECT_LE(long_peak - short_peak, extra_video + extra_latent);
}

}  // namespace
}  // namespace sdpo::wan21
