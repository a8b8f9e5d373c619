// Elementwise kernels: fill, copy/cast, unary, binary, compare, where, clamp, and the Philox
// generator. Semantics follow the CPU oracle (tensor/cpu/elementwise.cc) exactly: the same
// compute types, conversions and NaN rules.
//
// Three paths: a contiguous one (every operand contiguous or a broadcast scalar) with 16-byte
// vector loads/stores when the pointers allow it, and a strided one (up to kMaxDims collapsed
// dims, broadcast dims have stride 0) with 32-bit index math when the offsets fit, which moves
// 16-byte vectors along the innermost dim when that dim is contiguous (permuted copies, row
// broadcasts such as a bias or an AdaLN gate).
#include <cmath>

#include "tensor/cuda/device_common.cuh"
#include "tensor/philox.h"

namespace sdpo::cuda {
namespace {

constexpr int kThreads = 256;

struct Desc {  // sizes and strides innermost first
  int rank;
  int64_t sizes[kMaxDims];
  int64_t strides[4][kMaxDims];  // operand 0 = out, 1..3 = inputs
};

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T>
__host__ __device__ constexpr int SizeOrOne() {
  return std::is_same_v<T, char> ? 1 : static_cast<int>(sizeof(T));
}

template <typename Out, typename I0, typename I1, typename I2>
__host__ __device__ constexpr int VecWidth() {
  int m = SizeOrOne<Out>();
  m = SizeOrOne<I0>() > m ? SizeOrOne<I0>() : m;
  m = SizeOrOne<I1>() > m ? SizeOrOne<I1>() : m;
  m = SizeOrOne<I2>() > m ? SizeOrOne<I2>() : m;
  return 16 / m;
}

template <typename T, int V>
SDPO_D void LoadVec(const T* p, int64_t base, bool scalar, T (&r)[V]) {
  if (scalar) {
    const T s = p[0];
#pragma unroll
    for (int i = 0; i < V; ++i) r[i] = s;
  } else {
    Pack<T, V> pk = *reinterpret_cast<const Pack<T, V>*>(p + base);
#pragma unroll
    for (int i = 0; i < V; ++i) r[i] = pk.v[i];
  }
}

// out[i] = f(a[i], b[i], c[i]) over contiguous operands (an input may be a broadcast scalar:
// bit k of scalar_mask set for input k).
template <typename Out, typename I0, typename I1, typename I2, int NIN, typename F>
__global__ void __launch_bounds__(kThreads)
    ContigKernel(Out* out, const I0* a, const I1* b, const I2* c, unsigned scalar_mask,
                 int64_t n, bool vec, F f) {
  constexpr int V = VecWidth<Out, I0, I1, I2>();
  const int64_t chunks = (n + V - 1) / V;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t ch = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; ch < chunks;
       ch += step) {
    const int64_t base = ch * V;
    if (vec && base + V <= n) {
      I0 ra[V];
      I1 rb[V];
      I2 rc[V];
      if constexpr (NIN >= 1) LoadVec<I0, V>(a, base, scalar_mask & 1u, ra);
      if constexpr (NIN >= 2) LoadVec<I1, V>(b, base, scalar_mask & 2u, rb);
      if constexpr (NIN >= 3) LoadVec<I2, V>(c, base, scalar_mask & 4u, rc);
      Pack<Out, V> po;
#pragma unroll
      for (int i = 0; i < V; ++i) po.v[i] = f(ra[i], rb[i], rc[i]);
      *reinterpret_cast<Pack<Out, V>*>(out + base) = po;
    } else {
      const int64_t end = base + V < n ? base + V : n;
      for (int64_t i = base; i < end; ++i) {
        I0 va{};
        I1 vb{};
        I2 vc{};
        if constexpr (NIN >= 1) va = a[(scalar_mask & 1u) ? 0 : i];
        if constexpr (NIN >= 2) vb = b[(scalar_mask & 2u) ? 0 : i];
        if constexpr (NIN >= 3) vc = c[(scalar_mask & 4u) ? 0 : i];
        out[i] = f(va, vb, vc);
      }
    }
  }
}

// Element offsets of out (off[0]) and the inputs (off[1..NIN]) at linear index `li` of the
// iteration space (innermost dim first).
template <int NIN, typename IndexT>
SDPO_D void Offsets(const Desc& d, IndexT li, IndexT (&off)[4]) {
  IndexT rem = li;
  off[0] = off[1] = off[2] = off[3] = 0;
#pragma unroll
  for (int dim = 0; dim < kMaxDims; ++dim) {
    if (dim == d.rank) break;
    const IndexT size = static_cast<IndexT>(d.sizes[dim]);
    const IndexT coord = rem % size;
    rem /= size;
#pragma unroll
    for (int k = 0; k <= NIN; ++k) off[k] += coord * static_cast<IndexT>(d.strides[k][dim]);
  }
}

template <typename Out, typename I0, typename I1, typename I2, int NIN, typename IndexT,
          typename F>
__global__ void __launch_bounds__(kThreads)
    StridedKernel(Out* out, const I0* a, const I1* b, const I2* c, Desc d, int64_t n, F f) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t li = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; li < n;
       li += step) {
    IndexT off[4];
    Offsets<NIN>(d, static_cast<IndexT>(li), off);
    I0 va{};
    I1 vb{};
    I2 vc{};
    if constexpr (NIN >= 1) va = a[off[1]];
    if constexpr (NIN >= 2) vb = b[off[2]];
    if constexpr (NIN >= 3) vc = c[off[3]];
    out[off[0]] = f(va, vb, vc);
  }
}

