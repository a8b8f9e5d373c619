#include "trainers/demo/images.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tensor/error.h"
#include "tensor/ops.h"
#include "trainers/demo/world.h"

namespace sdpo::demo {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

uint32_t U32BE(const std::string& s, size_t p) {
  return (uint32_t{static_cast<uint8_t>(s[p])} << 24) |
         (uint32_t{static_cast<uint8_t>(s[p + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(s[p + 2])} << 8) | uint32_t{static_cast<uint8_t>(s[p + 3])};
}
uint32_t U16LE(const std::string& s, size_t p) {
  return uint32_t{static_cast<uint8_t>(s[p])} | (uint32_t{static_cast<uint8_t>(s[p + 1])} << 8);
}

// Independent bitwise CRC-32 (no table) to check the encoder's.
uint32_t SlowCrc(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char ch : s) {
    c ^= ch;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

struct PngDecoded {
  uint32_t width = 0, height = 0;
  std::string raw;  // filtered scanlines
};

// Parses a PNG, checking the signature, chunk order and CRCs, and inflates an IDAT made of
// stored deflate blocks (what the encoder writes), checking the zlib header and Adler-32.
PngDecoded DecodePng(const std::string& png) {
  PngDecoded out;
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  size_t p = 8;
  std::vector<std::string> types;
  std::string idat;
  while (p + 12 <= png.size()) {
    const uint32_t len = U32BE(png, p);
    const std::string type = png.substr(p + 4, 4);
    const std::string data = png.substr(p + 8, len);
    EXPECT_EQ(U32BE(png, p + 8 + len), SlowCrc(type + data)) << "chunk " << type;
    types.push_back(type);
    if (type == "IHDR") {
      EXPECT_EQ(len, 13u);
      out.width = U32BE(data, 0);
      out.height = U32BE(data, 4);
      EXPECT_EQ(data.substr(8), std::string("\x08\x02\x00\x00\x00", 5));
    } else if (type == "IDAT") {
      idat += data;
    }
    p += 12 + len;
  }
  EXPECT_EQ(p, png.size());
  EXPECT_EQ(types.front(), "IHDR");
  EXPECT_EQ(types.back(), "IEND");
  // zlib
  EXPECT_GE(idat.size(), 6u);
  EXPECT_EQ(((static_cast<uint8_t>(idat[0]) << 8) | static_cast<uint8_t>(idat[1])) % 31, 0);
  EXPECT_EQ(static_cast<uint8_t>(idat[0]) & 0x0f, 8);  // deflate
  size_t q = 2;
  bool final_block = false;
  while (!final_block && q < idat.size()) {
    const uint8_t header = static_cast<uint8_t>(idat[q]);
    final_block = header & 1;
    EXPECT_EQ((header >> 1) & 3, 0) << "not a stored block";
    const uint32_t len = U16LE(idat, q + 1), nlen = U16LE(idat, q + 3);
    EXPECT_EQ(len ^ 0xffffu, nlen);
    out.raw += idat.substr(q + 5, len);
    q += 5 + len;
  }
  EXPECT_TRUE(final_block);
  EXPECT_EQ(q + 4, idat.size());
  EXPECT_EQ(U32BE(idat, q),
            Adler32(reinterpret_cast<const uint8_t*>(out.raw.data()), out.raw.size()));
  return out;
}

// A straightforward GIF LZW decoder (separate from the encoder).
std::vector<uint8_t> LzwDecode(const std::vector<uint8_t>& data, int min_code_size) {
  const uint32_t clear = 1u << min_code_size, eoi = clear + 1;
  std::vector<std::vector<uint8_t>> table;
  auto reset = [&] {
    table.clear();
    for (uint32_t i = 0; i < clear + 2; ++i) table.push_back({static_cast<uint8_t>(i)});
  };
  reset();
  int width = min_code_size + 1;
  size_t bitpos = 0;
  std::vector<uint8_t> out;
  int prev = -1;
  while (true) {
    if (bitpos + width > data.size() * 8) {
      ADD_FAILURE() << "LZW stream ends without an end-of-information code";
      break;
    }
    uint32_t code = 0;
    for (int b = 0; b < width; ++b, ++bitpos) {
      code |= ((data[bitpos / 8] >> (bitpos % 8)) & 1u) << b;
    }
    if (code == clear) {
      reset();
      width = min_code_size + 1;
      prev = -1;
      continue;
    }
    if (code == eoi) break;
    std::vector<uint8_t> entry;
    if (code < table.size()) {
      entry = table[code];
    } else if (code == table.size() && prev >= 0) {
      entry = table[prev];
      entry.push_back(table[prev][0]);
    } else {
      ADD_FAILURE() << "bad LZW code " << code << " with table size " << table.size();
      break;
    }
    out.insert(out.end(), entry.begin(), entry.end());
    if (prev >= 0 && table.size() < 4096) {
      std::vector<uint8_t> added = table[prev];
      added.push_back(entry[0]);
      table.push_back(added);
      if (table.size() == (1u << width) && width < 12) ++width;
    }
    prev = static_cast<int>(code);
  }
  return out;
}

struct GifDecoded {
  int width = 0, height = 0;
  std::vector<std::vector<uint8_t>> frames;  // palette indices
  std::vector<int> delays;
  bool loops = false;
};

GifDecoded DecodeGif(const std::string& gif) {
  GifDecoded out;
  EXPECT_EQ(gif.substr(0, 6), "GIF89a");
  out.width = static_cast<int>(U16LE(gif, 6));
  out.height = static_cast<int>(U16LE(gif, 8));
  const uint8_t packed = static_cast<uint8_t>(gif[10]);
  EXPECT_TRUE(packed & 0x80) << "no global colour table";
  size_t p = 13 + 3 * (size_t{2} << (packed & 7));
  int delay = -1;
  while (p < gif.size()) {
    const uint8_t tag = static_cast<uint8_t>(gif[p]);
    if (tag == 0x3B) {
      ++p;
      break;
    }
    if (tag == 0x21) {
      const uint8_t label = static_cast<uint8_t>(gif[p + 1]);
      if (label == 0xF9) delay = static_cast<int>(U16LE(gif, p + 4));
      if (label == 0xFF && gif.substr(p + 3, 11) == "NETSCAPE2.0") out.loops = true;
      p += 2;
      while (gif[p] != 0) p += 1 + static_cast<uint8_t>(gif[p]);
      ++p;
      continue;
    }
    EXPECT_EQ(tag, 0x2C) << "unexpected block at " << p;
    if (tag != 0x2C) break;
    EXPECT_EQ(U16LE(gif, p + 5), static_cast<uint32_t>(out.width));
    EXPECT_EQ(U16LE(gif, p + 7), static_cast<uint32_t>(out.height));
    const int min_code_size = static_cast<uint8_t>(gif[p + 10]);
    p += 11;
    std::vector<uint8_t> codes;
    while (gif[p] != 0) {
      const size_t n = static_cast<uint8_t>(gif[p]);
      codes.insert(codes.end(), gif.begin() + p + 1, gif.begin() + p + 1 + n);
      p += 1 + n;
    }
    ++p;
    out.frames.push_back(LzwDecode(codes, min_code_size));
    out.delays.push_back(delay);
  }
  EXPECT_EQ(p, gif.size()) << "bytes after the trailer";
  return out;
}

TEST(ImagesTest, Checksums) {
  const std::string s = "123456789";
  const auto* d = reinterpret_cast<const uint8_t*>(s.data());
  EXPECT_EQ(Crc32(d, s.size()), 0xCBF43926u);  // the standard check value
  EXPECT_EQ(Adler32(d, s.size()), 0x091E01DEu);
  EXPECT_EQ(Crc32(d + 4, 5, Crc32(d, 4)), 0xCBF43926u);  // incremental
}

TEST(ImagesTest, LzwRoundTrip) {
  // Awkward inputs: empty, constant (KwKwK codes), random (table resets past 4096 codes).
  std::vector<std::vector<uint8_t>> inputs = {{}, {7}, std::vector<uint8_t>(5000, 3)};
  std::vector<uint8_t> random(40000);
  uint32_t state = 12345;
  for (uint8_t& v : random) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<uint8_t>(state >> 24);
  }
  inputs.push_back(random);
  std::vector<uint8_t> few(20000);
  for (size_t i = 0; i < few.size(); ++i) few[i] = static_cast<uint8_t>((i * i / 7) % 5);
  inputs.push_back(few);
  for (const auto& in : inputs) {
    EXPECT_EQ(LzwDecode(LzwEncode(in, 8), 8), in) << "size " << in.size();
  }
  std::vector<uint8_t> small(3000);
  for (size_t i = 0; i < small.size(); ++i) small[i] = static_cast<uint8_t>((i * 31 / 17) % 4);
  EXPECT_EQ(LzwDecode(LzwEncode(small, 2), 2), small);
  EXPECT_THROW(LzwEncode({4}, 2), Error);
}

TEST(ImagesTest, FramesAndColours) {
  const DemoWorld world;
  const DemoPrompt& red = world.Find("a red blob moving right slow");
  const Tensor x = world.Render(red, 1);
  const RgbImage frame = LatentFrame(x, 0);
  EXPECT_EQ(frame.width, 64);
  EXPECT_EQ(frame.height, 64);
  // The brightest pixel of a red blob is red.
  int best = 0;
  for (int i = 1; i < 64 * 64; ++i) {
    if (frame.pixels[3 * i] > frame.pixels[3 * best]) best = i;
  }
  EXPECT_GT(frame.pixels[3 * best], 200);
  EXPECT_LT(frame.pixels[3 * best + 1], 100);
  EXPECT_LT(frame.pixels[3 * best + 2], 100);
  ImageOptions o;
  o.scale = 3;
  o.gap = 1;
  const RgbImage strip = FrameStrip({x, x}, o);
  EXPECT_EQ(strip.width, 4 * 24 + 5);
  EXPECT_EQ(strip.height, 2 * 24 + 3);
  o.columns = 2;
  const RgbImage grid = SampleGrid({x, x, x}, 1, o);
  EXPECT_EQ(grid.width, 2 * 24 + 3);
  EXPECT_EQ(grid.height, 2 * 24 + 3);
  EXPECT_THROW(LatentFrame(x, 4), Error);
  EXPECT_THROW(FrameStrip({x, Tensor::Zeros({4, 4, 8, 9})}), Error);
}

TEST(ImagesTest, PngIsWellFormed) {
  const DemoWorld world;
  const Tensor x = world.Render(world.prompts()[3], 2);
  const std::string path = TempPath("strip.png");
  ImageOptions o;
  o.scale = 8;
  o.gap = 2;
  WritePng(path, std::vector<Tensor>{x, world.Render(world.prompts()[4], 2)}, o);
  const std::string png = ReadFile(path);
  const PngDecoded d = DecodePng(png);
  const RgbImage expected = FrameStrip({x, world.Render(world.prompts()[4], 2)}, o);
  EXPECT_EQ(d.width, static_cast<uint32_t>(expected.width));
  EXPECT_EQ(d.height, static_cast<uint32_t>(expected.height));
  ASSERT_EQ(d.raw.size(), (static_cast<size_t>(expected.width) * 3 + 1) * expected.height);
  for (int y = 0; y < expected.height; ++y) {
    const size_t row = static_cast<size_t>(expected.width) * 3;
    ASSERT_EQ(d.raw[y * (row + 1)], '\0');
    ASSERT_EQ(d.raw.compare(y * (row + 1) + 1, row,
                            reinterpret_cast<const char*>(&expected.pixels[y * row]), row),
              0)
        << "row " << y;
  }
  // Multi-block stream (> 65535 bytes of scanlines).
  RgbImage big(200, 150, 9);
  EXPECT_EQ(DecodePng(EncodePng(big)).raw.size(), 150u * 601u);
  std::remove(path.c_str());
}

TEST(ImagesTest, GifIsWellFormed) {
  const DemoWorld world;
  const Tensor x = world.Render(world.prompts()[6], 3);
  const std::string path = TempPath("video.gif");
  ImageOptions o;
  o.delay_cs = 40;
  WriteGif(path, x, o);
  const GifDecoded d = DecodeGif(ReadFile(path));
  EXPECT_EQ(d.width, 64 + 2 * o.gap);
  EXPECT_EQ(d.height, 64 + 2 * o.gap);
  EXPECT_TRUE(d.loops);
  ASSERT_EQ(d.frames.size(), 4u);
  for (size_t f = 0; f < 4; ++f) {
    EXPECT_EQ(d.delays[f], 40);
    const RgbImage expected = SampleGrid({x}, static_cast<int64_t>(f), o);
    ASSERT_EQ(d.frames[f].size(), static_cast<size_t>(d.width) * d.height);
    const std::vector<uint8_t>& palette = GifPalette();
    int max_err = 0;
    for (size_t i = 0; i < d.frames[f].size(); ++i) {
      for (int k = 0; k < 3; ++k) {
        max_err = std::max(max_err, std::abs(palette[3 * d.frames[f][i] + k] -
                                             static_cast<int>(expected.pixels[3 * i + k])));
      }
    }
    EXPECT_LE(max_err, 26) << "frame " << f;  // half a step of the 6-level colour cube
  }
  // Several samples side by side.
  o.columns = 0;
  WriteGif(path, std::vector<Tensor>{x, x, x}, o);
  const GifDecoded three = DecodeGif(ReadFile(path));
  EXPECT_EQ(three.width, 3 * 64 + 4 * o.gap);
  EXPECT_EQ(three.frames.size(), 4u);
  std::remove(path.c_str());
  EXPECT_THROW(WriteGif(TempPath("no/such/dir/x.gif"), x), Error);
}

}  // namespace
}  // namespace sdpo::demo
