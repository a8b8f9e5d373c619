// LayerNorm / RMSNorm forward and backward over rows [rows, d], statistics in f32 (f64 for f64
// inputs), with an optional fused AdaLN modulation: out = norm(x) * (1 + scale[b]) + shift[b].
//
// Forward: one block per row (three passes over the row, which stays in L1/L2).
// Backward: dx one block per row; the column sums (dweight, dbias, dshift, dscale) in two
// deterministic steps: partial sums over fixed chunks of rows, then a sum over the chunks.
#include <cmath>

#include "tensor/cuda/device_common.cuh"

namespace sdpo::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kChunkRows = 64;
constexpr int kMaxChunksTotal = 256;

template <typename T>
using Stat = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
SDPO_D Stat<T> Ld(const T* p, int64_t i) {
  return static_cast<Stat<T>>(ConvertTo<typename Compute<T>::type>(p[i]));
}

template <typename T>
__global__ void __launch_bounds__(kThreads) NormFwdKernel(NormFwdArgs a) {
  using S = Stat<T>;
  __shared__ S scratch[32];
  const T* x = static_cast<const T*>(a.x);
  const T* w = static_cast<const T*>(a.weight);
  const T* bias = static_cast<const T*>(a.bias);
  const T* shift = static_cast<const T*>(a.shift);
  const T* scale = static_cast<const T*>(a.scale);
  T* out = static_cast<T*>(a.out);
  const int64_t d = a.d;
  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    const T* row = x + r * d;
    S mu = 0;
    if (!a.rms) {
      S s = 0;
      for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s += Ld(row, i);
      mu = BlockSum(s, scratch) / static_cast<S>(d);
    }
    S ss = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const S v = Ld(row, i) - mu;
      ss += v * v;
    }
    ss = BlockSum(ss, scratch) / static_cast<S>(d);
    const S rs = S(1) / sqrt(ss + static_cast<S>(a.eps));
    const int64_t b = r / a.rows_per_batch;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      S y = (Ld(row, i) - mu) * rs;
      if (w) y *= Ld(w, i);
      if (bias) y += Ld(bias, i);
      if (scale) y *= S(1) + Ld(scale, b * d + i);
      if (shift) y += Ld(shift, b * d + i);
      out[r * d + i] = ConvertTo<T>(y);
    }
    if (threadIdx.x == 0) {
      if (!a.rms) static_cast<S*>(a.mean)[r] = mu;
      static_cast<S*>(a.rstd)[r] = rs;
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) NormBwdDxKernel(NormBwdArgs a) {
  using S = Stat<T>;
  __shared__ S scratch[32];
  const T* x = static_cast<const T*>(a.x);
  const T* dy = static_cast<const T*>(a.dy);
  const T* w = static_cast<const T*>(a.weight);
  const T* scale = static_cast<const T*>(a.scale);
  const S* mean = static_cast<const S*>(a.mean);
  const S* rstd = static_cast<const S*>(a.rstd);
  T* dx = static_cast<T*>(a.dx);
  const int64_t d = a.d;
  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    const S mu = a.rms ? S(0) : mean[r];
    const S rs = rstd[r];
    const int64_t b = r / a.rows_per_batch;
    S sum_g = 0, sum_gx = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const S xhat = (Ld(x, r * d + i) - mu) * rs;
      S g = Ld(dy, r * d + i);
      if (scale) g *= S(1) + Ld(scale, b * d + i);
      if (w) g *= Ld(w, i);
      sum_g += g;
      sum_gx += g * xhat;
    }
    sum_gx = BlockSum(sum_gx, scratch) / static_cast<S>(d);
    if (!a.rms) sum_g = BlockSum(sum_g, scratch) / static_cast<S>(d);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const S xhat = (Ld(x, r * d + i) - mu) * rs;
      S g = Ld(dy, r * d + i);
      if (scale) g *= S(1) + Ld(scale, b * d + i);
      if (w) g *= Ld(w, i);
      const S v = a.rms ? rs * (g - xhat * sum_gx) : rs * (g - sum_g - xhat * sum_gx);
      dx[r * d + i] = ConvertTo<T>(v);
    }
  }
}

