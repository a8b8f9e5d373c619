#include "tensor/dtype.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "gtest/gtest.h"

namespace sdpo {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(ElementSize(kF32), 4u);
  EXPECT_EQ(ElementSize(kF64), 8u);
  EXPECT_EQ(ElementSize(kBF16), 2u);
  EXPECT_EQ(ElementSize(kF16), 2u);
  EXPECT_EQ(ElementSize(kI32), 4u);
  EXPECT_EQ(ElementSize(kI64), 8u);
  EXPECT_EQ(ElementSize(kBool), 1u);
  EXPECT_STREQ(DTypeName(kBF16), "bf16");
}

TEST(BF16Test, RoundsToNearestEvenOnTies) {
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1 + 2^-7: ties to even -> 1.0.
  EXPECT_EQ(FloatToBF16Bits(FromBits(0x3f808000u)), 0x3f80u);
  // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6: ties to even -> up.
  EXPECT_EQ(FloatToBF16Bits(FromBits(0x3f818000u)), 0x3f82u);
  // Just above halfway rounds up, just below rounds down.
  EXPECT_EQ(FloatToBF16Bits(FromBits(0x3f808001u)), 0x3f81u);
  EXPECT_EQ(FloatToBF16Bits(FromBits(0x3f807fffu)), 0x3f80u);
}

TEST(BF16Test, SpecialValues) {
  EXPECT_EQ(FloatToBF16Bits(std::numeric_limits<float>::infinity()), 0x7f80u);
  EXPECT_EQ(FloatToBF16Bits(-std::numeric_limits<float>::infinity()), 0xff80u);
  EXPECT_EQ(FloatToBF16Bits(0.0f), 0x0000u);
  EXPECT_EQ(FloatToBF16Bits(-0.0f), 0x8000u);
  // NaN stays NaN, even one whose payload lives only in the low 16 bits.
  uint16_t nan_bits = FloatToBF16Bits(FromBits(0x7f800001u));
  EXPECT_TRUE(std::isnan(BF16BitsToFloat(nan_bits)));
  // The largest finite float rounds up to Inf (overflow by rounding).
  EXPECT_EQ(FloatToBF16Bits(FromBits(0x7f7fffffu)), 0x7f80u);
  // Subnormal floats are kept (bf16 has the float exponent range).
  EXPECT_EQ(FloatToBF16Bits(FromBits(0x00010000u)), 0x0001u);
  EXPECT_EQ(Bits(BF16BitsToFloat(0x0001u)), 0x00010000u);
}

TEST(BF16Test, RoundTripsEveryBf16Value) {
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    float f = BF16BitsToFloat(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToBF16Bits(f), b) << b;
  }
}

TEST(F16Test, RoundTripsEveryF16Value) {
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    float f = F16BitsToFloat(static_cast<uint16_t>(b));
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(F16BitsToFloat(FloatToF16Bits(f)))) << b;
      continue;
    }
    ASSERT_EQ(FloatToF16Bits(f), b) << b;
  }
}

TEST(F16Test, EdgeValues) {
  EXPECT_EQ(FloatToF16Bits(65504.0f), 0x7bffu);  // max finite
  EXPECT_EQ(FloatToF16Bits(65520.0f), 0x7c00u);  // halfway to next: ties to even -> Inf
  EXPECT_EQ(FloatToF16Bits(65519.0f), 0x7bffu);
  EXPECT_EQ(FloatToF16Bits(std::ldexp(1.0f, -24)), 0x0001u);  // smallest subnormal
  EXPECT_EQ(FloatToF16Bits(std::ldexp(1.0f, -25)), 0x0000u);  // halfway to zero: even -> 0
  EXPECT_EQ(FloatToF16Bits(std::ldexp(1.5f, -25)), 0x0001u);  // above halfway
  EXPECT_EQ(FloatToF16Bits(std::ldexp(3.0f, -25)), 0x0002u);  // 1.5 ulp: tie -> even (2)
  EXPECT_EQ(FloatToF16Bits(std::ldexp(1.0f, -14)), 0x0400u);  // smallest normal
  EXPECT_EQ(FloatToF16Bits(1.0f + std::ldexp(1.0f, -11)), 0x3c00u);  // tie -> even
  EXPECT_EQ(FloatToF16Bits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02u);
  EXPECT_EQ(FloatToF16Bits(-0.0f), 0x8000u);
  EXPECT_TRUE(std::isnan(F16BitsToFloat(FloatToF16Bits(NAN))));
  EXPECT_EQ(F16BitsToFloat(0x7c00u), std::numeric_limits<float>::infinity());
}

}  // namespace
}  // namespace sdpo
