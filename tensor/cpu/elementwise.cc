// Elementwise CPU kernels: fill, copy/cast, unary, binary, compare, where, clamp, random.
#include <Eigen/Core>
#include <cmath>

#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/scalar.h"
#include "tensor/cpu/strided.h"
#include "tensor/philox.h"

namespace sdpo::cpu {

using ops::BinaryOp;
using ops::CompareOp;
using ops::UnaryOp;

namespace {

template <typename T>
T* Ptr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}

// Dispatch over the floating and integer types that arithmetic kernels support.
template <typename Fn>
void DispatchArith(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::kF32: return fn(float{});
    case DType::kF64: return fn(double{});
    case DType::kBF16: return fn(BF16{});
    case DType::kF16: return fn(F16{});
    case DType::kI32: return fn(int32_t{});
    case DType::kI64: return fn(int64_t{});
    case DType::kBool: break;
  }
  SDPO_FAIL(op, ": unsupported dtype ", DTypeName(dtype));
}

// Applies out = f(in...) elementwise; T is the storage type, f works in ComputeType<T>.
template <typename T, typename F>
void MapUnary(const Tensor& out, const Tensor& x, F f) {
  using C = typename ComputeType<T>::type;
  T* o = Ptr<T>(out);
  const T* a = Ptr<T>(x);
  ForEachRow<2>(out.shape(), {&out.strides(), &x.strides()},
                [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& s) {
                  T* po = o + off[0];
                  const T* pa = a + off[1];
                  if (s[0] == 1 && s[1] == 1) {
                    for (int64_t i = 0; i < n; ++i) po[i] = ConvertTo<T>(f(ConvertTo<C>(pa[i])));
                  } else {
                    for (int64_t i = 0; i < n; ++i) {
                      po[i * s[0]] = ConvertTo<T>(f(ConvertTo<C>(pa[i * s[1]])));
                    }
                  }
                });
}

template <typename T, typename R, typename F>
void MapBinary(const Tensor& out, const Tensor& x, const Tensor& y, F f) {
  using C = typename ComputeType<T>::type;
  R* o = Ptr<R>(out);
  const T* a = Ptr<T>(x);
  const T* b = Ptr<T>(y);
  ForEachRow<3>(out.shape(), {&out.strides(), &x.strides(), &y.strides()},
                [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& s) {
                  R* po = o + off[0];
                  const T* pa = a + off[1];
                  const T* pb = b + off[2];
                  if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
                    for (int64_t i = 0; i < n; ++i) {
                      po[i] = ConvertTo<R>(f(ConvertTo<C>(pa[i]), ConvertTo<C>(pb[i])));
                    }
                  } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {
                    const C cb = ConvertTo<C>(pb[0]);
                    for (int64_t i = 0; i < n; ++i) po[i] = ConvertTo<R>(f(ConvertTo<C>(pa[i]), cb));
                  } else {
                    for (int64_t i = 0; i < n; ++i) {
                      po[i * s[0]] =
                          ConvertTo<R>(f(ConvertTo<C>(pa[i * s[1]]), ConvertTo<C>(pb[i * s[2]])));
                    }
                  }
                });
}

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

template <typename C>
C Sigmoid(C x) {
  return x >= C(0) ? C(1) / (C(1) + std::exp(-x)) : std::exp(x) / (C(1) + std::exp(x));
}