// StridedKernel for V consecutive elements at a time along the innermost dim, which is contiguous
// (stride 1) for out and for every input that is not broadcast along it (stride 0: the element is
// repeated). The host checks that inner size and every outer stride are multiples of V and the
// base pointers are aligned, so every vector access is aligned.
template <typename Out, typename I0, typename I1, typename I2, int NIN, typename IndexT,
          typename F>
__global__ void __launch_bounds__(kThreads)
    StridedVecKernel(Out* out, const I0* a, const I1* b, const I2* c, Desc d, unsigned bcast_mask,
                     int64_t n, F f) {
  constexpr int V = VecWidth<Out, I0, I1, I2>();
  const int64_t chunks = n / V;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t ch = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; ch < chunks;
       ch += step) {
    IndexT off[4];
    Offsets<NIN>(d, static_cast<IndexT>(ch * V), off);
    I0 ra[V];
    I1 rb[V];
    I2 rc[V];
    if constexpr (NIN >= 1) LoadVec<I0, V>(a + off[1], 0, bcast_mask & 1u, ra);
    if constexpr (NIN >= 2) LoadVec<I1, V>(b + off[2], 0, bcast_mask & 2u, rb);
    if constexpr (NIN >= 3) LoadVec<I2, V>(c + off[3], 0, bcast_mask & 4u, rc);
    Pack<Out, V> po;
#pragma unroll
    for (int i = 0; i < V; ++i) po.v[i] = f(ra[i], rb[i], rc[i]);
    *reinterpret_cast<Pack<Out, V>*>(out + off[0]) = po;
  }
}

bool Aligned(const void* p, int bytes) {
  return (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes)) == 0;
}