// Partial column sums over chunks of rows inside each batch group. Block (32, 8): 32 columns,
// 8 row lanes. grid (column tiles, chunks per group, groups). Output partial[q][group * cpg +
// chunk][col] for the quantities q: 0 dweight, 1 dbias, 2 dshift, 3 dscale.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    NormBwdPartialKernel(NormBwdArgs a, int64_t chunks_per_group, int64_t chunk_rows,
                         Stat<T>* partial) {
  using S = Stat<T>;
  __shared__ S red[4][8][33];
  const T* x = static_cast<const T*>(a.x);
  const T* dy = static_cast<const T*>(a.dy);
  const T* w = static_cast<const T*>(a.weight);
  const T* bias = static_cast<const T*>(a.bias);
  const T* scale = static_cast<const T*>(a.scale);
  const S* mean = static_cast<const S*>(a.mean);
  const S* rstd = static_cast<const S*>(a.rstd);
  const int64_t d = a.d;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  const int64_t group = blockIdx.z;
  const int64_t chunk = blockIdx.y;
  const int64_t row0 = group * a.rows_per_batch + chunk * chunk_rows;
  int64_t row1 = row0 + chunk_rows;
  const int64_t group_end = (group + 1) * a.rows_per_batch;
  if (row1 > group_end) row1 = group_end;
  if (row1 > a.rows) row1 = a.rows;
  S acc[4] = {0, 0, 0, 0};
  if (col < d) {
    const S wv = w ? Ld(w, col) : S(1);
    const S bv = bias ? Ld(bias, col) : S(0);
    const S sc = scale ? S(1) + Ld(scale, group * d + col) : S(1);
    for (int64_t r = row0 + threadIdx.y; r < row1; r += 8) {
      const S mu = a.rms ? S(0) : mean[r];
      const S xhat = (Ld(x, r * d + col) - mu) * rstd[r];
      const S g = Ld(dy, r * d + col);
      const S gm = g * sc;
      acc[0] += gm * xhat;
      acc[1] += gm;
      acc[2] += g;
      acc[3] += g * (xhat * wv + bv);
    }
  }
#pragma unroll
  for (int q = 0; q < 4; ++q) red[q][threadIdx.y][threadIdx.x] = acc[q];
  __syncthreads();
  if (threadIdx.y < 4 && col < d) {
    const int q = threadIdx.y;
    S s = 0;
    for (int k = 0; k < 8; ++k) s += red[q][k][threadIdx.x];
    const int64_t prow = group * chunks_per_group + chunk;
    const int64_t prows = static_cast<int64_t>(gridDim.z) * chunks_per_group;
    partial[(q * prows + prow) * d + col] = s;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    NormBwdFinalKernel(NormBwdArgs a, int64_t groups, int64_t chunks_per_group,
                       const Stat<T>* partial) {
  using S = Stat<T>;
  const int64_t d = a.d;
  const int64_t prows = groups * chunks_per_group;
  const int64_t n = d * (1 + groups);  // [0, d): weight/bias columns; then (group, col)
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (i < d) {
      S sw = 0, sb = 0;
      for (int64_t p = 0; p < prows; ++p) {
        sw += partial[(0 * prows + p) * d + i];
        sb += partial[(1 * prows + p) * d + i];
      }
      if (a.dweight) static_cast<T*>(a.dweight)[i] = ConvertTo<T>(sw);
      if (a.dbias) static_cast<T*>(a.dbias)[i] = ConvertTo<T>(sb);
    } else {
      const int64_t g = (i - d) / d, col = (i - d) % d;
      S sh = 0, sc = 0;
      for (int64_t c = 0; c < chunks_per_group; ++c) {
        const int64_t p = g * chunks_per_group + c;
        sh += partial[(2 * prows + p) * d + col];
        sc += partial[(3 * prows + p) * d + col];
      }
      if (a.dshift) static_cast<T*>(a.dshift)[g * d + col] = ConvertTo<T>(sh);
      if (a.dscale) static_cast<T*>(a.dscale)[g * d + col] = ConvertTo<T>(sc);
    }
  }
}

void ChunkPlan(int64_t rows, int64_t rows_per_batch, int64_t* groups, int64_t* chunks_per_group,
               int64_t* chunk_rows) {
  *groups = rows_per_batch > 0 ? CeilDiv(rows, rows_per_batch) : 1;
  int64_t rpb = rows_per_batch > 0 ? rows_per_batch : rows;
  int64_t max_chunks = kMaxChunksTotal / *groups;
  if (max_chunks < 1) max_chunks = 1;
  int64_t cpg = CeilDiv(rpb, kChunkRows);
  if (cpg > max_chunks) cpg = max_chunks;
  if (cpg < 1) cpg = 1;
  *chunks_per_group = cpg;
  *chunk_rows = CeilDiv(rpb, cpg);
  if (*chunk_rows < 1) *chunk_rows = 1;
}

}  // namespace

