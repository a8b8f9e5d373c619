#include "io/image.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "tensor/error.h"

namespace sdpo::image {
namespace {

constexpr int kCubeLevels = 6;  // 216 cube colours
constexpr int kGreyLevels = 40;

void PutU32BE(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}
void PutU16LE(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
}

void PngChunk(std::string& out, const char type[4], const std::string& data) {
  PutU32BE(out, static_cast<uint32_t>(data.size()));
  std::string body(type, 4);
  body += data;
  out += body;
  PutU32BE(out, Crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
}

}  // namespace

RgbImage::RgbImage(int w, int h, uint8_t fill)
    : width(w), height(h), pixels(static_cast<size_t>(w) * h * 3, fill) {}

void Blit(const RgbImage& src, RgbImage& dst, int x0, int y0) {
  SDPO_CHECK(x0 >= 0 && y0 >= 0 && x0 + src.width <= dst.width && y0 + src.height <= dst.height,
             "Blit: a ", src.width, "x", src.height, " image at (", x0, ", ", y0,
             ") does not fit in ", dst.width, "x", dst.height);
  for (int y = 0; y < src.height; ++y) {
    std::copy_n(&src.pixels[static_cast<size_t>(y) * src.width * 3], src.width * 3,
                dst.at(x0, y0 + y));
  }
}

void WriteFileAtomically(const std::string& path, const std::string& bytes) {
  static std::atomic<int> counter{0};
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid(), ".", counter++);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    SDPO_CHECK(out.good(), path, ": cannot open ", tmp, " for writing");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    SDPO_CHECK(out.good(), path, ": failed writing ", bytes.size(), " bytes to ", tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    SDPO_FAIL(path, ": cannot rename ", tmp, " to ", path);
  }
}

uint32_t Crc32(const uint8_t* data, size_t size, uint32_t crc) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t Adler32(const uint8_t* data, size_t size, uint32_t adler) {
  uint32_t a = adler & 0xffff, b = adler >> 16;
  for (size_t i = 0; i < size; ++i) {
    a = (a + data[i]) % 65521u;
    b = (b + a) % 65521u;
  }
  return (b << 16) | a;
}

std::string EncodePng(const RgbImage& image) {
  SDPO_CHECK(image.width > 0 && image.height > 0 &&
                 image.pixels.size() == static_cast<size_t>(image.width) * image.height * 3,
             "EncodePng: bad image ", image.width, "x", image.height, " with ", image.pixels.size(),
             " bytes");
  // Scanlines, each with filter type 0 (none).
  std::string raw;
  const size_t row = static_cast<size_t>(image.width) * 3;
  raw.reserve((row + 1) * image.height);
  for (int y = 0; y < image.height; ++y) {
    raw.push_back('\0');
    raw.append(reinterpret_cast<const char*>(&image.pixels[y * row]), row);
  }
  // zlib stream: header (deflate, 32K window, no dictionary, fastest), stored blocks, Adler-32.
  std::string z = "\x78\x01";
  size_t pos = 0;
  do {
    const size_t len = std::min<size_t>(65535, raw.size() - pos);
    const bool last = pos + len == raw.size();
    z.push_back(last ? '\x01' : '\x00');  // BFINAL, BTYPE = 00 (stored), padded to a byte
    PutU16LE(z, static_cast<uint32_t>(len));
    PutU16LE(z, static_cast<uint32_t>(~len & 0xffff));
    z.append(raw, pos, len);
    pos += len;
  } while (pos < raw.size());
  PutU32BE(z, Adler32(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()));

  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  PutU32BE(ihdr, static_cast<uint32_t>(image.width));
  PutU32BE(ihdr, static_cast<uint32_t>(image.height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit, RGB, deflate, adaptive, no interlace
  PngChunk(png, "IHDR", ihdr);
  PngChunk(png, "IDAT", z);
  PngChunk(png, "IEND", "");
  return png;
}

const std::vector<uint8_t>& GifPalette() {
  static const std::vector<uint8_t>* palette = [] {
    auto* p = new std::vector<uint8_t>;
    for (int r = 0; r < kCubeLevels; ++r) {
      for (int g = 0; g < kCubeLevels; ++g) {
        for (int b = 0; b < kCubeLevels; ++b) {
          for (int v : {r, g, b}) p->push_back(static_cast<uint8_t>(v * 255 / (kCubeLevels - 1)));
        }
      }
    }
    for (int i = 0; i < kGreyLevels; ++i) {
      const auto v = static_cast<uint8_t>((i * 255 + (kGreyLevels - 1) / 2) / (kGreyLevels - 1));
      for (int k = 0; k < 3; ++k) p->push_back(v);
    }
    return p;
  }();
  return *palette;
}

uint8_t GifPaletteIndex(uint8_t r, uint8_t g, uint8_t b) {
  const int hi = std::max({r, g, b}), lo = std::min({r, g, b});
  if (hi - lo <= 8) {  // near-grey: the finer grey ramp
    const int mean = (r + g + b) / 3;
    return static_cast<uint8_t>(kCubeLevels * kCubeLevels * kCubeLevels +
                                (mean * (kGreyLevels - 1) + 127) / 255);
  }
  auto level = [](int v) { return (v * (kCubeLevels - 1) + 127) / 255; };
  return static_cast<uint8_t>((level(r) * kCubeLevels + level(g)) * kCubeLevels + level(b));
}

std::vector<uint8_t> LzwEncode(const std::vector<uint8_t>& indices, int min_code_size) {
  SDPO_CHECK(min_code_size >= 2 && min_code_size <= 8,
             "LzwEncode: min_code_size must be in [2, 8], got ", min_code_size);
  const uint32_t clear = 1u << min_code_size, eoi = clear + 1;
  std::vector<uint8_t> out;
  uint32_t bit_buffer = 0;
  int bit_count = 0;
  int width = min_code_size + 1;
  auto emit = [&](uint32_t code) {
    bit_buffer |= code << bit_count;
    bit_count += width;
    while (bit_count >= 8) {
      out.push_back(static_cast<uint8_t>(bit_buffer & 0xff));
      bit_buffer >>= 8;
      bit_count -= 8;
    }
  };
  std::unordered_map<uint32_t, uint32_t> dict;  // (prefix code << 8 | index) -> code
  uint32_t next = eoi + 1;
  auto reset = [&] {
    dict.clear();
    next = eoi + 1;
    width = min_code_size + 1;
  };
  emit(clear);
  if (!indices.empty()) {
    uint32_t prefix = indices[0];
    SDPO_CHECK(prefix < clear, "LzwEncode: index ", prefix, " >= 2^", min_code_size);
    for (size_t i = 1; i < indices.size(); ++i) {
      const uint32_t k = indices[i];
      SDPO_CHECK(k < clear, "LzwEncode: index ", k, " >= 2^", min_code_size);
      const uint32_t key = (prefix << 8) | k;
      auto it = dict.find(key);
      if (it != dict.end()) {
        prefix = it->second;
        continue;
      }
      emit(prefix);
      if (next < 4096) {
        dict.emplace(key, next++);
        // The decoder adds its copy of this entry one code later, so it widens its codes when
        // `next` passes 2^width (not when it reaches it).
        if (next > (1u << width) && width < 12) ++width;
      } else {
        emit(clear);
        reset();
      }
      prefix = k;
    }
    emit(prefix);
  }
  emit(eoi);
  if (bit_count > 0) out.push_back(static_cast<uint8_t>(bit_buffer & 0xff));
  return out;
}

std::string EncodeGif(const std::vector<RgbImage>& frames, int delay_cs) {
  SDPO_CHECK(!frames.empty(), "EncodeGif: no frames");
  const int w = frames[0].width, h = frames[0].height;
  SDPO_CHECK(w > 0 && h > 0 && w <= 65535 && h <= 65535, "EncodeGif: bad size ", w, "x", h);
  SDPO_CHECK(delay_cs >= 0 && delay_cs <= 65535, "EncodeGif: delay_cs out of range: ", delay_cs);
  std::string gif = "GIF89a";
  PutU16LE(gif, w);
  PutU16LE(gif, h);
  gif += std::string("\xF7\x00\x00", 3);  // global colour table of 256 entries, bg 0, aspect 0
  const std::vector<uint8_t>& palette = GifPalette();
  gif.append(reinterpret_cast<const char*>(palette.data()), palette.size());
  // NETSCAPE2.0 application extension: loop forever.
  gif += std::string("\x21\xFF\x0BNETSCAPE2.0\x03\x01\x00\x00\x00", 19);
  for (size_t i = 0; i < frames.size(); ++i) {
    const RgbImage& f = frames[i];
    SDPO_CHECK(f.width == w && f.height == h && f.pixels.size() == static_cast<size_t>(w) * h * 3,
               "EncodeGif: frame ", i, " is ", f.width, "x", f.height, ", expected ", w, "x", h);
    // Graphic control extension: disposal 1 (leave in place), delay, no transparency.
    gif += std::string("\x21\xF9\x04\x04", 4);
    PutU16LE(gif, static_cast<uint32_t>(delay_cs));
    gif += std::string("\x00\x00", 2);
    // Image descriptor: whole canvas, no local colour table, not interlaced.
    gif.push_back('\x2C');
    PutU16LE(gif, 0);
    PutU16LE(gif, 0);
    PutU16LE(gif, w);
    PutU16LE(gif, h);
    gif.push_back('\x00');
    std::vector<uint8_t> indices(static_cast<size_t>(w) * h);
    for (size_t p = 0; p < indices.size(); ++p) {
      indices[p] = GifPaletteIndex(f.pixels[3 * p], f.pixels[3 * p + 1], f.pixels[3 * p + 2]);
    }
    const std::vector<uint8_t> codes = LzwEncode(indices, 8);
    gif.push_back('\x08');  // LZW minimum code size
    for (size_t pos = 0; pos < codes.size(); pos += 255) {
      const size_t n = std::min<size_t>(255, codes.size() - pos);
      gif.push_back(static_cast<char>(n));
      gif.append(reinterpret_cast<const char*>(codes.data() + pos), n);
    }
    gif.push_back('\x00');  // block terminator
  }
  gif.push_back('\x3B');  // trailer
  return gif;
}

void WritePng(const std::string& path, const RgbImage& image) {
  WriteFileAtomically(path, EncodePng(image));
}

void WriteGif(const std::string& path, const std::vector<RgbImage>& frames, int delay_cs) {
  WriteFileAtomically(path, EncodeGif(frames, delay_cs));
}

}  // namespace sdpo::image