// Runs f over the iteration space of `it` with operands ops[0] (out) .. ops[NIN].
template <typename Out, typename I0, typename I1, typename I2, int NIN, typename F>
void Run(const char* name, const Iter& it, const Operand* ops, F f, cudaStream_t s) {
  if (it.numel == 0) return;
  Out* out = static_cast<Out*>(ops[0].data);
  const I0* a = NIN >= 1 ? static_cast<const I0*>(ops[1].data) : nullptr;
  const I1* b = NIN >= 2 ? static_cast<const I1*>(ops[2].data) : nullptr;
  const I2* c = NIN >= 3 ? static_cast<const I2*>(ops[3].data) : nullptr;
  // Contiguous path: rank 1 (or 0), out stride 1, inputs stride 1 or 0.
  bool contiguous = it.rank <= 1 && (it.rank == 0 || ops[0].strides[0] == 1);
  unsigned scalar_mask = 0;
  for (int k = 1; k <= NIN && contiguous; ++k) {
    int64_t st = it.rank == 0 ? 0 : ops[k].strides[0];
    if (st == 0) {
      scalar_mask |= 1u << (k - 1);
    } else if (st != 1) {
      contiguous = false;
    }
  }
  if (it.rank == 0) scalar_mask = (1u << NIN) - 1u;
  if (contiguous) {
    constexpr int V = VecWidth<Out, I0, I1, I2>();
    bool vec = Aligned(out, V * SizeOrOne<Out>());
    if (NIN >= 1 && !(scalar_mask & 1u)) vec = vec && Aligned(a, V * SizeOrOne<I0>());
    if (NIN >= 2 && !(scalar_mask & 2u)) vec = vec && Aligned(b, V * SizeOrOne<I1>());
    if (NIN >= 3 && !(scalar_mask & 4u)) vec = vec && Aligned(c, V * SizeOrOne<I2>());
    auto kern = &ContigKernel<Out, I0, I1, I2, NIN, F>;
    SDPO_LAUNCH(kern, GridFor(CeilDiv(it.numel, V), kThreads), kThreads, 0, s, out, a, b, c,
                scalar_mask, it.numel, vec, f);
    SDPO_CHECK_LAUNCH(name, s);
    return;
  }
  Desc d;
  d.rank = it.rank;
  bool small = it.numel < (int64_t{1} << 31);
  for (int i = 0; i < it.rank; ++i) {
    // Launchers get sizes outermost first; the kernel walks innermost first.
    d.sizes[i] = it.sizes[it.rank - 1 - i];
    for (int k = 0; k <= NIN; ++k) d.strides[k][i] = ops[k].strides[it.rank - 1 - i];
  }
  for (int k = 0; k <= NIN; ++k) {
    int64_t max_off = 0;
    for (int i = 0; i < it.rank; ++i) {
      if (d.strides[k][i] < 0) small = false;
      max_off += (d.sizes[i] - 1) * (d.strides[k][i] < 0 ? -d.strides[k][i] : d.strides[k][i]);
    }
    if (max_off >= (int64_t{1} << 31)) small = false;
  }
  for (int i = it.rank; i < kMaxDims; ++i) {
    d.sizes[i] = 1;
    for (int k = 0; k < 4; ++k) d.strides[k][i] = 0;
  }
  for (int k = NIN + 1; k < 4; ++k) {
    for (int i = 0; i < kMaxDims; ++i) d.strides[k][i] = 0;
  }
  // Vector path: innermost dim contiguous for out and for each input (or broadcast along it).
  constexpr int V = VecWidth<Out, I0, I1, I2>();
  bool vec = it.rank >= 2 && d.strides[0][0] == 1 && d.sizes[0] % V == 0 &&
             Aligned(out, V * SizeOrOne<Out>());
  unsigned bcast_mask = 0;
  const void* in_ptr[3] = {a, b, c};
  const int in_size[3] = {SizeOrOne<I0>(), SizeOrOne<I1>(), SizeOrOne<I2>()};
  for (int k = 0; k <= NIN && vec; ++k) {
    if (k > 0) {
      if (d.strides[k][0] == 0) {
        bcast_mask |= 1u << (k - 1);
      } else if (d.strides[k][0] != 1) {
        vec = false;
      }
      vec = vec && Aligned(in_ptr[k - 1], V * in_size[k - 1]);
    }
    for (int i = 1; i < it.rank && vec; ++i) vec = d.strides[k][i] % V == 0;
  }
  if (vec) {
    if (small) {
      auto kern = &StridedVecKernel<Out, I0, I1, I2, NIN, uint32_t, F>;
      SDPO_LAUNCH(kern, GridFor(it.numel / V, kThreads), kThreads, 0, s, out, a, b, c, d,
                  bcast_mask, it.numel, f);
    } else {
      auto kern = &StridedVecKernel<Out, I0, I1, I2, NIN, int64_t, F>;
      SDPO_LAUNCH(kern, GridFor(it.numel / V, kThreads), kThreads, 0, s, out, a, b, c, d,
                  bcast_mask, it.numel, f);
    }
    SDPO_CHECK_LAUNCH(name, s);
    return;
  }
  if (small) {
    auto kern = &StridedKernel<Out, I0, I1, I2, NIN, uint32_t, F>;
    SDPO_LAUNCH(kern, GridFor(it.numel, kThreads), kThreads, 0, s, out, a, b, c, d, it.numel, f);
  } else {
    auto kern = &StridedKernel<Out, I0, I1, I2, NIN, int64_t, F>;
    SDPO_LAUNCH(kern, GridFor(it.numel, kThreads), kThreads, 0, s, out, a, b, c, d, it.numel, f);
  }
  SDPO_CHECK_LAUNCH(name, s);
}

