// Pictures of latent videos for people: animated GIFs and PNG frame strips, written with the
// encoders of io/image.h (so the demo needs no image library).
//
// Colours: channel c of a latent [C, F, H, W] adds its value times a fixed RGB column chosen by
// c % 4 (red, green, blue, grey), divided by sqrt(C / 4); value_range maps to full brightness
// and negative values clip to black. Each latent cell becomes a scale x scale block of pixels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/image.h"
#include "tensor/tensor.h"

namespace sdpo::demo {

struct ImageOptions {
  int scale = 8;             // pixels per latent cell (each side)
  double value_range = 2.5;  // latent value shown at full brightness
  int gap = 2;               // pixels between frames / samples (grey)
  int columns = 0;           // GIF of several latents: samples per row (0: all in one row)
  int delay_cs = 30;         // GIF frame delay in 1/100 s
};

// The image type and encoders are io/image.h's; these names keep the demo's callers short.
using image::Adler32;
using image::Crc32;
using image::EncodeGif;
using image::EncodePng;
using image::GifPalette;
using image::GifPaletteIndex;
using image::LzwEncode;
using image::RgbImage;

// One frame of a latent [C, F, H, W] (any float dtype) as an image of (W*scale) x (H*scale).
RgbImage LatentFrame(const Tensor& latent, int64_t frame, const ImageOptions& options = {});
// A grid: one row per latent, one column per frame (the PNG "frame strip").
RgbImage FrameStrip(const std::vector<Tensor>& latents, const ImageOptions& options = {});
// Frame f of several latents side by side (options.columns per row).
RgbImage SampleGrid(const std::vector<Tensor>& latents, int64_t frame,
                    const ImageOptions& options = {});

// Files (written atomically: temporary file + rename).
// PNG frame strip of one latent, or of several (one per row).
void WritePng(const std::string& path, const Tensor& latent, const ImageOptions& options = {});
void WritePng(const std::string& path, const std::vector<Tensor>& latents,
              const ImageOptions& options = {});
// Animated GIF of one latent's frames, or of several latents side by side.
void WriteGif(const std::string& path, const Tensor& latent, const ImageOptions& options = {});
void WriteGif(const std::string& path, const std::vector<Tensor>& latents,
              const ImageOptions& options = {});
// The frames of WriteGif: frame f of every latent side by side.
std::vector<RgbImage> GridFrames(const std::string& path, const std::vector<Tensor>& latents,
                                 const ImageOptions& options = {});

}  // namespace sdpo::demo
