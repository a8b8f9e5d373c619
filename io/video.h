// Video files through FFmpeg's libraries (libavformat, libavcodec, libswscale, libavutil).
//
// Reading: whatever the linked FFmpeg demuxes and decodes (mp4/H.264, webm/VP9, mov, gif, ...)
// becomes a float tensor [3, T, H, W] (RGB, values in [-1, 1] = pixel / 127.5 - 1), with the
// conditioning the Wan2.1 / CogVideoX training pipelines apply (docs/data.md, "Video files"):
//   1. time: output frame i shows what is on screen at t_i = start + i / fps (the last decoded
//      frame whose timestamp is <= t_i), for fps = ReadOptions::fps (0: every decoded frame);
//   2. count: at most max_frames frames; with one_plus_4k the count is cut to the largest
//      1 + 4k (the VAE's temporal factor 4: 81 for Wan2.1, 49 for CogVideoX);
//   3. space: each frame is scaled (bicubic, aspect ratio kept) to the smallest size that
//      covers height x width, then centre-cropped to height x width (0 x 0: the file's size).
// Writing: H.264 in mp4 (yuv420p, BT.709, limited range) with the first encoder the build has
// of libx264, libopenh264, then MPEG-4 part 2 (the choice is returned); GIF (io/image.h's fixed
// palette) and PNG contact sheets.
//
// Every failure is an sdpo::Error naming the file: missing, empty, truncated, corrupt, not a
// video, no decodable frame, or sizes beyond the limits (checked before anything is allocated
// for them: a header claiming 100000 x 100000 pixels is refused, not allocated).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/image.h"
#include "tensor/tensor.h"

namespace sdpo::video {

// The container's and the video stream's description (Probe reads only the header).
struct VideoInfo {
  std::string path;
  std::string container;  // FFmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
  std::string codec;      // e.g. "h264", "vp9", "gif"
  int width = 0, height = 0;
  double fps = 0;         // average frame rate (0 when the file does not say)
  double duration_s = 0;  // 0 when unknown
  int64_t frames = 0;     // frame count from the header (0 when unknown)
};

// Limits on what a file may claim before anything is allocated for it.
struct VideoLimits {
  int64_t max_side = 16384;                  // width and height of a decoded frame
  int64_t max_frame_pixels = 8192LL * 8192;  // width * height of a decoded frame
  int64_t max_output_bytes = 8LL << 30;      // the returned f32 tensor
};

struct ReadOptions {
  double fps = 0;             // output frame rate (0: every decoded frame)
  double start_s = 0;         // skip frames before this time (seconds from the first frame)
  int64_t max_frames = 0;     // at most this many output frames (0: all)
  bool one_plus_4k = false;   // cut the count to the largest 1 + 4k
  int height = 0, width = 0;  // resize + centre crop to this size (both 0: the file's size)
  VideoLimits limits;
};

VideoInfo Probe(const std::string& path, const VideoLimits& limits = {});

// Decodes `path` into [3, T, H, W] f32 in [-1, 1] (see the top of this file). `info` receives
// the probe. Errors name the file.
Tensor ReadVideo(const std::string& path, const ReadOptions& options = {},
                 VideoInfo* info = nullptr);

// The largest 1 + 4k <= n (0 when n == 0).
int64_t OnePlus4k(int64_t n);

struct WriteOptions {
  double fps = 16;      // Wan2.1's frame rate
  int crf = 17;         // libx264 quality (lower is better; 17 is about visually lossless)
  std::string encoder;  // force an encoder by FFmpeg name (empty: the first available, above)
};

struct WriteResult {
  std::string encoder;  // FFmpeg's name of the encoder used, e.g. "libx264"
  std::string codec;    // the codec it produces, e.g. "h264" (or "mpeg4" on the fallback)
  int width = 0, height = 0;
  int64_t frames = 0;
};

// The encoder WriteMp4 would use ("libx264", ...), or "" when the build has none.
std::string DefaultMp4Encoder();

// Writes a video [3, T, H, W] (any float dtype, values in [-1, 1], clipped) as an mp4,
// atomically (temporary file + rename). Odd widths/heights are padded by repeating the last
// column/row (yuv420p needs even sizes).
WriteResult WriteMp4(const std::string& path, const Tensor& video,
                     const WriteOptions& options = {});
// The same for 8-bit RGB frames of one size (e.g. renderings of latents).
WriteResult WriteMp4(const std::string& path, const std::vector<image::RgbImage>& frames,
                     const WriteOptions& options = {});

// One frame of a video [3, T, H, W] as 8-bit RGB.
image::RgbImage FrameImage(const Tensor& video, int64_t frame);
// Animated GIF of the frames at `fps` (GIF delays are in 1/100 s, so the rate is rounded).
void WriteGif(const std::string& path, const Tensor& video, double fps = 16);
// PNG contact sheet: the frames in a grid of `columns` (0: about square), every `stride`-th
// frame (0: as many as fit 16 tiles), 2-pixel grey gaps.
void WriteContactSheet(const std::string& path, const Tensor& video, int columns = 0,
                       int64_t stride = 0);

}  // namespace sdpo::video