// --- math in the compute type --------------------------------------------------------------
SDPO_D float Exp(float x) { return expf(x); }
SDPO_D double Exp(double x) { return exp(x); }
SDPO_D float Log(float x) { return logf(x); }
SDPO_D double Log(double x) { return log(x); }
SDPO_D float Sqrt(float x) { return sqrtf(x); }
SDPO_D double Sqrt(double x) { return sqrt(x); }
SDPO_D float Sin(float x) { return sinf(x); }
SDPO_D double Sin(double x) { return sin(x); }
SDPO_D float Cos(float x) { return cosf(x); }
SDPO_D double Cos(double x) { return cos(x); }
SDPO_D float Tanh(float x) { return tanhf(x); }
SDPO_D double Tanh(double x) { return tanh(x); }
SDPO_D float Erf(float x) { return erff(x); }
SDPO_D double Erf(double x) { return erf(x); }
SDPO_D float Pow(float x, float y) { return powf(x, y); }
SDPO_D double Pow(double x, double y) { return pow(x, y); }

template <typename C>
SDPO_D C Sigmoid(C x) {
  return x >= C(0) ? C(1) / (C(1) + Exp(-x)) : Exp(x) / (C(1) + Exp(x));
}

template <typename C>
SDPO_D C UnaryCompute(int op, C v) {
  switch (op) {
    case kUNeg: return C(-v);
    case kUAbs: return v < C(0) ? C(-v) : v;
    case kUSquare: return C(v * v);
    case kUSign: return C((v > C(0)) - (v < C(0)));
    default: break;
  }
  if constexpr (std::is_floating_point_v<C>) {
    constexpr C kSqrt1_2 = C(0.70710678118654752440);
    constexpr C kSqrt2OverPi = C(0.79788456080286535588);
    constexpr C kInvSqrt2Pi = C(0.39894228040143267794);
    switch (op) {
      case kUExp: return Exp(v);
      case kULog: return Log(v);
      case kUSqrt: return Sqrt(v);
      case kURsqrt: return C(1) / Sqrt(v);
      case kUReciprocal: return C(1) / v;
      case kUSin: return Sin(v);
      case kUCos: return Cos(v);
      case kUTanh: return Tanh(v);
      case kUSigmoid: return Sigmoid(v);
      case kUSilu: return v * Sigmoid(v);
      case kUGelu: return C(0.5) * v * (C(1) + Erf(v * kSqrt1_2));
      case kUGeluTanh: {
        C inner = kSqrt2OverPi * (v + C(0.044715) * v * v * v);
        return C(0.5) * v * (C(1) + Tanh(inner));
      }
      case kUSigmoidGrad: {
        C s = Sigmoid(v);
        return s * (C(1) - s);
      }
      case kUSiluGrad: {
        C s = Sigmoid(v);
        return s * (C(1) + v * (C(1) - s));
      }
      case kUGeluGrad: {
        C cdf = C(0.5) * (C(1) + Erf(v * kSqrt1_2));
        C pdf = kInvSqrt2Pi * Exp(C(-0.5) * v * v);
        return cdf + v * pdf;
      }
      case kUGeluTanhGrad: {
        C inner = kSqrt2OverPi * (v + C(0.044715) * v * v * v);
        C t = Tanh(inner);
        C dinner = kSqrt2OverPi * (C(1) + C(3 * 0.044715) * v * v);
        return C(0.5) * (C(1) + t) + C(0.5) * v * (C(1) - t * t) * dinner;
      }
      case kUTanhGradFromOutput: return C(1) - v * v;
      default: break;
    }
  }
  return v;  // unreachable: the host rejects unsupported ops
}

