// Pictures of latent videos for people: animated GIFs and PNG frame strips, with our own
// encoders (GIF: LZW; PNG: zlib stream of stored deflate blocks + CRC-32 + Adler-32), so the
// demo needs no image library.
//
// Colours: channel c of a latent [C, F, H, W] adds its value times a fixed RGB column chosen by
// c % 4 (red, green, blue, grey), divided by sqrt(C / 4); value_range maps to full brightness
// and negative values clip to black. Each latent cell becomes a scale x scale block of pixels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace sdpo::demo {

struct ImageOptions {
  int scale = 8;             // pixels per latent cell (each side)
  double value_range = 2.5;  // latent value shown at full brightness
  int gap = 2;               // pixels between frames / samples (grey)
  int columns = 0;           // GIF of several latents: samples per row (0: all in one row)
  int delay_cs = 30;         // GIF frame delay in 1/100 s
};

// An 8-bit RGB image, row-major, 3 bytes per pixel.
struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;
  RgbImage() = default;
  RgbImage(int w, int h, uint8_t fill = 0);
  uint8_t* at(int x, int y) { return &pixels[(static_cast<size_t>(y) * width + x) * 3]; }
};

// One frame of a latent [C, F, H, W] (any float dtype) as an image of (W*scale) x (H*scale).
RgbImage LatentFrame(const Tensor& latent, int64_t frame, const ImageOptions& options = {});
// A grid: one row per latent, one column per frame (the PNG "frame strip").
RgbImage FrameStrip(const std::vector<Tensor>& latents, const ImageOptions& options = {});
// Frame f of several latents side by side (options.columns per row).
RgbImage SampleGrid(const std::vector<Tensor>& latents, int64_t frame,
                    const ImageOptions& options = {});

// Encoders (whole files as bytes).
std::string EncodePng(const RgbImage& image);
// Animated, looping GIF89a; every frame must have the first frame's size. Colours are
// quantised to a fixed 6x6x6 cube (+ a 40-step grey ramp).
std::string EncodeGif(const std::vector<RgbImage>& frames, int delay_cs);

// Files (written atomically: temporary file + rename).
void WritePng(const std::string& path, const RgbImage& image);
// PNG frame strip of one latent, or of several (one per row).
void WritePng(const std::string& path, const Tensor& latent, const ImageOptions& options = {});
void WritePng(const std::string& path, const std::vector<Tensor>& latents,
              const ImageOptions& options = {});
// Animated GIF of one latent's frames, or of several latents side by side.
void WriteGif(const std::string& path, const Tensor& latent, const ImageOptions& options = {});
void WriteGif(const std::string& path, const std::vector<Tensor>& latents,
              const ImageOptions& options = {});

// Building blocks (exposed for tests).
uint32_t Crc32(const uint8_t* data, size_t size, uint32_t crc = 0);  // PNG / zlib polynomial
uint32_t Adler32(const uint8_t* data, size_t size, uint32_t adler = 1);
// GIF LZW code stream (before sub-blocking) for `indices` (each < 2^min_code_size).
std::vector<uint8_t> LzwEncode(const std::vector<uint8_t>& indices, int min_code_size);
// The GIF palette (256 RGB triples) and the index of an RGB colour in it.
const std::vector<uint8_t>& GifPalette();
uint8_t GifPaletteIndex(uint8_t r, uint8_t g, uint8_t b);

}  // namespace sdpo::demo
