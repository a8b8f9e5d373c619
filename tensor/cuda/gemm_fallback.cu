// A plain tiled GEMM (no tensor cores) for what cuBLASLt does not cover here: f64, and every
// dtype under the CPU emulation. Accumulates in f32 (f64 for f64). Optional bias and
// tanh-GELU epilogue, like the cuBLASLt path.
#include <cmath>

#include "tensor/cuda/device_common.cuh"

namespace sdpo::cuda {
namespace {

constexpr int kTile = 16;

template <typename T>
__global__ void __launch_bounds__(kTile * kTile)
    GemmKernel(T* out, const T* a, bool ta, int64_t a_bs, const T* b, bool tb, int64_t b_bs,
               const T* bias, bool gelu, int64_t m, int64_t n, int64_t k) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  __shared__ A as[kTile][kTile + 1];
  __shared__ A bs[kTile][kTile + 1];
  const int64_t batch = blockIdx.z;
  const T* pa = a + batch * a_bs;
  const T* pb = b + batch * b_bs;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t row = static_cast<int64_t>(blockIdx.y) * kTile + ty;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kTile + tx;
  A acc = 0;
  for (int64_t k0 = 0; k0 < k; k0 += kTile) {
    // as[ty][tx] = A[row][k0 + tx]; bs[ty][tx] = B[k0 + ty][col]
    const int64_t ak = k0 + tx, bk = k0 + ty;
    A av = 0, bv = 0;
    if (row < m && ak < k) av = ConvertTo<A>(ta ? pa[ak * m + row] : pa[row * k + ak]);
    if (col < n && bk < k) bv = ConvertTo<A>(tb ? pb[col * k + bk] : pb[bk * n + col]);
    as[ty][tx] = av;
    bs[ty][tx] = bv;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTile; ++kk) acc += as[ty][kk] * bs[kk][tx];
    __syncthreads();
  }
  if (row < m && col < n) {
    if (bias) acc += ConvertTo<A>(bias[col]);
    if (gelu) {
      const A inner = A(0.79788456080286535588) * (acc + A(0.044715) * acc * acc * acc);
      acc = A(0.5) * acc * (A(1) + tanh(inner));
    }
    out[batch * m * n + row * n + col] = ConvertTo<T>(acc);
  }
}

}  // namespace

void LaunchGemmFallback(void* out, const void* a, bool trans_a, int64_t a_batch_stride,
                        const void* b, bool trans_b, int64_t b_batch_stride, const void* bias,
                        bool gelu, int dtype, int64_t batch, int64_t m, int64_t n, int64_t k,
                        cudaStream_t s) {
  if (batch * m * n == 0) return;
  if (batch > 65535 || CeilDiv(m, kTile) > 65535) {
    ThrowCudaError("gemm (fallback)", "batch or rows too large for the fallback GEMM", __FILE__,
                   __LINE__);
  }
  DispatchFloat(dtype, "gemm", [&](auto tag) {
    using T = decltype(tag);
    dim3 grid(static_cast<unsigned>(CeilDiv(n, kTile)), static_cast<unsigned>(CeilDiv(m, kTile)),
              static_cast<unsigned>(batch));
    auto kern = &GemmKernel<T>;
    SDPO_LAUNCH(kern, grid, dim3(kTile, kTile), 0, s, static_cast<T*>(out),
                static_cast<const T*>(a), trans_a, a_batch_stride, static_cast<const T*>(b),
                trans_b, b_batch_stride, static_cast<const T*>(bias), gelu, m, n, k);
    SDPO_CHECK_LAUNCH("gemm_fallback", s);
  });
}

}  // namespace sdpo::cuda