template <typename C>
SDPO_D C PowC(C a, C b) {
  if constexpr (std::is_floating_point_v<C>) {
    return Pow(a, b);
  } else {
    C r = 1;
    for (C i = 0; i < b; ++i) r *= a;
    return r;
  }
}

template <typename C>
SDPO_D C BinaryCompute(int op, C x, C y) {
  switch (op) {
    case kBAdd: return C(x + y);
    case kBSub: return C(x - y);
    case kBMul: return C(x * y);
    case kBDiv: return C(x / y);
    case kBPow: return PowC(x, y);
    case kBMaximum: return (x != x || x > y) ? x : y;
    case kBMinimum: return (x != x || x < y) ? x : y;
  }
  return x;
}

// --- functors --------------------------------------------------------------------------------
template <typename T>
struct FillF {
  T value;
  SDPO_D T operator()(char, char, char) const { return value; }
};

template <typename D, typename S>
struct CopyF {
  SDPO_D D operator()(S v, char, char) const {
    if constexpr (std::is_same_v<D, S>) {
      return v;
    } else if constexpr (std::is_same_v<S, Bf16> || std::is_same_v<S, Half> ||
                         std::is_same_v<D, Bf16> || std::is_same_v<D, Half>) {
      return ConvertTo<D>(ConvertTo<float>(v));
    } else {
      return ConvertTo<D>(v);
    }
  }
};

template <typename T>
struct UnaryF {
  int op;
  SDPO_D T operator()(T v, char, char) const {
    using C = typename Compute<T>::type;
    return ConvertTo<T>(UnaryCompute<C>(op, ConvertTo<C>(v)));
  }
};

template <typename T>
struct BinaryF {
  int op;
  SDPO_D T operator()(T x, T y, char) const {
    using C = typename Compute<T>::type;
    return ConvertTo<T>(BinaryCompute<C>(op, ConvertTo<C>(x), ConvertTo<C>(y)));
  }
};

template <typename T>
struct CompareF {
  int op;
  SDPO_D bool operator()(T x, T y, char) const {
    using C = typename Compute<T>::type;
    const C a = ConvertTo<C>(x), b = ConvertTo<C>(y);
    switch (op) {
      case kCEq: return a == b;
      case kCNe: return a != b;
      case kCLt: return a < b;
      case kCLe: return a <= b;
      case kCGt: return a > b;
      case kCGe: return a >= b;
    }
    return false;
  }
};

template <typename T>
struct WhereF {
  SDPO_D T operator()(bool c, T a, T b) const { return c ? a : b; }
};

template <typename T>
struct ClampF {
  double lo, hi;
  SDPO_D T operator()(T x, char, char) const {
    using C = typename Compute<T>::type;
    C v = ConvertTo<C>(x);
    double d = static_cast<double>(v);
    if (d != d) return x;
    return ConvertTo<T>(static_cast<C>(d < lo ? lo : (d > hi ? hi : d)));
  }
};

