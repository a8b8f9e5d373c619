// io/video: mp4 round trips through FFmpeg, the time/space conditioning of ReadVideo, the GIF and
// PNG writers, and the errors for files that are not (whole) videos.
#include "io/video.h"

#include <malloc.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/error_testing.h"

namespace sdpo::video {
namespace {

using sdpo::testing::ExpectErrorContains;
using sdpo::testing::FreshTmpDir;

// A smooth moving colour pattern [3, T, H, W] in [-1, 1]: what a decoded sample looks like.
Tensor SyntheticClip(int64_t T, int64_t H, int64_t W) {
  Tensor v = Tensor::Empty({3, T, H, W});
  float* x = v.data<float>();
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t w = 0; w < W; ++w) {
          const double phase = 0.15 * t + 0.8 * c;
          x[((c * T + t) * H + h) * W + w] = static_cast<float>(
              0.7 * std::sin(2 * M_PI * (w / double(W) + phase)) * std::cos(M_PI * h / double(H)) +
              0.2 * std::cos(2 * M_PI * (h / double(H) - 0.5 * phase)));
        }
      }
    }
  }
  return v;
}

// Frame t is a uniform grey of level 10 + 8 t (0..255): a frame's index can be read back.
Tensor NumberedClip(int64_t T, int64_t H = 32, int64_t W = 48) {
  Tensor v = Tensor::Empty({3, T, H, W});
  float* x = v.data<float>();
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t p = 0; p < H * W; ++p) x[(c * T + t) * H * W + p] = (10 + 8 * t) / 127.5f - 1;
    }
  }
  return v;
}

// The source index of each frame of a read NumberedClip (nearest level).
std::vector<int64_t> FrameNumbers(const Tensor& v) {
  const int64_t T = v.size(1), HW = v.size(2) * v.size(3);
  const float* x = v.data<float>();
  std::vector<int64_t> out;
  for (int64_t t = 0; t < T; ++t) {
    double mean = 0;
    for (int64_t p = 0; p < HW; ++p) mean += x[t * HW + p];  // channel 0
    const double level = (mean / HW + 1) * 127.5;
    out.push_back(std::lround((level - 10) / 8));
  }
  return out;
}

double Psnr(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  const float* x = a.data<float>();
  const float* y = b.data<float>();
  double se = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    // In 8-bit units: the written video is quantised to bytes first.
    const double d = (x[i] - y[i]) * 127.5;
    se += d * d;
  }
  const double mse = se / a.numel();
  return 10 * std::log10(255.0 * 255.0 / mse);
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(VideoTest, Mp4RoundTripKeepsTheFramesAbove35Db) {
  const std::string dir = FreshTmpDir("video_roundtrip");
  const Tensor clip = SyntheticClip(17, 64, 96);
  const WriteResult r = WriteMp4(dir + "/clip.mp4", clip, {/*fps=*/16});
  std::printf("encoder: %s (%s)\n", r.encoder.c_str(), r.codec.c_str());
  EXPECT_EQ(r.encoder, DefaultMp4Encoder());
  EXPECT_EQ(r.frames, 17);
  VideoInfo info;
  const Tensor back = ReadVideo(dir + "/clip.mp4", {}, &info);
  EXPECT_EQ(info.width, 96);
  EXPECT_EQ(info.height, 64);
  EXPECT_NEAR(info.fps, 16, 1e-6);
  EXPECT_EQ(info.frames, 17);
  ASSERT_EQ(back.shape(), clip.shape());
  const double psnr = Psnr(clip, back);
  std::printf("PSNR %.2f dB\n", psnr);
  EXPECT_GE(psnr, 35.0);
  EXPECT_FALSE(std::filesystem::exists(dir + "/clip.mp4.tmp"));
}

