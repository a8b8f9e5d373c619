#include "trainers/demo/images.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "tensor/error.h"

namespace sdpo::demo {
namespace {

constexpr uint8_t kGapGrey = 64;
constexpr double kChannelRgb[4][3] = {
    {1.0, 0.0, 0.0}, {0.0, 1.0, 0.0}, {0.0, 0.0, 1.0}, {0.3, 0.3, 0.3}};

void CheckLatent(const Tensor& latent, const char* what) {
  SDPO_CHECK(latent.defined() && latent.dim() == 4, what, ": expected a latent [C, F, H, W], got ",
             latent.defined() ? latent.str() : "undefined");
  SDPO_CHECK(IsFloating(latent.dtype()), what, ": latent must be floating, got ", latent.str());
}

void CheckOptions(const ImageOptions& o) {
  SDPO_CHECK(o.scale >= 1 && o.scale <= 64, "ImageOptions: scale must be in [1, 64], got ",
             o.scale);
  SDPO_CHECK(o.value_range > 0, "ImageOptions: value_range must be > 0, got ", o.value_range);
  SDPO_CHECK(o.gap >= 0 && o.columns >= 0 && o.delay_cs >= 0 && o.delay_cs <= 65535,
             "ImageOptions: gap, columns and delay_cs must be >= 0 (delay_cs <= 65535)");
}

}  // namespace

RgbImage LatentFrame(const Tensor& latent, int64_t frame, const ImageOptions& options) {
  CheckLatent(latent, "LatentFrame");
  CheckOptions(options);
  const int64_t C = latent.size(0), F = latent.size(1), H = latent.size(2), W = latent.size(3);
  SDPO_CHECK(frame >= 0 && frame < F, "LatentFrame: frame ", frame, " out of range for ",
             latent.str());
  const std::vector<double> x = latent.ToVector();
  const int s = options.scale;
  RgbImage img(static_cast<int>(W) * s, static_cast<int>(H) * s);
  const double norm = 255.0 / (options.value_range * std::sqrt(std::max<double>(1.0, C / 4.0)));
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t w = 0; w < W; ++w) {
      double rgb[3] = {0, 0, 0};
      for (int64_t c = 0; c < C; ++c) {
        const double v = x[((c * F + frame) * H + h) * W + w];
        for (int k = 0; k < 3; ++k) rgb[k] += v * kChannelRgb[c % 4][k];
      }
      uint8_t px[3];
      for (int k = 0; k < 3; ++k) {
        const double v = rgb[k] * norm;
        px[k] = static_cast<uint8_t>(std::lround(std::isfinite(v) ? std::clamp(v, 0.0, 255.0) : 0));
      }
      for (int dy = 0; dy < s; ++dy) {
        for (int dx = 0; dx < s; ++dx) {
          std::copy_n(px, 3, img.at(static_cast<int>(w) * s + dx, static_cast<int>(h) * s + dy));
        }
      }
    }
  }
  return img;
}

RgbImage FrameStrip(const std::vector<Tensor>& latents, const ImageOptions& options) {
  SDPO_CHECK(!latents.empty(), "FrameStrip: no latents");
  for (const Tensor& l : latents) {
    CheckLatent(l, "FrameStrip");
    SDPO_CHECK(l.shape() == latents[0].shape(),
               "FrameStrip: latents differ in shape: ", ShapeStr(latents[0].shape()), " vs ",
               ShapeStr(l.shape()));
  }
  const int64_t F = latents[0].size(1);
  const int fw = static_cast<int>(latents[0].size(3)) * options.scale;
  const int fh = static_cast<int>(latents[0].size(2)) * options.scale;
  const int n = static_cast<int>(latents.size()), g = options.gap;
  RgbImage img(static_cast<int>(F) * fw + (static_cast<int>(F) + 1) * g, n * fh + (n + 1) * g,
               kGapGrey);
  for (int i = 0; i < n; ++i) {
    for (int64_t f = 0; f < F; ++f) {
      image::Blit(LatentFrame(latents[i], f, options), img, g + static_cast<int>(f) * (fw + g),
                  g + i * (fh + g));
    }
  }
  return img;
}

RgbImage SampleGrid(const std::vector<Tensor>& latents, int64_t frame,
                    const ImageOptions& options) {
  SDPO_CHECK(!latents.empty(), "SampleGrid: no latents");
  const int n = static_cast<int>(latents.size());
  const int cols = options.columns > 0 ? std::min(options.columns, n) : n;
  const int rows = (n + cols - 1) / cols;
  std::vector<RgbImage> frames;
  for (const Tensor& l : latents) {
    CheckLatent(l, "SampleGrid");
    SDPO_CHECK(l.shape() == latents[0].shape(),
               "SampleGrid: latents differ in shape: ", ShapeStr(latents[0].shape()), " vs ",
               ShapeStr(l.shape()));
    frames.push_back(LatentFrame(l, frame, options));
  }
  const int fw = frames[0].width, fh = frames[0].height, g = options.gap;
  RgbImage img(cols * fw + (cols + 1) * g, rows * fh + (rows + 1) * g, kGapGrey);
  for (int i = 0; i < n; ++i) {
    image::Blit(frames[i], img, g + (i % cols) * (fw + g), g + (i / cols) * (fh + g));
  }
  return img;
}

void WritePng(const std::string& path, const Tensor& latent, const ImageOptions& options) {
  WritePng(path, std::vector<Tensor>{latent}, options);
}

void WritePng(const std::string& path, const std::vector<Tensor>& latents,
              const ImageOptions& options) {
  CheckOptions(options);
  image::WritePng(path, FrameStrip(latents, options));
}

void WriteGif(const std::string& path, const Tensor& latent, const ImageOptions& options) {
  WriteGif(path, std::vector<Tensor>{latent}, options);
}

std::vector<RgbImage> GridFrames(const std::string& path, const std::vector<Tensor>& latents,
                                 const ImageOptions& options) {
  CheckOptions(options);
  SDPO_CHECK(!latents.empty(), path, ": no latents");
  CheckLatent(latents[0], path.c_str());
  std::vector<RgbImage> frames;
  for (int64_t f = 0; f < latents[0].size(1); ++f) {
    frames.push_back(SampleGrid(latents, f, options));
  }
  return frames;
}

void WriteGif(const std::string& path, const std::vector<Tensor>& latents,
              const ImageOptions& options) {
  image::WriteGif(path, GridFrames(path, latents, options), options.delay_cs);
}

}  // namespace sdpo::demo