// Forward with one warp per row for rows of up to 32 * kVecs 16-byte vectors (f32/bf16/f16,
// d a multiple of the vector width, 16-byte aligned rows): the row is read once into registers
// with vector loads, the statistics come from warp shuffles (no block barrier), and the output
// is written with vector stores. Same math as NormFwdKernel (two-pass variance, f32).
template <typename T, int kVecs>
__global__ void __launch_bounds__(kThreads) NormFwdWarpKernel(NormFwdArgs a) {
  constexpr int V = 16 / sizeof(T);
  struct alignas(16) Vec {
    T v[V];
  };
  const int lane = threadIdx.x % 32;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (r < a.rows) {  // uniform per warp
    const int64_t d = a.d;
    const int nvec = static_cast<int>(d / V);
    const Vec* row = reinterpret_cast<const Vec*>(static_cast<const T*>(a.x) + r * d);
    float v[kVecs][V];
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int vi = j * 32 + lane;
      if (vi < nvec) {
        const Vec p = row[vi];
#pragma unroll
        for (int e = 0; e < V; ++e) {
          v[j][e] = ConvertTo<float>(p.v[e]);
          sum += v[j][e];
        }
      } else {
#pragma unroll
        for (int e = 0; e < V; ++e) v[j][e] = 0.f;
      }
    }
    const float mu = a.rms ? 0.f : WarpSum(sum) / static_cast<float>(d);
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      if (j * 32 + lane < nvec) {
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const float c = v[j][e] - mu;
          ss += c * c;
        }
      }
    }
    const float rs = 1.f / sqrtf(WarpSum(ss) / static_cast<float>(d) + static_cast<float>(a.eps));
    const int64_t b = r / a.rows_per_batch;
    const Vec* w = static_cast<const Vec*>(a.weight);
    const Vec* bias = static_cast<const Vec*>(a.bias);
    const Vec* shift = a.shift ? reinterpret_cast<const Vec*>(static_cast<const T*>(a.shift) + b * d)
                               : nullptr;
    const Vec* scale = a.scale ? reinterpret_cast<const Vec*>(static_cast<const T*>(a.scale) + b * d)
                               : nullptr;
    Vec* out = reinterpret_cast<Vec*>(static_cast<T*>(a.out) + r * d);
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int vi = j * 32 + lane;
      if (vi < nvec) {
        float y[V];
#pragma unroll
        for (int e = 0; e < V; ++e) y[e] = (v[j][e] - mu) * rs;
        if (w) {
          const Vec p = w[vi];
#pragma unroll
          for (int e = 0; e < V; ++e) y[e] *= ConvertTo<float>(p.v[e]);
        }
        if (bias) {
          const Vec p = bias[vi];
#pragma unroll
          for (int e = 0; e < V; ++e) y[e] += ConvertTo<float>(p.v[e]);
        }
        if (scale) {
          const Vec p = scale[vi];
#pragma unroll
          for (int e = 0; e < V; ++e) y[e] *= 1.f + ConvertTo<float>(p.v[e]);
        }
        if (shift) {
          const Vec p = shift[vi];
#pragma unroll
          for (int e = 0; e < V; ++e) y[e] += ConvertTo<float>(p.v[e]);
        }
        Vec o;
#pragma unroll
        for (int e = 0; e < V; ++e) o.v[e] = ConvertTo<T>(y[e]);
        out[vi] = o;
      }
    }
    if (lane == 0) {
      if (!a.rms) static_cast<float*>(a.mean)[r] = mu;
      static_cast<float*>(a.rstd)[r] = rs;
    }
  }
}