// libx264's AVX-512 kernels read memory it never wrote, so one clip gave one of two mp4 files
// from run to run (//trainers:sample --threads=2: 3 of 8 runs). glibc's M_PERTURB fills freed heap
// blocks with a chosen byte: files written over heaps of different garbage must be the same bytes.
// Before the fix the 480x720 clip differed for every pair of bytes tried, every run.
TEST(VideoTest, Mp4BytesDoNotDependOnWhatTheHeapHeld) {
#ifndef M_PERTURB
  GTEST_SKIP() << "no mallopt(M_PERTURB) (not glibc)";
#else
  const std::string dir = FreshTmpDir("video_heap");
  for (const int h : {32, 480}) {
    const int w = h * 3 / 2;
    const Tensor clip = SyntheticClip(9, h, w);
    std::string reference;
    for (const int perturb : {0x01, 0x55, 0xAA}) {
      mallopt(M_PERTURB, perturb);
      // The second write gets the blocks the first freed, now holding `perturb`.
      for (int k = 0; k < 2; ++k) WriteMp4(dir + "/clip.mp4", clip);
      mallopt(M_PERTURB, 0);
      const std::string bytes = ReadBytes(dir + "/clip.mp4");
      if (reference.empty()) reference = bytes;
      EXPECT_TRUE(bytes == reference) << h << "x" << w << ": the mp4 written over heap "
                                      << "garbage 0x" << std::hex << perturb << " differs from 0x1";
    }
  }
#endif
}

TEST(VideoTest, OddSizesArePaddedToEven) {
  const std::string dir = FreshTmpDir("video_odd");
  const WriteResult r = WriteMp4(dir + "/odd.mp4", SyntheticClip(3, 33, 45));
  EXPECT_EQ(r.width, 46);
  EXPECT_EQ(r.height, 34);
  EXPECT_EQ(ReadVideo(dir + "/odd.mp4").shape(), (Shape{3, 3, 34, 46}));
}

TEST(VideoTest, ResamplesToATargetFrameRate) {
  const std::string dir = FreshTmpDir("video_fps");
  WriteMp4(dir + "/n.mp4", NumberedClip(24), {/*fps=*/24});
  // Every frame at the file's rate.
  std::vector<int64_t> all(24);
  for (int i = 0; i < 24; ++i) all[i] = i;
  EXPECT_EQ(FrameNumbers(ReadVideo(dir + "/n.mp4")), all);
  // 24 -> 8 fps: every third frame (what is on screen at i / 8 s).
  ReadOptions o;
  o.fps = 8;
  EXPECT_EQ(FrameNumbers(ReadVideo(dir + "/n.mp4", o)),
            (std::vector<int64_t>{0, 3, 6, 9, 12, 15, 18, 21}));
  // 24 -> 10 fps: t_i = i / 10 s shows frame floor(2.4 i).
  o.fps = 10;
  EXPECT_EQ(FrameNumbers(ReadVideo(dir + "/n.mp4", o)),
            (std::vector<int64_t>{0, 2, 4, 7, 9, 12, 14, 16, 19, 21}));
  // Up-sampling holds each frame: 24 -> 48 fps repeats every frame twice.
  o.fps = 48;
  const std::vector<int64_t> up = FrameNumbers(ReadVideo(dir + "/n.mp4", o));
  ASSERT_EQ(up.size(), 48u);
  for (int i = 0; i < 48; ++i) EXPECT_EQ(up[i], i / 2) << i;
  // A start time skips the frames before it.
  o.fps = 8;
  o.start_s = 0.5;
  EXPECT_EQ(FrameNumbers(ReadVideo(dir + "/n.mp4", o)), (std::vector<int64_t>{12, 15, 18, 21}));
}

