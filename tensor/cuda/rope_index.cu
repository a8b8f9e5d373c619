// Rotary embedding and the indexing kernels (index_select rows, index_add, gather,
// scatter_add). Accumulating kernels use atomics (16-bit types through a 32-bit CAS loop), so
// repeated indices accumulate in an unspecified order.
#include "tensor/cuda/device_common.cuh"

namespace sdpo::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    RopeKernel(T* out, const T* x, const T* cosv, const T* sinv, int64_t n, int64_t l, int64_t h,
               int64_t d, bool interleaved, bool inverse) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t half = d / 2;
  const int64_t total = n * l * h * half;
  const C sign = inverse ? C(-1) : C(1);
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = e % half;
    const int64_t vec = e / half;       // (n, l, h) flattened
    const int64_t pos = (vec / h) % l;  // the L index
    const int64_t i0 = interleaved ? 2 * j : j;
    const int64_t i1 = interleaved ? 2 * j + 1 : j + half;
    const T* xi = x + vec * d;
    T* yo = out + vec * d;
    const C a = ConvertTo<C>(xi[i0]), b = ConvertTo<C>(xi[i1]);
    const C cj = ConvertTo<C>(cosv[pos * half + j]);
    const C sj = sign * ConvertTo<C>(sinv[pos * half + j]);
    yo[i0] = ConvertTo<T>(static_cast<C>(a * cj - b * sj));
    yo[i1] = ConvertTo<T>(static_cast<C>(a * sj + b * cj));
  }
}