template <typename T>
__global__ void __launch_bounds__(kThreads)
    PhiloxKernel(T* out, int64_t n, uint64_t seed, uint64_t offset, bool normal) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += step) {
    const uint64_t idx = offset + static_cast<uint64_t>(i);
    const double v = normal ? PhiloxNormal(idx, seed) : PhiloxUniform(idx, seed);
    T o = ConvertTo<T>(v);
    if constexpr (std::is_same_v<T, Bf16> || std::is_same_v<T, Half>) {
      // As the CPU oracle: uniforms round down onto the 16-bit grid (rounding to nearest would
      // turn values just below 1 into 1, outside [0, 1)).
      if (!normal && ConvertTo<double>(o) > v) o.bits -= 1;
    }
    out[i] = o;
  }
}

template <typename Fn>
void DispatchArith(int dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case kCodeF32: return fn(float{});
    case kCodeF64: return fn(double{});
    case kCodeBF16: return fn(Bf16{});
    case kCodeF16: return fn(Half{});
    case kCodeI32: return fn(int32_t{});
    case kCodeI64: return fn(int64_t{});
    default: break;
  }
  ThrowCudaError(op, "unsupported dtype (bool)", __FILE__, __LINE__);
}

}  // namespace

void LaunchFill(const Iter& it, const Operand& out, uint64_t value_bits, cudaStream_t s) {
  DispatchAll(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    T v;
    std::memcpy(&v, &value_bits, sizeof(T));
    Run<T, char, char, char, 0>("fill", it, &out, FillF<T>{v}, s);
  });
}

void LaunchCopy(const Iter& it, const Operand& dst, const Operand& src, cudaStream_t s) {
  const Operand ops[2] = {dst, src};
  DispatchAll(dst.dtype, [&](auto dtag) {
    using D = decltype(dtag);
    DispatchAll(src.dtype, [&](auto stag) {
      using S = decltype(stag);
      Run<D, S, char, char, 1>("copy", it, ops, CopyF<D, S>{}, s);
    });
  });
}

void LaunchUnary(int op, const Iter& it, const Operand& out, const Operand& x, cudaStream_t s) {
  const Operand ops[2] = {out, x};
  DispatchArith(out.dtype, "unary", [&](auto tag) {
    using T = decltype(tag);
    Run<T, T, char, char, 1>("unary", it, ops, UnaryF<T>{op}, s);
  });
}

void LaunchBinary(int op, const Iter& it, const Operand& out, const Operand& a, const Operand& b,
                  cudaStream_t s) {
  const Operand ops[3] = {out, a, b};
  DispatchArith(out.dtype, "binary", [&](auto tag) {
    using T = decltype(tag);
    Run<T, T, T, char, 2>("binary", it, ops, BinaryF<T>{op}, s);
  });
}

void LaunchCompare(int op, const Iter& it, const Operand& out, const Operand& a,
                   const Operand& b, cudaStream_t s) {
  const Operand ops[3] = {out, a, b};
  DispatchAll(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    Run<bool, T, T, char, 2>("compare", it, ops, CompareF<T>{op}, s);
  });
}

void LaunchWhere(const Iter& it, const Operand& out, const Operand& cond, const Operand& a,
                 const Operand& b, cudaStream_t s) {
  const Operand ops[4] = {out, cond, a, b};
  DispatchAll(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    Run<T, bool, T, T, 3>("where", it, ops, WhereF<T>{}, s);
  });
}

void LaunchClamp(const Iter& it, const Operand& out, const Operand& x, double lo, double hi,
                 cudaStream_t s) {
  const Operand ops[2] = {out, x};
  DispatchArith(out.dtype, "clamp", [&](auto tag) {
    using T = decltype(tag);
    Run<T, T, char, char, 1>("clamp", it, ops, ClampF<T>{lo, hi}, s);
  });
}

void LaunchPhilox(void* out, int dtype, int64_t n, uint64_t seed, uint64_t offset, bool normal,
                  cudaStream_t s) {
  if (n == 0) return;
  DispatchAll(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto kern = &PhiloxKernel<T>;
    SDPO_LAUNCH(kern, GridFor(n, kThreads), kThreads, 0, s, static_cast<T*>(out), n, seed, offset,
                normal);
    SDPO_CHECK_LAUNCH("philox", s);
  });
}

}  // namespace sdpo::cuda
