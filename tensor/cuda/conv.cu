// The video VAE's ops on CUDA cores: 3-D convolution as an implicit GEMM, and the channel RMS
// norm (+ SiLU). The CPU oracle is tensor/cpu/conv.cc; the semantics are Kernels::Conv3d and
// Kernels::ChannelRmsNorm (tensor/kernels.h).
//
// Conv3d: out[b, co, p] = bias[co] + sum_k weight[co, k] * column(b, k, p), a GEMM of
// M = Cout rows, N = B * To * Ho * Wo columns and K = Cin * kt * kh * kw, where column(b, k, p)
// is read from concat(history, x) on the fly (implicit im2col: no column buffer; the history
// frames are read in place, out-of-range positions read zero). One block computes a 64 x 64
// output tile with 256 threads (4 x 4 outputs each, f32 accumulation, f64 for f64) over K in
// steps of 16: each step stages 64 x 16 weights and 16 x 64 gathered inputs in shared memory, the
// next step's global loads held in registers while the current step computes.
// Work: 2 * M * N * K FLOPs. Traffic per step and block: (64 + 64) * 16 elements loaded for
// 2 * 64 * 64 * 16 FLOPs (32 FLOPs per element loaded; the kt * kh * kw taps of neighbouring
// columns overlap, so most gathers hit L1/L2), output written once. No tensor cores: the fast
// path for f32/bf16/f16 is cuDNN (tensor/cuda/cudnn_conv.cc); this kernel is its fallback and
// the f64 path.
//
// ChannelRmsNorm: x [outer, C, inner]; one thread per (outer, position): the sum of squares over
// C (reads coalesced along the position), then the scaled output; 2 reads + 1 write of x.
#include <cmath>

#include "tensor/cuda/device_common.cuh"

namespace sdpo::cuda {
namespace {

constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kConvThreads = 256;
// Per thread: 4 weight and 4 input elements staged per K step (64 * 16 / 256).
constexpr int kLoads = kTileM * kTileK / kConvThreads;
static_assert(kTileN * kTileK / kConvThreads == kLoads, "equal tile loads");

template <typename T>
using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
__global__ void __launch_bounds__(kConvThreads) Conv3dKernel(Conv3dArgs a) {
  using A = Acc<T>;
  // +1: the staging stores walk the K index across threads; the pad spreads them over banks.
  __shared__ A ws[kTileK][kTileM + 1];
  __shared__ A xs[kTileK][kTileN + 1];
  const T* x = static_cast<const T*>(a.x);
  const T* hist = static_cast<const T*>(a.history);
  const T* weight = static_cast<const T*>(a.weight);
  const int tid = threadIdx.x;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTileM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  const int64_t plane = a.h * a.w;
  const int64_t out_plane = a.ho * a.wo, positions = a.to * out_plane;
  const int64_t total_n = a.batch * positions;
  // K-index arithmetic in 32 bits (K < 2^31, checked at launch): 64-bit divisions cost several
  // times more, and every gathered element needs three.
  const int kw = static_cast<int>(a.kw), taps_hw = static_cast<int>(a.kh * a.kw);
  const int taps = static_cast<int>(a.kt) * taps_hw, k_total = static_cast<int>(a.cin) * taps;
  const int64_t frames_all = a.history_frames + a.frames;

  // This thread gathers column n0 + (tid % 64) of the input tile, rows tid / 64 + 4 r.
  const int gather_n = tid % kTileN, gather_k = tid / kTileN;
  const int64_t gn = n0 + gather_n;
  const bool column_valid = gn < total_n;
  int64_t gb = 0, t_base = 0, h_base = 0, w_base = 0;
  if (column_valid) {
    gb = gn / positions;
    const int64_t p = gn % positions;
    const int64_t ot = p / out_plane, oh = (p / a.wo) % a.ho, ow = p % a.wo;
    t_base = ot * a.stride_t - a.pad_t;
    h_base = oh * a.stride_h - a.pad_h;
    w_base = ow * a.stride_w - a.pad_w;
  }
  // This thread stages weight row m0 + idx / 16, column idx % 16, idx = tid + 256 r.
  auto load_tiles = [&](int k0, A* wreg, A* xreg) {
#pragma unroll
    for (int r = 0; r < kLoads; ++r) {
      const int idx = tid + r * kConvThreads;
      const int64_t m = m0 + idx / kTileK;
      const int k = k0 + idx % kTileK;
      wreg[r] = m < a.cout && k < k_total ? ConvertTo<A>(weight[m * k_total + k]) : A(0);
      const int kk = k0 + gather_k + r * (kConvThreads / kTileN);
      A v = A(0);
      if (column_valid && kk < k_total) {
        const int ci = kk / taps, tap = kk - ci * taps;
        const int dt = tap / taps_hw, in_plane = tap - dt * taps_hw;
        const int dh = in_plane / kw, dw = in_plane - dh * kw;
        const int64_t frame = t_base + dt;
        const int64_t ih = h_base + dh, iw = w_base + dw;
        if (frame >= 0 && frame < frames_all && ih >= 0 && ih < a.h && iw >= 0 && iw < a.w) {
          const int64_t offset = ih * a.w + iw;
          if (frame < a.history_frames) {
            v = ConvertTo<A>(hist[((gb * a.cin + ci) * a.history_frames + frame) * plane + offset]);
          } else {
            v = ConvertTo<A>(
                x[((gb * a.cin + ci) * a.frames + (frame - a.history_frames)) * plane + offset]);
          }
        }
      }
      xreg[r] = v;
    }
  };
  auto store_tiles = [&](const A* wreg, const A* xreg) {
#pragma unroll
    for (int r = 0; r < kLoads; ++r) {
      const int idx = tid + r * kConvThreads;
      ws[idx % kTileK][idx / kTileK] = wreg[r];
      xs[gather_k + r * (kConvThreads / kTileN)][gather_n] = xreg[r];
    }
  };

  // Outputs: rows m0 + ty + 16 i, columns n0 + tx + 16 j (strided, so that shared reads are
  // conflict-free and 16 neighbouring threads write 16 neighbouring outputs).
  const int tx = tid % 16, ty = tid / 16;
  A acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = A(0);
  }
  A wreg[kLoads], xreg[kLoads];
  load_tiles(0, wreg, xreg);
  for (int k0 = 0; k0 < k_total; k0 += kTileK) {
    store_tiles(wreg, xreg);
    __syncthreads();
    if (k0 + kTileK < k_total) load_tiles(k0 + kTileK, wreg, xreg);
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      A wv[4], xv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) wv[i] = ws[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) xv[j] = xs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += wv[i] * xv[j];
      }
    }
    __syncthreads();
  }

  T* out = static_cast<T*>(a.out);
  const T* bias = static_cast<const T*>(a.bias);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t n = n0 + tx + 16 * j;
    if (n >= total_n) continue;
    const int64_t b = n / positions, p = n % positions;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t m = m0 + ty + 16 * i;
      if (m >= a.cout) continue;
      A v = acc[i][j];
      if (bias != nullptr) v += ConvertTo<A>(bias[m]);
      out[(b * a.cout + m) * positions + p] = ConvertTo<T>(v);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(256)
    ChannelRmsNormKernel(T* out, const T* x, const Acc<T>* gamma, int64_t outer, int64_t c,
                         int64_t inner, double eps, bool silu) {
  using S = Acc<T>;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= inner) return;
  const S scale = sqrt(static_cast<S>(c));
  for (int64_t b = blockIdx.y; b < outer; b += gridDim.y) {
    const T* xb = x + b * c * inner + j;
    T* ob = out + b * c * inner + j;
    S sum = 0;
    for (int64_t ch = 0; ch < c; ++ch) {
      const S v = ConvertTo<S>(xb[ch * inner]);
      sum += v * v;
    }
    S norm = sqrt(sum);
    if (norm < static_cast<S>(eps)) norm = static_cast<S>(eps);
    for (int64_t ch = 0; ch < c; ++ch) {
      // The order of PyTorch's F.normalize(x) * scale * gamma, as the CPU oracle.
      S y = ConvertTo<S>(xb[ch * inner]) / norm * scale * gamma[ch];
      if (silu) y = y / (S(1) + exp(-y));
      ob[ch * inner] = ConvertTo<T>(y);
    }
  }
}

}  // namespace

