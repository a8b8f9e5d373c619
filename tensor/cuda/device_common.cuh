// Shared by the .cu files: element types, conversions that match the CPU oracle bit for bit
// (tensor/dtype.h), the launch macro (real or emulated), block reductions and dtype dispatch.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#ifdef SDPO_CUDA_EMULATE
#include "tensor/cuda/emu/emu_device.h"
#define SDPO_LAUNCH(kernel, grid, block, smem, stream, ...)                                   \
  ::sdpo::emu::Launch(reinterpret_cast<const void*>(kernel), dim3(grid), dim3(block), (smem), \
                      [&] { kernel(__VA_ARGS__); })
#else
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#define SDPO_LAUNCH(kernel, grid, block, smem, stream, ...) \
  kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#endif

#include "tensor/cuda/launchers.h"

#define SDPO_HD __host__ __device__ __forceinline__
#define SDPO_D __device__ __forceinline__

namespace sdpo::cuda {

// 16-bit storage types (raw bits; distinct types for dispatch).
struct Bf16 {
  uint16_t bits;
};
struct Half {
  uint16_t bits;
};

SDPO_HD float BitsToFloat(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}
SDPO_HD uint32_t FloatToBits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

SDPO_HD float Bf16ToFloat(uint16_t b) { return BitsToFloat(static_cast<uint32_t>(b) << 16); }
// Round to nearest even, NaN kept a quiet NaN: the same bits as tensor/dtype.h.
SDPO_HD uint16_t FloatToBf16(float f) {
  uint32_t u = FloatToBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding_bias) >> 16);
}

SDPO_HD float HalfToFloat(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
  if (e == 0x1f) {
    u = sign | 0x7f800000u | (m << 13) | (m ? 0x00400000u : 0u);
  } else if (e == 0) {
    if (m == 0) {
      u = sign;
    } else {
      int k = -1;
      do {
        ++k;
        m <<= 1;
      } while ((m & 0x400u) == 0);
      u = sign | static_cast<uint32_t>(127 - 15 - k) << 23 | ((m & 0x3ffu) << 13);
    }
  } else {
    u = sign | ((e + 127 - 15) << 23) | (m << 13);
  }
  return BitsToFloat(u);
#endif
}
SDPO_HD uint16_t FloatToHalf(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  uint32_t u = FloatToBits(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u | static_cast<uint16_t>((abs >> 13) & 0x3ffu);
  if (abs >= 0x477ff000u) return sign | 0x7c00u;
  int32_t exponent = static_cast<int32_t>(abs >> 23) - 127;
  if (exponent >= -14) {
    uint32_t mant = abs & 0x7fffffu;
    uint32_t half = (static_cast<uint32_t>(exponent + 15) << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
    return sign | static_cast<uint16_t>(half);
  }
  if (exponent < -25) return sign;
  uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  int shift = -exponent - 14 + 13;
  uint32_t half = mant >> shift;
  uint32_t rest = mant & ((1u << shift) - 1u);
  uint32_t halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
  return sign | static_cast<uint16_t>(half);
#endif
}

// The arithmetic type of a storage type: float for the 16-bit floats (as on the CPU).
template <typename T> struct Compute { using type = T; };
template <> struct Compute<Bf16> { using type = float; };
template <> struct Compute<Half> { using type = float; };

// ConvertTo<To>(from): the CPU oracle's tensor/cpu/scalar.h ConvertTo, on the device.
template <typename To, typename From>
SDPO_HD To ConvertTo(From v) {
  if constexpr (std::is_same_v<From, Bf16>) {
    return ConvertTo<To>(Bf16ToFloat(v.bits));
  } else if constexpr (std::is_same_v<From, Half>) {
    return ConvertTo<To>(HalfToFloat(v.bits));
  } else if constexpr (std::is_same_v<To, Bf16>) {
    return Bf16{FloatToBf16(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<To, Half>) {
    return Half{FloatToHalf(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return static_cast<To>(v);
  }
}

template <typename T>
SDPO_HD float ToF(T v) {
  return ConvertTo<float>(v);
}
template <typename T>
SDPO_HD T FromF(float v) {
  return ConvertTo<T>(v);
}

// Calls fn(T{}) for the storage type of a dtype code.
template <typename Fn>
void DispatchAll(int dtype, Fn&& fn) {
  switch (dtype) {
    case kCodeF32: return fn(float{});
    case kCodeF64: return fn(double{});
    case kCodeBF16: return fn(Bf16{});
    case kCodeF16: return fn(Half{});
    case kCodeI32: return fn(int32_t{});
    case kCodeI64: return fn(int64_t{});
    case kCodeBool: return fn(bool{});
  }
  ThrowCudaError("dtype dispatch", "unknown dtype code", __FILE__, __LINE__);
}
template <typename Fn>
void DispatchFloat(int dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case kCodeF32: return fn(float{});
    case kCodeF64: return fn(double{});
    case kCodeBF16: return fn(Bf16{});
    case kCodeF16: return fn(Half{});
    default: break;
  }
  ThrowCudaError(op, "unsupported dtype (floating-point only)", __FILE__, __LINE__);
}

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline unsigned GridFor(int64_t work_items, int threads, int64_t cap = 65535 * 4) {
  int64_t g = CeilDiv(work_items, threads);
  if (g < 1) g = 1;
  if (g > cap) g = cap;
  return static_cast<unsigned>(g);
}

// Sum over a block (blockDim.x a multiple of 32, at most 1024). `scratch` holds 32 values.
// Every thread gets the total. Contains __syncthreads: call from all threads.
template <typename T>
SDPO_D T WarpSum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename T>
SDPO_D T WarpMax(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    T u = __shfl_xor_sync(0xffffffffu, v, o);
    v = u > v ? u : v;
  }
  return v;
}
template <typename T>
SDPO_D T BlockSum(T v, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = lane < warps ? scratch[lane] : T(0);
  total = WarpSum(total);
  return total;
}
template <typename T>
SDPO_D T BlockMax(T v, T* scratch, T lowest) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = lane < warps ? scratch[lane] : lowest;
  return WarpMax(total);
}

}  // namespace sdpo::cuda