TEST(VideoTest, CutsTheCountTo1Plus4kAndMaxFrames) {
  EXPECT_EQ(OnePlus4k(0), 0);
  EXPECT_EQ(OnePlus4k(1), 1);
  EXPECT_EQ(OnePlus4k(4), 1);
  EXPECT_EQ(OnePlus4k(5), 5);
  EXPECT_EQ(OnePlus4k(84), 81);
  const std::string dir = FreshTmpDir("video_1p4k");
  WriteMp4(dir + "/n.mp4", NumberedClip(24), {/*fps=*/24});
  ReadOptions o;
  o.one_plus_4k = true;
  EXPECT_EQ(FrameNumbers(ReadVideo(dir + "/n.mp4", o)).size(), 21u);
  o.max_frames = 12;  // 12 -> 9
  EXPECT_EQ(FrameNumbers(ReadVideo(dir + "/n.mp4", o)),
            (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  o.fps = 12;  // 12 frames at 12 fps (every other), then 1 + 4k = 9
  EXPECT_EQ(FrameNumbers(ReadVideo(dir + "/n.mp4", o)),
            (std::vector<int64_t>{0, 2, 4, 6, 8, 10, 12, 14, 16}));
}

TEST(VideoTest, ResizesToCoverThenCropsTheCentre) {
  const std::string dir = FreshTmpDir("video_crop");
  // A horizontal grey ramp 96 wide, 64 high: level = 40 + 2 x.
  const int64_t T = 2, H = 64, W = 96;
  Tensor v = Tensor::Empty({3, T, H, W});
  float* x = v.data<float>();
  for (int64_t i = 0; i < v.numel(); ++i) x[i] = (40 + 2 * (i % W)) / 127.5f - 1;
  WriteMp4(dir + "/ramp.mp4", v);
  ReadOptions o;
  o.height = 32;
  o.width = 32;
  // Cover: scale max(32/96, 32/64) = 1/2 -> 48 x 32, crop columns 8..39 of the scaled frame, i.e.
  // source columns centred at 2 j + 16.5 for output column j.
  const Tensor out = ReadVideo(dir + "/ramp.mp4", o);
  ASSERT_EQ(out.shape(), (Shape{3, 2, 32, 32}));
  const float* y = out.data<float>();
  for (int64_t j = 1; j < 31; ++j) {  // the outermost columns see the scaler's edge taps
    const double expected = 40 + 2 * (2 * j + 16.5);
    const double found = (y[16 * 32 + j] + 1) * 127.5;  // channel 0, frame 0, row 16
    // Codec error on a smooth ramp: a few levels.
    EXPECT_NEAR(found, expected, 4.0) << "column " << j;
  }
  // Portrait target from a landscape frame: scale to height, crop the width.
  o.height = 48;
  o.width = 24;
  EXPECT_EQ(ReadVideo(dir + "/ramp.mp4", o).shape(), (Shape{3, 2, 48, 24}));
}

TEST(VideoTest, FfprobeReadsTheMp4WeWrite) {
  if (std::system("ffprobe -version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no ffprobe";
  const std::string dir = FreshTmpDir("video_ffprobe");
  const WriteResult r = WriteMp4(dir + "/p.mp4", SyntheticClip(9, 48, 80), {/*fps=*/16});
  const std::string cmd =
      "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
      "stream=codec_name,width,height,pix_fmt,nb_read_frames,avg_frame_rate "
      "-of default=nw=1 " +
      dir + "/p.mp4 > " + dir + "/probe.txt";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string probe = ReadBytes(dir + "/probe.txt");
  EXPECT_NE(probe.find("codec_name=" + r.codec), std::string::npos) << probe;
  EXPECT_NE(probe.find("width=80"), std::string::npos) << probe;
  EXPECT_NE(probe.find("height=48"), std::string::npos) << probe;
  EXPECT_NE(probe.find("pix_fmt=yuv420p"), std::string::npos) << probe;
  EXPECT_NE(probe.find("avg_frame_rate=16/1"), std::string::npos) << probe;
  EXPECT_NE(probe.find("nb_read_frames=9"), std::string::npos) << probe;
}

TEST(VideoTest, GifAndContactSheetAreReadableImages) {
  const std::string dir = FreshTmpDir("video_gif");
  const Tensor clip = NumberedClip(5, 16, 24);
  WriteGif(dir + "/c.gif", clip, 10);
  // FFmpeg reads our GIF back: 5 frames of 24 x 16 with the frame order kept.
  VideoInfo info;
  const Tensor back = ReadVideo(dir + "/c.gif", {}, &info);
  EXPECT_EQ(info.codec, "gif");
  ASSERT_EQ(back.shape(), (Shape{3, 5, 16, 24}));
  // The fixed palette's grey ramp has steps of about 6.5 levels: numbers survive.
  EXPECT_EQ(FrameNumbers(back), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  WriteContactSheet(dir + "/c.png", clip, /*columns=*/3);
  const Tensor sheet = ReadVideo(dir + "/c.png");  // FFmpeg's PNG decoder
  // 2 rows x 3 columns of 24 x 16 with 2-pixel gaps.
  EXPECT_EQ(sheet.shape(), (Shape{3, 1, 2 * 18 + 2, 3 * 26 + 2}));
}

TEST(VideoTest, ReadsWhatFfmpegWritesInOtherContainers) {
  if (std::system("ffmpeg -version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no ffmpeg";
  const std::string dir = FreshTmpDir("video_containers");
  // 12 frames of FFmpeg's test pattern at 24 fps, 64 x 48, in each container and codec.
  for (const std::string ext_codec : {"webm:libvpx-vp9", "mov:mpeg4", "mkv:ffv1", "gif:gif"}) {
    const std::string ext = ext_codec.substr(0, ext_codec.find(':'));
    const std::string codec = ext_codec.substr(ext.size() + 1);
    const std::string path = dir + "/t." + ext;
    const std::string cmd =
        "ffmpeg -v error -y -f lavfi -i testsrc=size=64x48:rate=24 -frames:v 12 "
        "-c:v " +
        codec + " " + path + " > /dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      std::printf("skipping %s: this ffmpeg cannot write it\n", ext_codec.c_str());
      continue;
    }
    VideoInfo info;
    ReadOptions o;
    o.fps = 12;
    const Tensor v = ReadVideo(path, o, &info);
    EXPECT_EQ(info.width, 64) << path;
    EXPECT_EQ(v.shape(), (Shape{3, 6, 48, 64})) << path << " (" << info.codec << ")";
  }
}

TEST(VideoTest, BadFilesGiveErrorsNamingThem) {
  const std::string dir = FreshTmpDir("video_bad");
  ExpectErrorContains([&] { ReadVideo(dir + "/missing.mp4"); }, {dir + "/missing.mp4", "no such"});
  WriteBytes(dir + "/empty.mp4", "");
  ExpectErrorContains([&] { ReadVideo(dir + "/empty.mp4"); }, {dir + "/empty.mp4", "empty"});
  WriteBytes(dir + "/notes.mp4", "these are not the frames you are looking for\n");
  ExpectErrorContains([&] { ReadVideo(dir + "/notes.mp4"); }, {dir + "/notes.mp4"});
  // A real mp4 cut in half (index first: the frame data is missing).
  WriteMp4(dir + "/whole.mp4", SyntheticClip(17, 64, 96));
  const std::string whole = ReadBytes(dir + "/whole.mp4");
  WriteBytes(dir + "/half.mp4", whole.substr(0, whole.size() / 2));
  ExpectErrorContains([&] { ReadVideo(dir + "/half.mp4"); }, {dir + "/half.mp4"});
  // Only the first 100 bytes.
  WriteBytes(dir + "/head.mp4", whole.substr(0, 100));
  ExpectErrorContains([&] { ReadVideo(dir + "/head.mp4"); }, {dir + "/head.mp4"});
  // The container header overwritten with noise.
  std::string corrupt = whole;
  for (size_t i = 0; i < 256 && i < corrupt.size(); ++i)
    corrupt[i] = static_cast<char>(i * 37 + 11);
  WriteBytes(dir + "/corrupt.mp4", corrupt);
  ExpectErrorContains([&] { ReadVideo(dir + "/corrupt.mp4"); }, {dir + "/corrupt.mp4"});
  // An audio-only or image-free file: a WAV header.
  static const char kWav[] =
      "RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00"
      "\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00";
  const std::string wav(kWav, sizeof(kWav) - 1);
  WriteBytes(dir + "/sound.wav", wav);
  ExpectErrorContains([&] { ReadVideo(dir + "/sound.wav"); }, {dir + "/sound.wav"});
}

TEST(VideoTest, MutatedFilesDecodeOrFailCleanly) {
  // 300 damaged copies of a real mp4 and GIF (bytes overwritten, cut short, chunks repeated):
  // each either decodes to a well-formed video or throws an sdpo::Error naming the file.
  const std::string dir = FreshTmpDir("video_mutants");
  WriteMp4(dir + "/seed.mp4", SyntheticClip(9, 32, 48));
  WriteGif(dir + "/seed.gif", NumberedClip(4, 16, 24), 10);
  uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  int decoded = 0, refused = 0;
  for (const std::string seed : {"seed.mp4", "seed.gif"}) {
    const std::string original = ReadBytes(dir + "/" + seed);
    for (int i = 0; i < 150; ++i) {
      std::string m = original;
      switch (i % 3) {
        case 0:  // overwrite a few bytes anywhere
          for (int k = 0; k < 1 + static_cast<int>(next() % 8); ++k) {
            m[next() % m.size()] = static_cast<char>(next());
          }
          break;
        case 1:  // cut short
          m.resize(next() % m.size());
          break;
        case 2: {  // repeat a chunk
          const size_t at = next() % m.size(), len = next() % 64;
          m.insert(at, m.substr(at, len));
          break;
        }
      }
      const std::string path = dir + "/m" + std::to_string(i) + "_" + seed;
      WriteBytes(path, m);
      try {
        const Tensor v = ReadVideo(path);
        ASSERT_EQ(v.dim(), 4);
        ASSERT_EQ(v.size(0), 3);
        ++decoded;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
        ++refused;
      }
    }
  }
  std::printf("mutants: %d decoded, %d refused\n", decoded, refused);
  EXPECT_GT(refused, 0);
}

TEST(VideoTest, HostileSizesAreRefusedBeforeAllocating) {
  const std::string dir = FreshTmpDir("video_hostile");
  // A YUV4MPEG2 stream whose header claims 100000 x 100000 frames (30 GB each).
  WriteBytes(dir + "/huge.y4m", "YUV4MPEG2 W100000 H100000 F30:1 Ip A1:1 C420jpeg\nFRAME\nabc");
  ExpectErrorContains([&] { ReadVideo(dir + "/huge.y4m"); }, {dir + "/huge.y4m"});
  // Within FFmpeg's limits but beyond ours.
  WriteBytes(dir + "/big.y4m", "YUV4MPEG2 W9000 H9000 F30:1 Ip A1:1 C420jpeg\nFRAME\nabc");
  ExpectErrorContains([&] { ReadVideo(dir + "/big.y4m"); }, {dir + "/big.y4m", "9000x9000"});
  // The output limit: frames accumulate only up to max_output_bytes.
  WriteMp4(dir + "/ok.mp4", NumberedClip(6));
  ReadOptions o;
  o.limits.max_output_bytes = 3 * 32 * 48 * 4 * 4;  // four frames
  ExpectErrorContains([&] { ReadVideo(dir + "/ok.mp4", o); }, {dir + "/ok.mp4", "limit"});
  o.max_frames = 4;
  EXPECT_EQ(ReadVideo(dir + "/ok.mp4", o).size(1), 4);
  // Requests that make no sense.
  ExpectErrorContains(
      [&] {
        ReadVideo(dir + "/ok.mp4", ReadOptions{0, 0, 0, false, 32, 0});
      },
      {"height and width"});
  ExpectErrorContains(
      [&] {
        WriteMp4(dir + "/x.mp4", Tensor::Zeros({4, 2, 8, 8}));
      },
      {"[3, T, H, W]"});
  ExpectErrorContains([&] { WriteMp4(dir + "/x.mp4", NumberedClip(2), {0}); }, {"fps"});
  ExpectErrorContains([&] { WriteMp4(dir + "/no/such/dir/x.mp4", NumberedClip(2)); },
                      {"no/such/dir/x.mp4"});
}

}  // namespace
}  // namespace sdpo::video
