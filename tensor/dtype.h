// Element types and their conversions. bf16 and f16 are stored as raw 16-bit patterns; the
// conversions from float round to nearest even and keep NaN a (quiet) NaN.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace sdpo {

enum class DType : uint8_t { kF32, kF64, kBF16, kF16, kI32, kI64, kBool };

constexpr DType kF32 = DType::kF32;
constexpr DType kF64 = DType::kF64;
constexpr DType kBF16 = DType::kBF16;
constexpr DType kF16 = DType::kF16;
constexpr DType kI32 = DType::kI32;
constexpr DType kI64 = DType::kI64;
constexpr DType kBool = DType::kBool;

size_t ElementSize(DType dtype);
const char* DTypeName(DType dtype);  // "f32", "bf16", ...
bool IsFloating(DType dtype);        // f32, f64, bf16, f16
bool IsReducedFloat(DType dtype);    // bf16, f16: computed in f32 on the CPU

// Raw 16-bit storage types (distinct so that templates can dispatch on them).
struct BF16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};

inline float BF16BitsToFloat(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t FloatToBF16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN
  uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>((u + rounding_bias) >> 16);
}

float F16BitsToFloat(uint16_t bits);
uint16_t FloatToF16Bits(float f);

}  // namespace sdpo