bool Aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

void LaunchNormForward(const NormFwdArgs& a, cudaStream_t s) {
  if (a.rows == 0) return;
  DispatchFloat(a.dtype, "norm", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, double>) {
      constexpr int V = 16 / sizeof(T);
      const int64_t vecs = a.d % V == 0 ? a.d / V : -1;
      const bool aligned = Aligned16(a.x) && Aligned16(a.out) && Aligned16(a.weight) &&
                           Aligned16(a.bias) && Aligned16(a.shift) && Aligned16(a.scale);
      if (vecs > 0 && vecs <= 32 * 8 && aligned) {
        auto kern = vecs <= 32 ? &NormFwdWarpKernel<T, 1>
                    : vecs <= 64 ? &NormFwdWarpKernel<T, 2>
                    : vecs <= 128 ? &NormFwdWarpKernel<T, 4>
                                  : &NormFwdWarpKernel<T, 8>;
        SDPO_LAUNCH(kern, static_cast<unsigned>(CeilDiv(a.rows, kThreads / 32)), kThreads, 0, s,
                    a);
        SDPO_CHECK_LAUNCH(a.rms ? "rms_norm(warp)" : "layer_norm(warp)", s);
        return;
      }
    }
    auto kern = &NormFwdKernel<T>;
    SDPO_LAUNCH(kern, GridFor(a.rows, 1, 65535 * 8), kThreads, 0, s, a);
    SDPO_CHECK_LAUNCH(a.rms ? "rms_norm" : "layer_norm", s);
  });
}

size_t NormBackwardWorkspaceBytes(int64_t rows, int64_t d, int64_t rows_per_batch, int dtype) {
  int64_t groups, cpg, chunk_rows;
  ChunkPlan(rows, rows_per_batch, &groups, &cpg, &chunk_rows);
  const size_t elem = dtype == kCodeF64 ? 8 : 4;
  return static_cast<size_t>(4 * groups * cpg * d) * elem;
}

void LaunchNormBackward(const NormBwdArgs& a, cudaStream_t s) {
  if (a.rows == 0) return;
  DispatchFloat(a.dtype, "norm backward", [&](auto tag) {
    using T = decltype(tag);
    using S = Stat<T>;
    auto dx_kern = &NormBwdDxKernel<T>;
    SDPO_LAUNCH(dx_kern, GridFor(a.rows, 1, 65535 * 8), kThreads, 0, s, a);
    SDPO_CHECK_LAUNCH("norm_backward_dx", s);
    if (!a.dweight && !a.dbias && !a.dshift && !a.dscale) return;
    int64_t groups, cpg, chunk_rows;
    ChunkPlan(a.rows, a.rows_per_batch, &groups, &cpg, &chunk_rows);
    if (groups > 65535) {
      ThrowCudaError("norm backward", "more than 65535 modulation batches", __FILE__, __LINE__);
    }
    S* partial = static_cast<S*>(a.workspace);
    dim3 grid(static_cast<unsigned>(CeilDiv(a.d, 32)), static_cast<unsigned>(cpg),
              static_cast<unsigned>(groups));
    auto part_kern = &NormBwdPartialKernel<T>;
    SDPO_LAUNCH(part_kern, grid, dim3(32, 8), 0, s, a, cpg, chunk_rows, partial);
    SDPO_CHECK_LAUNCH("norm_backward_partial", s);
    auto final_kern = &NormBwdFinalKernel<T>;
    SDPO_LAUNCH(final_kern, GridFor(a.d * (1 + groups), kThreads), kThreads, 0, s, a, groups, cpg,
                static_cast<const S*>(partial));
    SDPO_CHECK_LAUNCH("norm_backward_final", s);
  });
}

}  // namespace sdpo::cuda
