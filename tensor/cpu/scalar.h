// Element load/store and conversion helpers for CPU kernels (internal to tensor/).
#pragma once

#include <cstdint>
#include <type_traits>

#include "tensor/dtype.h"
#include "tensor/error.h"

namespace sdpo::cpu {

// The arithmetic type a storage type is computed in: bf16/f16 compute in float.
template <typename T> struct ComputeType { using type = T; };
template <> struct ComputeType<BF16> { using type = float; };
template <> struct ComputeType<F16> { using type = float; };
template <> struct ComputeType<bool> { using type = bool; };

template <typename To, typename From>
inline To ConvertTo(From v) {
  if constexpr (std::is_same_v<From, BF16>) {
    return ConvertTo<To>(BF16BitsToFloat(v.bits));
  } else if constexpr (std::is_same_v<From, F16>) {
    return ConvertTo<To>(F16BitsToFloat(v.bits));
  } else if constexpr (std::is_same_v<To, BF16>) {
    return BF16{FloatToBF16Bits(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<To, F16>) {
    return F16{FloatToF16Bits(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return static_cast<To>(v);
  }
}

// Calls fn(T{}) with T the storage type of `dtype`.
template <typename Fn>
decltype(auto) DispatchAll(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kF32: return fn(float{});
    case DType::kF64: return fn(double{});
    case DType::kBF16: return fn(BF16{});
    case DType::kF16: return fn(F16{});
    case DType::kI32: return fn(int32_t{});
    case DType::kI64: return fn(int64_t{});
    case DType::kBool: return fn(bool{});
  }
  SDPO_FAIL("unknown dtype");
}

inline double LoadAsDouble(const void* p, DType dtype) {
  return DispatchAll(dtype, [&](auto t) {
    using T = decltype(t);
    return ConvertTo<double>(*static_cast<const T*>(p));
  });
}

inline void StoreFromDouble(void* p, DType dtype, double v) {
  DispatchAll(dtype, [&](auto t) {
    using T = decltype(t);
    *static_cast<T*>(p) = ConvertTo<T>(v);
  });
}

}  // namespace sdpo::cpu
