// Row reductions and softmax over contiguous [rows, cols], one block per row. Floating inputs
// accumulate in double and integers in int64, like the CPU oracle (tensor/cpu/reduce.cc).
#include <algorithm>
#include <cmath>

#include "tensor/cuda/device_common.cuh"

namespace sdpo::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
using Acc = std::conditional_t<std::is_floating_point_v<typename Compute<T>::type>, double,
                               int64_t>;

template <typename C>
SDPO_D bool IsNan(C v) {
  return v != v;
}

// (value, index) max with the CPU rule: the first NaN wins; else the largest, first on ties.
template <typename C>
SDPO_D void MaxCombine(C& best, int64_t& arg, C v, int64_t i) {
  if (i == INT64_MAX) return;
  if (arg == INT64_MAX) {
    best = v;
    arg = i;
    return;
  }
  const bool bn = IsNan(best), vn = IsNan(v);
  if (bn && vn) {
    if (i < arg) arg = i;
  } else if (vn) {
    best = v;
    arg = i;
  } else if (!bn) {
    if (v > best || (v == best && i < arg)) {
      best = v;
      arg = i;
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    ReduceKernel(int kind, void* out, const T* x, int64_t rows, int64_t cols,
                 int64_t correction) {
  using C = typename Compute<T>::type;
  using A = Acc<T>;
  __shared__ A scratch[32];
  __shared__ C vscratch[32];
  __shared__ int64_t iscratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * cols;
    if (kind == kRSum || kind == kRMean || kind == kRVar) {
      A s = 0;
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += static_cast<A>(ConvertTo<C>(row[c]));
      s = BlockSum(s, scratch);
      if (kind == kRVar) {
        if constexpr (std::is_floating_point_v<A>) {
          const double mean = static_cast<double>(s) / static_cast<double>(cols);
          double ss = 0;
          for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
            const double dlt = static_cast<double>(ConvertTo<C>(row[c])) - mean;
            ss += dlt * dlt;
          }
          ss = BlockSum<A>(ss, scratch);
          const double denom = static_cast<double>(cols - correction);
          if (threadIdx.x == 0) {
            static_cast<T*>(out)[r] = ConvertTo<T>(denom > 0 ? ss / denom : NAN);
          }
        }
      } else if (threadIdx.x == 0) {
        if (kind == kRMean) {
          static_cast<T*>(out)[r] = ConvertTo<T>(static_cast<double>(s) / static_cast<double>(cols));
        } else {
          static_cast<T*>(out)[r] = ConvertTo<T>(s);  // integers stay exact
        }
      }
    } else {  // max / argmax
      C best{};
      int64_t arg = INT64_MAX;
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        MaxCombine(best, arg, ConvertTo<C>(row[c]), c);
      }
      for (int o = 16; o > 0; o >>= 1) {
        C ob = __shfl_xor_sync(0xffffffffu, best, o);
        int64_t oa = __shfl_xor_sync(0xffffffffu, arg, o);
        MaxCombine(best, arg, ob, oa);
      }
      const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
      __syncthreads();
      if (lane == 0) {
        vscratch[warp] = best;
        iscratch[warp] = arg;
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        C b = vscratch[0];
        int64_t a = iscratch[0];
        for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) {
          MaxCombine(b, a, vscratch[w], iscratch[w]);
        }
        if (kind == kRMax) {
          static_cast<T*>(out)[r] = ConvertTo<T>(b);
        } else {
          static_cast<int64_t*>(out)[r] = a;
        }
      }
    }
  }
}

// Sum / mean of few long rows: block (chunk, row) sums columns [chunk * len, (chunk + 1) * len)
// into partial[row, chunk] (double), then one thread per row adds its chunks in order. The
// one-block-per-row kernel would run a 13.8M-column row (a weight's gradient norm) on one SM.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    ChunkSumKernel(double* partial, const T* x, int64_t cols, int64_t len) {
  using C = typename Compute<T>::type;
  __shared__ double scratch[32];
  const int64_t r = blockIdx.y, c0 = static_cast<int64_t>(blockIdx.x) * len;
  const int64_t c1 = c0 + len < cols ? c0 + len : cols;
  const T* row = x + r * cols;
  double s = 0;
  for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
    s += static_cast<double>(ConvertTo<C>(row[c]));
  }
  s = BlockSum(s, scratch);
  if (threadIdx.x == 0) partial[r * gridDim.x + blockIdx.x] = s;
}

