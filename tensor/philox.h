// Philox4x32-10 counter-based generator (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC'11). Header-only and usable from CUDA so that CPU and GPU produce the same
// numbers for the same (seed, offset).
//
// Element idx = offset + i of a tensor:
//   uniform: counter idx / 4, output lane idx % 4, u = (bits >> 8) * 2^-24 in [0, 1);
//   normal:  counter idx / 2, Box-Muller on lanes 0 and 1 (in double): even idx -> r cos,
//            odd idx -> r sin, with u1 = (lane0 + 1) * 2^-32 in (0, 1], u2 = lane1 * 2^-32.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define SDPO_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SDPO_HOST_DEVICE inline
#endif

namespace sdpo {

struct Philox4 {
  uint32_t v[4];
};

SDPO_HOST_DEVICE uint32_t PhiloxMulHi(uint32_t a, uint32_t b, uint32_t* lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  *lo = static_cast<uint32_t>(p);
  return static_cast<uint32_t>(p >> 32);
}

SDPO_HOST_DEVICE Philox4 Philox4x32(uint64_t counter, uint64_t seed) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t lo0, lo1;
    uint32_t hi0 = PhiloxMulHi(0xD2511F53u, c0, &lo0);
    uint32_t hi1 = PhiloxMulHi(0xCD9E8D57u, c2, &lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

SDPO_HOST_DEVICE double PhiloxUniform(uint64_t idx, uint64_t seed) {
  Philox4 r = Philox4x32(idx / 4, seed);
  return static_cast<double>(r.v[idx % 4] >> 8) * (1.0 / 16777216.0);
}

SDPO_HOST_DEVICE double PhiloxNormal(uint64_t idx, uint64_t seed) {
  Philox4 r = Philox4x32(idx / 2, seed);
  double u1 = (static_cast<double>(r.v[0]) + 1.0) * (1.0 / 4294967296.0);
  double u2 = static_cast<double>(r.v[1]) * (1.0 / 4294967296.0);
  double radius = ::sqrt(-2.0 * ::log(u1));
  double angle = 6.283185307179586476925 * u2;
  return (idx % 2 == 0) ? radius * ::cos(angle) : radius * ::sin(angle);
}

}  // namespace sdpo
