// Group normalisation (+ SiLU) on CUDA: Kernels::GroupNorm (tensor/kernels.h), the CPU oracle
// tensor/cpu/group_norm.cc. x, out contiguous [B, C, inner]; each (batch item, group) is one
// contiguous run of (C / G) * inner elements, which for the CogVideoX VAE reaches 12.4 M
// (128 / 32 channels x 9 frames x 480 x 720), so one block per group would leave most of the GPU
// idle. Three launches, deterministic (fixed reduction order, no atomics):
//   1. partial sums: `chunks` blocks per group, each summing (x - k) and (x - k)^2 in f64 over its
//      slice of the group, k = the group's first element (the shift keeps the one-pass variance
//      free of cancellation when the mean is large against the spread);
//   2. statistics: one thread per group adds its chunks in order: mean, rstd = 1/sqrt(var + eps);
//   3. apply: per channel row a = rstd * weight[c], b = bias[c] - mean * a (in f64, then rounded
//      to the statistics dtype as the CPU does), y = x * a + b, SiLU when asked.
// out may be x (ops::GroupNormInPlace): every statistic is taken before the apply launch, which
// reads and writes each element in one thread.
// Traffic: 2 reads + 1 write of x (the bound of a non-fused group norm); work per element: 3 f64
// FLOPs for the statistics, 2 FLOPs for the affine step (+ exp and a division for SiLU), so it
// is a bandwidth kernel on GPUs with full-rate f64 (H100 SXM: 34 f64 TFLOP/s (no tensor cores)
// against 3.35 TB/s, ~10 f64 FLOPs per byte; bf16 x brings 1.5 per byte).
#include <cmath>

#include "tensor/cuda/device_common.cuh"

namespace sdpo::cuda {
namespace {

constexpr int kThreads = 256;
// Each stats block covers at least this many elements (8 per thread), and about kTargetBlocks
// blocks share the statistics pass (a few waves on a 132-SM GPU).
constexpr int64_t kMinChunk = 8 * kThreads;
constexpr int64_t kTargetBlocks = 2048;
constexpr int64_t kMaxChunks = 4096;

template <typename T>
using Stat = std::conditional_t<std::is_same_v<T, double>, double, float>;

int64_t ChunksPerGroup(const GroupNormArgs& a) {
  const int64_t group_count = a.batch * a.groups;
  const int64_t group_size = (a.c / a.groups) * a.inner;
  int64_t chunks = CeilDiv(group_size, kMinChunk);
  const int64_t fill = kTargetBlocks / group_count;
  if (chunks > fill) chunks = fill;
  if (chunks > kMaxChunks) chunks = kMaxChunks;
  return chunks < 1 ? 1 : chunks;
}

// partial[2 * (group * chunks + chunk) + {0, 1}] = sums of (x - k) and (x - k)^2 over the chunk.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    GroupNormPartialKernel(const T* x, int64_t group_size, int64_t chunks, int64_t chunk_len,
                           int64_t blocks, double* partial) {
  __shared__ double scratch[32];
  for (int64_t blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
    const int64_t group = blk / chunks, chunk = blk % chunks;
    const T* xg = x + group * group_size;
    const double k = static_cast<double>(ConvertTo<typename Compute<T>::type>(xg[0]));
    const int64_t begin = chunk * chunk_len;
    const int64_t end = begin + chunk_len < group_size ? begin + chunk_len : group_size;
    double s1 = 0, s2 = 0;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const double v = static_cast<double>(ConvertTo<typename Compute<T>::type>(xg[i])) - k;
      s1 += v;
      s2 += v * v;
    }
    s1 = BlockSum(s1, scratch);
    s2 = BlockSum(s2, scratch);
    if (threadIdx.x == 0) {
      partial[2 * blk] = s1;
      partial[2 * blk + 1] = s2;
    }
  }
}