template <typename T>
__global__ void FinishChunkSumKernel(T* out, const double* partial, int64_t rows, int chunks,
                                     int64_t cols, bool mean) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  double s = 0;
  for (int c = 0; c < chunks; ++c) s += partial[r * chunks + c];
  out[r] = ConvertTo<T>(mean ? s / static_cast<double>(cols) : s);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    SoftmaxKernel(T* out, const T* x, int64_t rows, int64_t cols, bool log) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  __shared__ C cscratch[32];
  __shared__ double dscratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * cols;
    T* orow = out + r * cols;
    C mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      C v = ConvertTo<C>(row[c]);
      mx = v > mx ? v : mx;  // like std::max(mx, v): NaN inputs do not replace mx
    }
    mx = BlockMax<C>(mx, cscratch, C(-INFINITY));
    if (mx == C(-INFINITY)) mx = 0;  // fully masked row: exp(-inf) = 0
    double sum = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      sum += exp(static_cast<double>(ConvertTo<C>(row[c]) - mx));
    }
    sum = BlockSum<double>(sum, dscratch);
    if (log) {
      // (x - max) - log(sum), as the CPU oracle: forming max + log(sum) first would round it
      // at the scale of the logits.
      const C log_sum = static_cast<C>(::log(sum));
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        orow[c] = ConvertTo<T>(static_cast<C>((ConvertTo<C>(row[c]) - mx) - log_sum));
      }
    } else {
      const C inv = static_cast<C>(1.0 / sum);
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        C e;
        if constexpr (std::is_same_v<C, double>) {
          e = exp(ConvertTo<C>(row[c]) - mx);
        } else {
          e = expf(ConvertTo<C>(row[c]) - mx);
        }
        orow[c] = ConvertTo<T>(static_cast<C>(e * inv));
      }
    }
  }
}

}  // namespace

void LaunchReduceRows(int kind, void* out, const void* x, int dtype, int64_t rows, int64_t cols,
                      int64_t correction, cudaStream_t s) {
  if (rows == 0) return;
  DispatchAll(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      ThrowCudaError("reduce", "reduction over a bool tensor (cast it first)", __FILE__, __LINE__);
    } else {
      auto kern = &ReduceKernel<T>;
      SDPO_LAUNCH(kern, GridFor(rows, 1, 65535 * 8), kThreads, 0, s, kind, out,
                  static_cast<const T*>(x), rows, cols, correction);
      SDPO_CHECK_LAUNCH("reduce_rows", s);
    }
  });
}

// Sum / mean over the middle dim of [outer, rows, cols]: a block covers 256 columns of one
// chunk of rows of one outer index (one thread per column, coalesced across the warp) and writes
// double partial sums; then one thread per output adds its chunks in order (deterministic).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    MiddleChunkKernel(double* partial, const T* x, int64_t rows, int64_t cols, int64_t len,
                      int chunks, int64_t col_blocks) {
  using C = typename Compute<T>::type;
  const int64_t bid = blockIdx.x;
  const int64_t cb = bid % col_blocks, chunk = (bid / col_blocks) % chunks;
  const int64_t a = bid / (col_blocks * chunks);
  const int64_t c = cb * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const int64_t r0 = chunk * len, r1 = r0 + len < rows ? r0 + len : rows;
  const T* p = x + a * rows * cols + c;
  double s = 0;
  for (int64_t r = r0; r < r1; ++r) s += static_cast<double>(ConvertTo<C>(p[r * cols]));
  partial[(a * chunks + chunk) * cols + c] = s;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    MiddleFinishKernel(T* out, const double* partial, int64_t outer, int64_t rows, int64_t cols,
                       int chunks, bool mean) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= outer * cols) return;
  const int64_t a = i / cols, c = i % cols;
  double s = 0;
  for (int k = 0; k < chunks; ++k) s += partial[(a * chunks + k) * cols + c];
  out[i] = ConvertTo<T>(mean ? s / static_cast<double>(rows) : s);
}