template <typename T>
void UnaryTyped(UnaryOp op, const Tensor& out, const Tensor& x) {
  using C = typename ComputeType<T>::type;
  switch (op) {
    case UnaryOp::kNeg: return MapUnary<T>(out, x, [](C v) { return C(-v); });
    case UnaryOp::kAbs: return MapUnary<T>(out, x, [](C v) { return v < C(0) ? C(-v) : v; });
    case UnaryOp::kSquare: return MapUnary<T>(out, x, [](C v) { return C(v * v); });
    case UnaryOp::kSign:
      return MapUnary<T>(out, x, [](C v) { return C((v > C(0)) - (v < C(0))); });
    default: break;
  }
  if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case UnaryOp::kExp: return MapUnary<T>(out, x, [](C v) { return std::exp(v); });
      case UnaryOp::kLog: return MapUnary<T>(out, x, [](C v) { return std::log(v); });
      case UnaryOp::kSqrt: return MapUnary<T>(out, x, [](C v) { return std::sqrt(v); });
      case UnaryOp::kRsqrt: return MapUnary<T>(out, x, [](C v) { return C(1) / std::sqrt(v); });
      case UnaryOp::kReciprocal: return MapUnary<T>(out, x, [](C v) { return C(1) / v; });
      case UnaryOp::kSin: return MapUnary<T>(out, x, [](C v) { return std::sin(v); });
      case UnaryOp::kCos: return MapUnary<T>(out, x, [](C v) { return std::cos(v); });
      case UnaryOp::kTanh: return MapUnary<T>(out, x, [](C v) { return std::tanh(v); });
      case UnaryOp::kSigmoid: return MapUnary<T>(out, x, [](C v) { return Sigmoid(v); });
      case UnaryOp::kSilu: return MapUnary<T>(out, x, [](C v) { return v * Sigmoid(v); });
      case UnaryOp::kGelu:
        return MapUnary<T>(out, x, [](C v) { return C(0.5) * v * (C(1) + std::erf(v * C(kSqrt1_2))); });
      case UnaryOp::kGeluTanh:
        return MapUnary<T>(out, x, [](C v) {
          C inner = C(kSqrt2OverPi) * (v + C(0.044715) * v * v * v);
          return C(0.5) * v * (C(1) + std::tanh(inner));
        });
      case UnaryOp::kSigmoidGrad:
        return MapUnary<T>(out, x, [](C v) {
          C s = Sigmoid(v);
          return s * (C(1) - s);
        });
      case UnaryOp::kSiluGrad:
        return MapUnary<T>(out, x, [](C v) {
          C s = Sigmoid(v);
          return s * (C(1) + v * (C(1) - s));
        });
      case UnaryOp::kGeluGrad:
        return MapUnary<T>(out, x, [](C v) {
          C cdf = C(0.5) * (C(1) + std::erf(v * C(kSqrt1_2)));
          C pdf = C(kInvSqrt2Pi) * std::exp(C(-0.5) * v * v);
          return cdf + v * pdf;
        });
      case UnaryOp::kGeluTanhGrad:
        return MapUnary<T>(out, x, [](C v) {
          C inner = C(kSqrt2OverPi) * (v + C(0.044715) * v * v * v);
          C t = std::tanh(inner);
          C dinner = C(kSqrt2OverPi) * (C(1) + C(3 * 0.044715) * v * v);
          return C(0.5) * (C(1) + t) + C(0.5) * v * (C(1) - t * t) * dinner;
        });
      case UnaryOp::kTanhGradFromOutput:
        return MapUnary<T>(out, x, [](C y) { return C(1) - y * y; });
      default: break;
    }
  }
  SDPO_FAIL(ops::UnaryOpName(op), ": unsupported for ", DTypeName(out.dtype()));
}

template <typename C>
C PowC(C a, C b) {
  if constexpr (std::is_floating_point_v<C>) {
    return std::pow(a, b);
  } else {
    // Integers: negative exponents have no integer result (torch rejects them too); square
    // and multiply keeps huge exponents cheap.
    if (b < 0) SDPO_FAIL("pow: negative integer exponent ", b, " (cast to a float dtype)");
    using U = std::make_unsigned_t<C>;  // wraps on overflow instead of undefined behaviour
    U r = 1, base = static_cast<U>(a);
    for (; b > 0; b >>= 1) {
      if (b & 1) r *= base;
      if (b > 1) base *= base;
    }
    return static_cast<C>(r);
  }
}

}  // namespace

void Fill(const Tensor& out, double value) {
  DispatchAll(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T v = ConvertTo<T>(value);
    T* o = Ptr<T>(out);
    ForEachRow<1>(out.shape(), {&out.strides()},
                  [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& s) {
                    for (int64_t i = 0; i < n; ++i) o[off[0] + i * s[0]] = v;
                  });
  });
}