// stats[2 * group + {0, 1}] = mean, rstd.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    GroupNormStatsKernel(const T* x, int64_t group_size, int64_t group_count, int64_t chunks,
                         const double* partial, double eps, double* stats) {
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < group_count;
       g += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s1 = 0, s2 = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      s1 += partial[2 * (g * chunks + c)];
      s2 += partial[2 * (g * chunks + c) + 1];
    }
    const double n = static_cast<double>(group_size);
    const double d = s1 / n;
    double var = s2 / n - d * d;
    if (var < 0) var = 0;
    stats[2 * g] = static_cast<double>(ConvertTo<typename Compute<T>::type>(x[g * group_size])) + d;
    stats[2 * g + 1] = 1.0 / sqrt(var + eps);
  }
}

// Block (kThreads), grid (position blocks, channel rows): rows loop by gridDim.y, positions by
// gridDim.x * kThreads, so any [B * C, inner] fits one launch.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    GroupNormApplyKernel(T* out, const T* x, const Stat<T>* weight, const Stat<T>* bias,
                         const double* stats, int64_t rows, int64_t c, int64_t per_group,
                         int64_t inner, bool silu) {
  using S = Stat<T>;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t ch = row % c, g = (row / c) * (c / per_group) + ch / per_group;
    const double a = stats[2 * g + 1] * (weight != nullptr ? static_cast<double>(weight[ch]) : 1.0);
    const S scale = static_cast<S>(a);
    const S shift =
        static_cast<S>((bias != nullptr ? static_cast<double>(bias[ch]) : 0.0) - stats[2 * g] * a);
    const T* xr = x + row * inner;
    T* orow = out + row * inner;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < inner;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      S y = ConvertTo<S>(xr[i]) * scale + shift;
      if (silu) y = y / (S(1) + exp(-y));
      orow[i] = ConvertTo<T>(y);
    }
  }
}

}  // namespace

size_t GroupNormWorkspaceBytes(const GroupNormArgs& a) {
  const int64_t group_count = a.batch * a.groups;
  return static_cast<size_t>(2 * group_count * (ChunksPerGroup(a) + 1)) * sizeof(double);
}

void LaunchGroupNorm(const GroupNormArgs& a, cudaStream_t s) {
  if (a.batch * a.c * a.inner == 0) return;
  if (a.groups < 1 || a.c % a.groups != 0) {
    ThrowCudaError("group_norm", "groups must divide the channels", __FILE__, __LINE__);
  }
  const int64_t group_count = a.batch * a.groups;
  const int64_t per_group = a.c / a.groups, group_size = per_group * a.inner;
  const int64_t chunks = ChunksPerGroup(a);
  const int64_t chunk_len = CeilDiv(group_size, chunks);
  double* partial = static_cast<double*>(a.workspace);
  double* stats = partial + 2 * group_count * chunks;
  const int64_t rows = a.batch * a.c;
  // Position blocks: 4 elements per thread, at most 65535 * 16 blocks along x.
  const unsigned grid_x = GridFor(a.inner, 4 * kThreads, 65535 * 16);
  const unsigned grid_y = static_cast<unsigned>(rows < 65535 ? rows : 65535);
  DispatchFloat(a.dtype, "group_norm", [&](auto tag) {
    using T = decltype(tag);
    using S = Stat<T>;
    const T* x = static_cast<const T*>(a.x);
    auto partial_kern = &GroupNormPartialKernel<T>;
    SDPO_LAUNCH(partial_kern, GridFor(group_count * chunks, 1, 65535 * 16), kThreads, 0, s, x,
                group_size, chunks, chunk_len, group_count * chunks, partial);
    SDPO_CHECK_LAUNCH("group_norm(partial sums)", s);
    auto stats_kern = &GroupNormStatsKernel<T>;
    SDPO_LAUNCH(stats_kern, GridFor(group_count, kThreads), kThreads, 0, s, x, group_size,
                group_count, chunks, static_cast<const double*>(partial), a.eps, stats);
    SDPO_CHECK_LAUNCH("group_norm(statistics)", s);
    auto apply_kern = &GroupNormApplyKernel<T>;
    SDPO_LAUNCH(apply_kern, dim3(grid_x, grid_y), kThreads, 0, s, static_cast<T*>(a.out), x,
                static_cast<const S*>(a.weight), static_cast<const S*>(a.bias),
                static_cast<const double*>(stats), rows, a.c, per_group, a.inner, a.silu);
    SDPO_CHECK_LAUNCH("group_norm(apply)", s);
  });
}

}  // namespace sdpo::cuda