int ReduceMiddleChunks(int64_t outer, int64_t rows, int64_t cols) {
  const int64_t col_blocks = (cols + kThreads - 1) / kThreads;
  const int64_t want = 2048 / std::max<int64_t>(1, outer * col_blocks);
  const int64_t most = std::max<int64_t>(1, std::min<int64_t>(1024, (rows + 15) / 16));
  return static_cast<int>(std::max<int64_t>(1, std::min(want, most)));
}

void LaunchReduceMiddle(int kind, void* out, const void* x, double* partial, int chunks,
                        int dtype, int64_t outer, int64_t rows, int64_t cols, cudaStream_t s) {
  if (outer * cols == 0) return;
  const int64_t col_blocks = (cols + kThreads - 1) / kThreads;
  const int64_t len = (rows + chunks - 1) / chunks;
  DispatchFloat(dtype, "reduce_middle", [&](auto tag) {
    using T = decltype(tag);
    auto chunk_kern = &MiddleChunkKernel<T>;
    const int64_t blocks = outer * chunks * col_blocks;
    if (blocks > 0x7fffffff) {
      ThrowCudaError("reduce_middle", "too many blocks", __FILE__, __LINE__);
    }
    SDPO_LAUNCH(chunk_kern, static_cast<unsigned>(blocks), kThreads, 0, s, partial,
                static_cast<const T*>(x), rows, cols, len, chunks, col_blocks);
    SDPO_CHECK_LAUNCH("reduce_middle(chunks)", s);
    auto finish = &MiddleFinishKernel<T>;
    SDPO_LAUNCH(finish, static_cast<unsigned>(CeilDiv(outer * cols, kThreads)), kThreads, 0, s,
                static_cast<T*>(out), partial, outer, rows, cols, chunks, kind == kRMean);
    SDPO_CHECK_LAUNCH("reduce_middle(finish)", s);
  });
}

int ChunkedSumChunks(int kind, int dtype, int64_t rows, int64_t cols) {
  if (kind != kRSum && kind != kRMean) return 0;
  bool floating = false;
  DispatchAll(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, bool>) {
      floating = std::is_floating_point_v<typename Compute<T>::type>;
    }
  });
  if (!floating || rows == 0 || rows >= 128 || cols < 32768) return 0;
  // About 1024 blocks in all, each over at least 8192 columns.
  int64_t chunks = std::min<int64_t>(1024 / rows, cols / 8192);
  return static_cast<int>(std::max<int64_t>(chunks, 2));
}

void LaunchChunkedSumRows(int kind, void* out, const void* x, double* partial, int chunks,
                          int dtype, int64_t rows, int64_t cols, cudaStream_t s) {
  const int64_t len = (cols + chunks - 1) / chunks;
  DispatchAll(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, bool>) {
      auto chunk_kern = &ChunkSumKernel<T>;
      SDPO_LAUNCH(chunk_kern, dim3(chunks, static_cast<unsigned>(rows)), kThreads, 0, s, partial,
                  static_cast<const T*>(x), cols, len);
      SDPO_CHECK_LAUNCH("reduce_rows(chunks)", s);
      auto finish = &FinishChunkSumKernel<T>;
      SDPO_LAUNCH(finish, GridFor(rows, 128, 65535), 128, 0, s, static_cast<T*>(out), partial,
                  rows, chunks, cols, kind == kRMean);
      SDPO_CHECK_LAUNCH("reduce_rows(finish)", s);
    }
  });
}

void LaunchSoftmaxRows(void* out, const void* x, int dtype, int64_t rows, int64_t cols, bool log,
                       cudaStream_t s) {
  if (rows == 0 || cols == 0) return;
  DispatchFloat(dtype, "softmax", [&](auto tag) {
    using T = decltype(tag);
    auto kern = &SoftmaxKernel<T>;
    SDPO_LAUNCH(kern, GridFor(rows, 1, 65535 * 8), kThreads, 0, s, static_cast<T*>(out),
                static_cast<const T*>(x), rows, cols, log);
    SDPO_CHECK_LAUNCH("softmax_rows", s);
  });
}

}  // namespace sdpo::cuda
