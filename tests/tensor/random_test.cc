// Counter-based random numbers: Philox4x32-10 known answers, reproducibility by (seed, offset),
// counter arithmetic (element i depends on offset + i only), independent streams, thread-count
// independence, and the moments of 10^6 normals / uniforms within statistical bounds.
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tensor/ops.h"
#include "tensor/philox.h"
#include "tensor/tensor.h"
#include "tests/tensor/test_util.h"

namespace sdpo {
namespace {

using sdpo::testing::BitEqual;
using sdpo::testing::ScopedNumThreads;
using ::testing::ElementsAre;

// An independent Philox4x32-10 with a full 128-bit counter (Random123's reference algorithm),
// checked against Random123's known-answer vectors and then used as the oracle for
// sdpo::Philox4x32 (whose counter's upper 64 bits are zero).
std::array<uint32_t, 4> ReferencePhilox(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += 0x9E3779B9u;
      key[1] += 0xBB67AE85u;
    }
    uint64_t p0 = uint64_t{0xD2511F53u} * ctr[0];
    uint64_t p1 = uint64_t{0xCD9E8D57u} * ctr[2];
    ctr = {static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<uint32_t>(p1),
           static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<uint32_t>(p0)};
  }
  return ctr;
}

TEST(Philox, KnownAnswers) {
  Philox4 r = Philox4x32(0, 0);
  EXPECT_THAT(r.v, ElementsAre(0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u));
  // Random123 kat_vectors for philox4x32_10.
  EXPECT_THAT(ReferencePhilox({0, 0, 0, 0}, {0, 0}),
              ElementsAre(0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u));
  EXPECT_THAT(ReferencePhilox({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                              {0xffffffffu, 0xffffffffu}),
              ElementsAre(0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu));
  EXPECT_THAT(ReferencePhilox({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                              {0xa4093822u, 0x299f31d0u}),
              ElementsAre(0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u));
}

TEST(Philox, MatchesTheReferenceForCountersAndKeysOfEveryWidth) {
  const uint64_t values[] = {
      0, 1, 2, 0xffffffffull, 0x100000000ull, 0x123456789abcdefull, ~0ull, 0x9E3779B97F4A7C15ull};
  for (uint64_t counter : values)
    for (uint64_t seed : values) {
      Philox4 r = Philox4x32(counter, seed);
      std::array<uint32_t, 4> ref = ReferencePhilox(
          {static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0, 0},
          {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
      EXPECT_THAT(r.v, ElementsAre(ref[0], ref[1], ref[2], ref[3]))
          << std::hex << counter << " " << seed;
    }
}

TEST(Random, ElementsAreTheDocumentedFunctionOfSeedAndOffset) {
  const uint64_t seed = 0xfeedbeefcafe1234ull;
  for (uint64_t offset : {uint64_t{0}, uint64_t{1}, uint64_t{5}, (uint64_t{1} << 33) + 3}) {
    std::vector<double> n64 = ops::RandomNormal({1001}, seed, offset, kF64).ToVector();
    std::vector<double> n32 = ops::RandomNormal({1001}, seed, offset, kF32).ToVector();
    std::vector<double> u64 = ops::RandomUniform({1001}, seed, offset, kF64).ToVector();
    for (uint64_t i = 0; i < n64.size(); ++i) {
      ASSERT_EQ(n64[i], PhiloxNormal(offset + i, seed)) << i;
      ASSERT_EQ(n32[i], static_cast<double>(static_cast<float>(PhiloxNormal(offset + i, seed))));
      ASSERT_EQ(u64[i], PhiloxUniform(offset + i, seed)) << i;
    }
  }
  // The uniform's documented construction: lane idx % 4 of counter idx / 4, top 24 bits.
  Philox4 r = Philox4x32(2, 9);
  EXPECT_EQ(PhiloxUniform(10, 9), (r.v[2] >> 8) / 16777216.0);
  // The normal's: Box-Muller on lanes 0, 1 of counter idx / 2.
  Philox4 q = Philox4x32(3, 9);
  double u1 = (q.v[0] + 1.0) / 4294967296.0, u2 = q.v[1] / 4294967296.0;
  EXPECT_DOUBLE_EQ(PhiloxNormal(6, 9), std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2));
  EXPECT_DOUBLE_EQ(PhiloxNormal(7, 9), std::sqrt(-2 * std::log(u1)) * std::sin(2 * M_PI * u2));
}

TEST(Random, ReproducibleBySeedAndOffset) {
  for (DType dtype : {kF32, kF64, kBF16, kF16}) {
    Tensor a = ops::RandomNormal({3, 1000}, 42, 7, dtype);
    Tensor b = ops::RandomNormal({3, 1000}, 42, 7, dtype);
    EXPECT_TRUE(BitEqual(a, b)) << DTypeName(dtype);
    EXPECT_EQ(a.dtype(), dtype);
    EXPECT_EQ(a.shape(), Shape({3, 1000}));
    EXPECT_TRUE(
        BitEqual(ops::RandomUniform({77}, 3, 0, dtype), ops::RandomUniform({77}, 3, 0, dtype)));
  }
  EXPECT_FALSE(BitEqual(ops::RandomNormal({100}, 42, 0), ops::RandomNormal({100}, 43, 0)));
  EXPECT_FALSE(BitEqual(ops::RandomNormal({100}, 42, 0), ops::RandomNormal({100}, 42, 1)));
  // Seeds that differ only in their upper 32 bits give different streams.
  EXPECT_FALSE(
      BitEqual(ops::RandomNormal({100}, 1, 0), ops::RandomNormal({100}, 1 + (1ull << 32), 0)));
  // The shape does not matter, only the element count.
  EXPECT_TRUE(
      BitEqual(ops::RandomNormal({6, 7}, 5, 3), ops::View(ops::RandomNormal({42}, 5, 3), {6, 7})));
  // Empty and 0-d tensors.
  EXPECT_EQ(ops::RandomNormal({0, 3}, 1, 0).numel(), 0);
  EXPECT_EQ(ops::RandomNormal({}, 1, 4, kF64).item(), PhiloxNormal(4, 1));
}

TEST(Random, CounterBased) {
  // RandomNormal(shape, seed, offset)[i] == RandomNormal(bigger, seed, offset - k)[i + k].
  const uint64_t seed = 77, offset = 10000;
  for (DType dtype : {kF32, kF64, kBF16}) {
    Tensor small = ops::RandomNormal({5000}, seed, offset, dtype);
    Tensor small_u = ops::RandomUniform({5000}, seed, offset, dtype);
    for (int64_t k : {1, 2, 3, 4, 5, 4097, 10000}) {
      Tensor big = ops::RandomNormal({5000 + k}, seed, offset - k, dtype);
      EXPECT_TRUE(BitEqual(small, ops::Narrow(big, 0, k, 5000))) << k << " " << DTypeName(dtype);
      Tensor big_u = ops::RandomUniform({5000 + k}, seed, offset - k, dtype);
      EXPECT_TRUE(BitEqual(small_u, ops::Narrow(big_u, 0, k, 5000))) << k;
    }
  }
  // Consecutive draws at offsets 0, n, 2n tile one long draw.
  Tensor whole = ops::RandomNormal({3 * 333}, 9, 0);
  for (int64_t part = 0; part < 3; ++part) {
    EXPECT_TRUE(
        BitEqual(ops::RandomNormal({333}, 9, part * 333), ops::Narrow(whole, 0, part * 333, 333)));
  }
}

TEST(Random, ThreadCountIndependence) {
  auto run = [] {
    return std::vector<Tensor>{
        ops::RandomNormal({100003}, 11, 5, kF32),
        ops::RandomNormal({100003}, 11, 5, kBF16),
        ops::RandomUniform({100003}, 11, 5, kF32),
        ops::RandomNormal({3, 40001}, 12, 0, kF64),
        ops::Add(ops::RandomNormal({200, 501}, 1, 0), ops::RandomUniform({501}, 2, 0)),
        ops::Exp(ops::Transpose(ops::RandomNormal({301, 333}, 3, 0), 0, 1)),
    };
  };
  std::vector<Tensor> ref;
  {
    ScopedNumThreads threads(1);
    ref = run();
  }
  for (int n : {2, 3, 16}) {
    ScopedNumThreads threads(n);
    std::vector<Tensor> got = run();
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_TRUE(BitEqual(got[i], ref[i])) << n << " " << i;
  }
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / v.size();
}

double Correlation(const std::vector<double>& a, const std::vector<double>& b) {
  double ma = Mean(a), mb = Mean(b), sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

TEST(Random, MillionNormalsHaveTheRightMoments) {
  const int64_t n = 1000000;
  const double sn = std::sqrt(static_cast<double>(n));
  std::vector<double> x = ops::RandomNormal({n}, 2024, 0, kF32).ToVector();
  double mean = Mean(x), m2 = 0, m3 = 0, m4 = 0;
  int64_t within1 = 0, beyond3 = 0;
  for (double v : x) {
    ASSERT_TRUE(std::isfinite(v));
    double d = v - mean;
    m2 += d * d;
    m3 += d * d * d;
    m4 += d * d * d * d;
    within1 += std::abs(v) < 1;
    beyond3 += std::abs(v) > 3;
  }
  m2 /= n - 1;
  m3 /= n;
  m4 /= n;
  EXPECT_LT(std::abs(mean), 5 / sn);
  EXPECT_LT(std::abs(m2 - 1), 5 * std::sqrt(2.0) / sn);
  EXPECT_LT(std::abs(m3), 5 * std::sqrt(15.0) / sn);      // skewness 0; var of x^3 is 15
  EXPECT_LT(std::abs(m4 - 3), 5 * std::sqrt(96.0) / sn);  // kurtosis 3; var of x^4 is 96
  const double p1 = 0.6826894921370859, p3 = 0.0026997960632601866;
  EXPECT_LT(std::abs(within1 / double(n) - p1), 5 * std::sqrt(p1 * (1 - p1)) / sn);
  EXPECT_LT(std::abs(beyond3 / double(n) - p3), 5 * std::sqrt(p3 * (1 - p3)) / sn);
  // Neighbours (including the cos / sin halves of one Box-Muller pair) are uncorrelated, and
  // so are their squares.
  std::vector<double> even, odd, even2, odd2;
  for (int64_t i = 0; i + 1 < n; i += 2) {
    even.push_back(x[i]);
    odd.push_back(x[i + 1]);
    even2.push_back(x[i] * x[i]);
    odd2.push_back(x[i + 1] * x[i + 1]);
  }
  double sp = std::sqrt(static_cast<double>(even.size()));
  EXPECT_LT(std::abs(Correlation(even, odd)), 5 / sp);
  EXPECT_LT(std::abs(Correlation(even2, odd2)), 5 / sp);
  std::vector<double> lag_a(x.begin() + 1, x.end() - 1), lag_b(x.begin() + 2, x.end());
  EXPECT_LT(std::abs(Correlation(lag_a, lag_b)), 5 / sn);
}

TEST(Random, IndependentStreams) {
  const int64_t n = 200000;
  const double bound = 5 / std::sqrt(static_cast<double>(n));
  std::vector<double> a = ops::RandomNormal({n}, 1, 0, kF64).ToVector();
  std::vector<double> b = ops::RandomNormal({n}, 2, 0, kF64).ToVector();
  std::vector<double> c = ops::RandomNormal({n}, 1, n, kF64).ToVector();  // next block of seed 1
  std::vector<double> d = ops::RandomNormal({n}, 1 + (1ull << 32), 0, kF64).ToVector();
  EXPECT_LT(std::abs(Correlation(a, b)), bound);
  EXPECT_LT(std::abs(Correlation(a, c)), bound);
  EXPECT_LT(std::abs(Correlation(a, d)), bound);
  EXPECT_LT(std::abs(Correlation(b, c)), bound);
  int64_t equal = 0;
  for (int64_t i = 0; i < n; ++i) equal += a[i] == b[i] || a[i] == c[i] || a[i] == d[i];
  EXPECT_EQ(equal, 0);
  // Uniform and normal streams of the same (seed, offset) are different numbers too.
  std::vector<double> u = ops::RandomUniform({n}, 1, 0, kF64).ToVector();
  EXPECT_LT(std::abs(Correlation(a, u)), bound);
}

TEST(Random, UniformIsInZeroOneWithTheRightMoments) {
  const int64_t n = 1000000;
  const double sn = std::sqrt(static_cast<double>(n));
  for (DType dtype : {kF32, kF64, kBF16, kF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    std::vector<double> u = ops::RandomUniform({n}, 99, 123, dtype).ToVector();
    double lo = 1, hi = 0, mean = Mean(u), var = 0;
    std::vector<int64_t> hist(16, 0);
    for (double v : u) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      var += (v - mean) * (v - mean);
      if (v >= 0 && v < 1) ++hist[static_cast<int>(v * 16)];
    }
    var /= n - 1;
    EXPECT_GE(lo, 0.0);
    EXPECT_LT(hi, 1.0);
    // bf16 / f16 quantise to their grid (spacing at most `step` in [0, 1)).
    double step = dtype == kBF16 ? 1.0 / 256 : dtype == kF16 ? 1.0 / 2048 : 0;
    EXPECT_LT(std::abs(mean - 0.5), 5 * std::sqrt(1.0 / 12) / sn + step);
    EXPECT_LT(std::abs(var - 1.0 / 12), 5 * std::sqrt(1.0 / 180) / sn + step);
    double chi2 = 0, expect = n / 16.0;
    for (int64_t h : hist) chi2 += (h - expect) * (h - expect) / expect;
    EXPECT_LT(chi2, 50) << "15 degrees of freedom";
  }
}

}  // namespace
}  // namespace sdpo
