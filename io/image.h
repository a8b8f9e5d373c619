// Still and animated pictures for people, with our own small encoders (no image library):
// PNG (zlib stream of stored deflate blocks + CRC-32 + Adler-32) and animated GIF89a (LZW over a
// fixed palette). The demo's latent renderings (trainers/demo/images.h) and the video contact
// sheets and GIFs (io/video.h) both write through these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sdpo::image {

// An 8-bit RGB image, row-major, 3 bytes per pixel.
struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;
  RgbImage() = default;
  RgbImage(int w, int h, uint8_t fill = 0);
  uint8_t* at(int x, int y) { return &pixels[(static_cast<size_t>(y) * width + x) * 3]; }
  const uint8_t* at(int x, int y) const {
    return &pixels[(static_cast<size_t>(y) * width + x) * 3];
  }
};

// Copies `src` into `dst` with its top-left corner at (x0, y0); it must fit.
void Blit(const RgbImage& src, RgbImage& dst, int x0, int y0);

// Encoders (whole files as bytes).
std::string EncodePng(const RgbImage& image);
// Animated, looping GIF89a; every frame must have the first frame's size. Colours are
// quantised to a fixed 6x6x6 cube (+ a 40-step grey ramp).
std::string EncodeGif(const std::vector<RgbImage>& frames, int delay_cs);

// Writes `bytes` to a temporary file next to `path` and renames it over `path`.
void WriteFileAtomically(const std::string& path, const std::string& bytes);
void WritePng(const std::string& path, const RgbImage& image);
void WriteGif(const std::string& path, const std::vector<RgbImage>& frames, int delay_cs);

// Building blocks (exposed for tests).
uint32_t Crc32(const uint8_t* data, size_t size, uint32_t crc = 0);  // PNG / zlib polynomial
uint32_t Adler32(const uint8_t* data, size_t size, uint32_t adler = 1);
// GIF LZW code stream (before sub-blocking) for `indices` (each < 2^min_code_size).
std::vector<uint8_t> LzwEncode(const std::vector<uint8_t>& indices, int min_code_size);
// The GIF palette (256 RGB triples) and the index of an RGB colour in it.
const std::vector<uint8_t>& GifPalette();
uint8_t GifPaletteIndex(uint8_t r, uint8_t g, uint8_t b);

}  // namespace sdpo::image