void Copy(const Tensor& dst, const Tensor& src) {
  DispatchAll(dst.dtype(), [&](auto dtag) {
    using D = decltype(dtag);
    DispatchAll(src.dtype(), [&](auto stag) {
      using S = decltype(stag);
      D* o = Ptr<D>(dst);
      const S* a = Ptr<S>(src);
      ForEachRow<2>(dst.shape(), {&dst.strides(), &src.strides()},
                    [&](const std::array<int64_t, 2>& off, int64_t n,
                        const std::array<int64_t, 2>& s) {
                      D* po = o + off[0];
                      const S* pa = a + off[1];
                      if constexpr (std::is_same_v<D, S>) {
                        if (s[0] == 1 && s[1] == 1) {
                          std::memcpy(po, pa, n * sizeof(D));
                          return;
                        }
                      }
                      for (int64_t i = 0; i < n; ++i) {
                        if constexpr (std::is_same_v<S, BF16> || std::is_same_v<S, F16> ||
                                      std::is_same_v<D, BF16> || std::is_same_v<D, F16>) {
                          po[i * s[0]] = ConvertTo<D>(ConvertTo<float>(pa[i * s[1]]));
                        } else {
                          po[i * s[0]] = ConvertTo<D>(pa[i * s[1]]);
                        }
                      }
                    });
    });
  });
}

namespace {
// Contiguous f32/f64 fast path on Eigen's vectorised transcendental functions (exp, tanh,
// logistic, ...); libm's scalar tanhf alone was 20% of a demo training step. Returns false when
// the op has no fast path.
template <typename T>
bool UnaryVectorised(UnaryOp op, const Tensor& out, const Tensor& x) {
  using A = Eigen::Array<T, Eigen::Dynamic, 1>;
  const T* in = static_cast<const T*>(x.raw_data());
  T* o = static_cast<T*>(out.raw_data());
  auto run = [&](auto expr_fn) {
    // Fixed blocks, not thread-count-dependent ranges: Eigen computes a range's unaligned head
    // and tail with scalar code that rounds differently from its packet code, so the split
    // points must not move with the thread count (results are bit-identical for any count).
    constexpr int64_t kBlock = 16384;
    const int64_t n = out.numel(), blocks = (n + kBlock - 1) / kBlock;
    ParallelFor(blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t b = blk * kBlock, len = std::min(n, b + kBlock) - b;
        Eigen::Map<const A> v(in + b, len);
        Eigen::Map<A> r(o + b, len);
        r = expr_fn(v);
      }
    });
    return true;
  };
  const T half(0.5), one(1), k0(0.79788456080286535588), k1(0.044715);
  switch (op) {
    case UnaryOp::kExp: return run([](const auto& v) { return v.exp(); });
    case UnaryOp::kLog: return run([](const auto& v) { return v.log(); });
    case UnaryOp::kTanh: return run([](const auto& v) { return v.tanh(); });
    case UnaryOp::kSqrt: return run([](const auto& v) { return v.sqrt(); });
    case UnaryOp::kSigmoid: return run([](const auto& v) { return v.logistic(); });
    case UnaryOp::kSilu: return run([](const auto& v) { return v * v.logistic(); });
    case UnaryOp::kSiluGrad:
      return run([&](const auto& v) {
        A s = v.logistic();
        return (s * (one + v * (one - s))).eval();
      });
    case UnaryOp::kGeluTanh:
      return run([&](const auto& v) {
        return (half * v * (one + (k0 * (v + k1 * v.cube())).tanh())).eval();
      });
    case UnaryOp::kGeluTanhGrad:
      return run([&](const auto& v) {
        A t = (k0 * (v + k1 * v.cube())).tanh();
        A dinner = k0 * (one + T(3) * k1 * v.square());
        return (half * (one + t) + half * v * (one - t.square()) * dinner).eval();
      });
    default: return false;
  }
}
}  // namespace

void Unary(UnaryOp op, const Tensor& out, const Tensor& x) {
  if (x.is_contiguous() && out.is_contiguous()) {
    if (x.dtype() == kF32 && UnaryVectorised<float>(op, out, x)) return;
    if (x.dtype() == kF64 && UnaryVectorised<double>(op, out, x)) return;
  }
  DispatchArith(out.dtype(), ops::UnaryOpName(op), [&](auto tag) {
    UnaryTyped<decltype(tag)>(op, out, x);
  });
}

void Binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  DispatchArith(out.dtype(), ops::BinaryOpName(op), [&](auto tag) {
    using T = decltype(tag);
    using C = typename ComputeType<T>::type;
    switch (op) {
      case BinaryOp::kAdd: return MapBinary<T, T>(out, a, b, [](C x, C y) { return C(x + y); });
      case BinaryOp::kSub: return MapBinary<T, T>(out, a, b, [](C x, C y) { return C(x - y); });
      case BinaryOp::kMul: return MapBinary<T, T>(out, a, b, [](C x, C y) { return C(x * y); });
      case BinaryOp::kDiv:
        if constexpr (!std::is_floating_point_v<C>) {
          SDPO_FAIL("div: integer division is not supported (cast to a float dtype)");
        } else {
          return MapBinary<T, T>(out, a, b, [](C x, C y) { return x / y; });
        }
      case BinaryOp::kPow: return MapBinary<T, T>(out, a, b, [](C x, C y) { return PowC(x, y); });
      case BinaryOp::kMaximum:
        // NaN propagates, like torch.maximum.
        return MapBinary<T, T>(out, a, b, [](C x, C y) { return (x != x || x > y) ? x : y; });
      case BinaryOp::kMinimum:
        return MapBinary<T, T>(out, a, b, [](C x, C y) { return (x != x || x < y) ? x : y; });
    }
  });
}

void Compare(CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  DispatchAll(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = typename ComputeType<T>::type;
    switch (op) {
      case CompareOp::kEq: return MapBinary<T, bool>(out, a, b, [](C x, C y) { return x == y; });
      case CompareOp::kNe: return MapBinary<T, bool>(out, a, b, [](C x, C y) { return x != y; });
      case CompareOp::kLt: return MapBinary<T, bool>(out, a, b, [](C x, C y) { return x < y; });
      case CompareOp::kLe: return MapBinary<T, bool>(out, a, b, [](C x, C y) { return x <= y; });
      case CompareOp::kGt: return MapBinary<T, bool>(out, a, b, [](C x, C y) { return x > y; });
      case CompareOp::kGe: return MapBinary<T, bool>(out, a, b, [](C x, C y) { return x >= y; });
    }
  });
}

void Where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  DispatchAll(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = Ptr<T>(out);
    const bool* c = Ptr<bool>(cond);
    const T* pa = Ptr<T>(a);
    const T* pb = Ptr<T>(b);
    ForEachRow<4>(out.shape(), {&out.strides(), &cond.strides(), &a.strides(), &b.strides()},
                  [&](const std::array<int64_t, 4>& off, int64_t n, const std::array<int64_t, 4>& s) {
                    for (int64_t i = 0; i < n; ++i) {
                      o[off[0] + i * s[0]] =
                          c[off[1] + i * s[1]] ? pa[off[2] + i * s[2]] : pb[off[3] + i * s[3]];
                    }
                  });
  });
}

void Clamp(const Tensor& out, const Tensor& x, double lo, double hi) {
  DispatchArith(out.dtype(), "clamp", [&](auto tag) {
    using T = decltype(tag);
    using C = typename ComputeType<T>::type;
    MapUnary<T>(out, x, [lo, hi](C v) {
      double d = static_cast<double>(v);
      if (d != d) return v;  // NaN stays NaN
      return static_cast<C>(d < lo ? lo : (d > hi ? hi : d));
    });
  });
}

void Philox(const Tensor& out, uint64_t seed, uint64_t offset, bool normal) {
  DispatchAll(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = Ptr<T>(out);  // freshly allocated: contiguous
    ParallelFor(out.numel(), 4096, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        uint64_t idx = offset + static_cast<uint64_t>(i);
        double v = normal ? PhiloxNormal(idx, seed) : PhiloxUniform(idx, seed);
        o[i] = ConvertTo<T>(v);
        if constexpr (std::is_same_v<T, BF16> || std::is_same_v<T, F16>) {
          // Round uniforms down onto the 16-bit grid: rounding to nearest would turn values
          // just below 1 into 1, outside [0, 1). (v >= 0, so the next value down is bits - 1.)
          if (!normal && ConvertTo<double>(o[i]) > v) o[i].bits -= 1;
        }
      }
    });
  });
}

}  // namespace sdpo::cpu