void LaunchConv3d(const Conv3dArgs& a, cudaStream_t s) {
  const int64_t total_n = a.batch * a.to * a.ho * a.wo;
  if (total_n == 0 || a.cout == 0) return;
  const int64_t grid_n = CeilDiv(total_n, kTileN), grid_m = CeilDiv(a.cout, kTileM);
  if (grid_n > 0x7fffffff || grid_m > 65535) {
    ThrowCudaError("conv3d", "output too large for one launch", __FILE__, __LINE__);
  }
  if (a.cin * a.kt * a.kh * a.kw > 0x7fffffff - kTileK) {
    ThrowCudaError("conv3d", "Cin * kt * kh * kw exceeds 32-bit indexing", __FILE__, __LINE__);
  }
  DispatchFloat(a.dtype, "conv3d", [&](auto tag) {
    using T = decltype(tag);
    auto kern = &Conv3dKernel<T>;
    SDPO_LAUNCH(kern, dim3(static_cast<unsigned>(grid_n), static_cast<unsigned>(grid_m)),
                dim3(kConvThreads), 0, s, a);
    SDPO_CHECK_LAUNCH("conv3d", s);
  });
}

void LaunchChannelRmsNorm(void* out, const void* x, const void* gamma, int dtype, int64_t outer,
                          int64_t c, int64_t inner, double eps, bool silu, cudaStream_t s) {
  if (outer * c * inner == 0) return;
  const int64_t blocks = CeilDiv(inner, 256);
  if (blocks > 0x7fffffff) {
    ThrowCudaError("channel_rms_norm", "too many positions for one launch", __FILE__, __LINE__);
  }
  const unsigned grid_y = static_cast<unsigned>(outer < 65535 ? outer : 65535);
  DispatchFloat(dtype, "channel_rms_norm", [&](auto tag) {
    using T = decltype(tag);
    auto kern = &ChannelRmsNormKernel<T>;
    SDPO_LAUNCH(kern, dim3(static_cast<unsigned>(blocks), grid_y), dim3(256), 0, s,
                static_cast<T*>(out), static_cast<const T*>(x), static_cast<const Acc<T>*>(gamma),
                outer, c, inner, eps, silu);
    SDPO_CHECK_LAUNCH("channel_rms_norm", s);
  });
}

}  // namespace sdpo::cuda