template <typename T>
SDPO_D void AtomicAddT(T* p, T v) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    atomicAdd(p, v);
  } else if constexpr (std::is_same_v<T, int32_t>) {
    atomicAdd(reinterpret_cast<int*>(p), static_cast<int>(v));
  } else if constexpr (std::is_same_v<T, int64_t>) {
    atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
  } else {  // Bf16 / Half: CAS on the aligned 32-bit word that holds it
    unsigned* word =
        reinterpret_cast<unsigned*>(reinterpret_cast<uintptr_t>(p) & ~static_cast<uintptr_t>(3));
    const bool high = (reinterpret_cast<uintptr_t>(p) & 2) != 0;
    const float add = ConvertTo<float>(v);
    unsigned old = *word, assumed;
    do {
      assumed = old;
      T cur{static_cast<uint16_t>(high ? (assumed >> 16) : (assumed & 0xffffu))};
      T next = ConvertTo<T>(ConvertTo<float>(cur) + add);
      unsigned repl = high ? ((assumed & 0xffffu) | (static_cast<unsigned>(next.bits) << 16))
                           : ((assumed & 0xffff0000u) | next.bits);
      old = atomicCAS(word, assumed, repl);
    } while (old != assumed);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    IndexRowsKernel(T* out, int64_t out_stride, const T* x, int64_t x_stride,
                    const int64_t* index, int64_t count, int64_t inner) {
  const int64_t total = count * inner;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / inner, j = e % inner;
    out[i * out_stride + j] = x[index[i] * x_stride + j];
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    IndexAddRowsKernel(T* out, int64_t out_stride, const int64_t* index, const T* src,
                       int64_t src_stride, int64_t count, int64_t inner) {
  const int64_t total = count * inner;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / inner, j = e % inner;
    AtomicAddT(out + index[i] * out_stride + j, src[i * src_stride + j]);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    GatherKernel(T* out, const T* x, const int64_t* index, int64_t outer, int64_t m, int64_t n,
                 int64_t inner) {
  const int64_t total = outer * m * inner;
  for (int64_t pos = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; pos < total;
       pos += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = pos / (m * inner), j = pos % inner;
    out[pos] = x[(o * n + index[pos]) * inner + j];
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    ScatterAddKernel(T* out, const int64_t* index, const T* src, int64_t outer, int64_t m,
                     int64_t n, int64_t inner) {
  const int64_t total = outer * m * inner;
  for (int64_t pos = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; pos < total;
       pos += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = pos / (m * inner), j = pos % inner;
    AtomicAddT(out + (o * n + index[pos]) * inner + j, src[pos]);
  }
}

template <typename Fn>
void DispatchNoBool(int dtype, const char* op, Fn&& fn) {
  if (dtype == kCodeBool) ThrowCudaError(op, "not supported for bool tensors", __FILE__, __LINE__);
  DispatchAll(dtype, [&](auto tag) {
    if constexpr (!std::is_same_v<decltype(tag), bool>) fn(tag);
  });
}

}  // namespace

void LaunchRope(void* out, const void* x, const void* cos, const void* sin, int dtype, int64_t n,
                int64_t l, int64_t h, int64_t d, bool interleaved, bool inverse, cudaStream_t s) {
  const int64_t total = n * l * h * (d / 2);
  if (total == 0) return;
  DispatchFloat(dtype, "rope", [&](auto tag) {
    using T = decltype(tag);
    auto kern = &RopeKernel<T>;
    SDPO_LAUNCH(kern, GridFor(total, kThreads), kThreads, 0, s, static_cast<T*>(out),
                static_cast<const T*>(x), static_cast<const T*>(cos), static_cast<const T*>(sin),
                n, l, h, d, interleaved, inverse);
    SDPO_CHECK_LAUNCH("rope", s);
  });
}

void LaunchIndexRows(void* out, int64_t out_stride, const void* x, int64_t x_stride,
                     const int64_t* index, int64_t count, int64_t inner, int dtype,
                     cudaStream_t s) {
  if (count * inner == 0) return;
  DispatchAll(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto kern = &IndexRowsKernel<T>;
    SDPO_LAUNCH(kern, GridFor(count * inner, kThreads), kThreads, 0, s, static_cast<T*>(out),
                out_stride, static_cast<const T*>(x), x_stride, index, count, inner);
    SDPO_CHECK_LAUNCH("index_rows", s);
  });
}

void LaunchIndexAddRows(void* out, int64_t out_stride, const int64_t* index, const void* src,
                        int64_t src_stride, int64_t count, int64_t inner, int dtype,
                        cudaStream_t s) {
  if (count * inner == 0) return;
  DispatchNoBool(dtype, "index_add", [&](auto tag) {
    using T = decltype(tag);
    auto kern = &IndexAddRowsKernel<T>;
    SDPO_LAUNCH(kern, GridFor(count * inner, kThreads), kThreads, 0, s, static_cast<T*>(out),
                out_stride, index, static_cast<const T*>(src), src_stride, count, inner);
    SDPO_CHECK_LAUNCH("index_add_rows", s);
  });
}

void LaunchGather(void* out, const void* x, const int64_t* index, int64_t outer, int64_t m,
                  int64_t n, int64_t inner, int dtype, cudaStream_t s) {
  if (outer * m * inner == 0) return;
  DispatchAll(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto kern = &GatherKernel<T>;
    SDPO_LAUNCH(kern, GridFor(outer * m * inner, kThreads), kThreads, 0, s, static_cast<T*>(out),
                static_cast<const T*>(x), index, outer, m, n, inner);
    SDPO_CHECK_LAUNCH("gather", s);
  });
}

void LaunchScatterAdd(void* out, const int64_t* index, const void* src, int64_t outer, int64_t m,
                      int64_t n, int64_t inner, int dtype, cudaStream_t s) {
  if (outer * m * inner == 0) return;
  DispatchNoBool(dtype, "scatter_add", [&](auto tag) {
    using T = decltype(tag);
    auto kern = &ScatterAddKernel<T>;
    SDPO_LAUNCH(kern, GridFor(outer * m * inner, kThreads), kThreads, 0, s, static_cast<T*>(out),
                index, static_cast<const T*>(src), outer, m, n, inner);
    SDPO_CHECK_LAUNCH("scatter_add", s);
  });
}

}  // namespace sdpo::cuda
