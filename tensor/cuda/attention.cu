// Scaled dot-product attention, forward and backward, without materialising the Lq x Lk scores.
//
// Tensor-core path (bf16/f16, D = Dv in {64, 128}): FlashAttention-2 style kernels on
// mma.sync.m16n8k16 with f32 accumulation and f32 softmax statistics.
//   forward:  a block of 4 warps owns 64 query rows (16 per warp) and streams 64-key tiles of
//             K and V through shared memory with an online softmax (exp2 domain).
//   backward: a block owns 64 keys (16 per warp) and streams 32-query tiles of Q and dO:
//             dK and dV accumulate in registers; dQ accumulates in an f32 buffer with atomics
//             and is converted at the end. delta = rowsum(dO * O) is computed first.
// Simple path (any float dtype, D and Dv up to 256): one warp per query (or key) row on CUDA
// cores; the reference against which the fast path is also checked.
//
// lse is the natural-log log-sum-exp of the scaled, masked scores (-inf for a fully masked
// row, whose output is 0), exactly as the CPU oracle (tensor/cpu/attention.cc) defines it.
#include <cmath>

#include "tensor/cuda/device_common.cuh"

namespace sdpo::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct alignas(16) U4 {
  uint32_t x, y, z, w;
};

#ifdef SDPO_CUDA_EMULATE
#define SDPO_DYNAMIC_SMEM(name) \
  uint16_t* name = reinterpret_cast<uint16_t*>(::sdpo::emu::DynamicSmem())
#else
#define SDPO_DYNAMIC_SMEM(name)                  \
  extern __shared__ __align__(16) unsigned char name##_raw[]; \
  uint16_t* name = reinterpret_cast<uint16_t*>(name##_raw)
#endif

// d += a * b for one m16n8k16 tile (T = Bf16 or Half).
template <typename T>
SDPO_D void Mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#ifdef SDPO_CUDA_EMULATE
  ::sdpo::emu::Mma16816(std::is_same_v<T, Bf16>, d, a, b, d);
#else
  if constexpr (std::is_same_v<T, Bf16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
#endif
}

template <typename T>
SDPO_D uint32_t Pack2(float lo, float hi) {
  return static_cast<uint32_t>(ConvertTo<T>(lo).bits) |
         (static_cast<uint32_t>(ConvertTo<T>(hi).bits) << 16);
}
SDPO_D uint32_t Ld32(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }
SDPO_D uint32_t Ld2(const uint16_t* lo, const uint16_t* hi) {
  return static_cast<uint32_t>(*lo) | (static_cast<uint32_t>(*hi) << 16);
}
SDPO_D float Exp2(float x) {
#ifdef SDPO_CUDA_EMULATE
  return std::exp2(x);
#else
  return exp2f(x);
#endif
}

template <typename T>
SDPO_D float MaskAt(const AttnArgs& a, int64_t b, int64_t h, int64_t i, int64_t j) {
  const T* m = static_cast<const T*>(a.mask);
  return ConvertTo<float>(m[b * a.ms[0] + h * a.ms[1] + i * a.ms[2] + j * a.ms[3]]);
}

// Copies rows [row0, row0 + rows) of a [L, D] matrix into shared memory [rows][D + 8],
// zero-filling rows past L. 16-byte chunks; all threads of the block take part.
template <int D>
SDPO_D void LoadTile(uint16_t* dst, const uint16_t* src, int64_t row0, int64_t L, int rows) {
  constexpr int kChunks = D / 8;
  constexpr int LD = D + 8;
  for (int c = threadIdx.x; c < rows * kChunks; c += blockDim.x) {
    const int r = c / kChunks, cc = c % kChunks;
    U4 v{0, 0, 0, 0};
    if (row0 + r < L) v = *reinterpret_cast<const U4*>(src + (row0 + r) * D + cc * 8);
    *reinterpret_cast<U4*>(dst + r * LD + cc * 8) = v;
  }
}

// 16-byte asynchronous copy global -> shared (cp.async.cg), zero-filled when !valid (src is then
// not read). Completion is waited for per commit group; the emulation copies synchronously.
SDPO_D void CpAsync16(uint16_t* dst, const uint16_t* src, bool valid) {
#ifdef SDPO_CUDA_EMULATE
  U4 v{0, 0, 0, 0};
  if (valid) v = *reinterpret_cast<const U4*>(src);
  *reinterpret_cast<U4*>(dst) = v;
#else
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(src),
               "r"(valid ? 16 : 0));
#endif
}
SDPO_D void CpAsyncCommit() {
#ifndef SDPO_CUDA_EMULATE
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
SDPO_D void CpAsyncWait() {
#ifndef SDPO_CUDA_EMULATE
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// LoadTile with cp.async (rows past L zero-filled); the caller commits and waits.
template <int D>
SDPO_D void LoadTileAsync(uint16_t* dst, const uint16_t* src, int64_t row0, int64_t L, int rows) {
  constexpr int kChunks = D / 8;
  constexpr int LD = D + 8;
  for (int c = threadIdx.x; c < rows * kChunks; c += blockDim.x) {
    const int r = c / kChunks, cc = c % kChunks;
    const bool valid = row0 + r < L;
    CpAsync16(dst + r * LD + cc * 8, valid ? src + (row0 + r) * D + cc * 8 : src, valid);
  }
}

// ldmatrix.sync.aligned.m8n8.x4(.trans).shared.b16: four 8 x 8 matrices of 16-bit elements; lane
// l passes the address of row l % 8 of matrix l / 8 (16-byte aligned). Without trans, lane l gets
// r[j] = matrix j, row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 (low half first); with trans,
// r[j] = matrix j, rows 2 (l % 4) and 2 (l % 4) + 1, column l / 4. These are the A and B
// fragments of mma.m16n8k16 for row-major and column-major operands in shared memory.
// The emulation reads each lane's row and moves the elements with shuffles.
template <bool kTrans>
SDPO_D void LdMatrixX4(uint32_t (&r)[4], const uint16_t* row) {
#ifdef SDPO_CUDA_EMULATE
  const int lane = threadIdx.x % 32;
  uint32_t w[4];
  for (int i = 0; i < 4; ++i) w[i] = Ld32(row + 2 * i);
  for (int j = 0; j < 4; ++j) {
    if (!kTrans) {
      uint32_t got[4];
      for (int i = 0; i < 4; ++i) got[i] = __shfl_sync(0xffffffffu, w[i], 8 * j + lane / 4);
      r[j] = got[lane % 4];
    } else {
      const int src = 8 * j + 2 * (lane % 4), col = lane / 4;
      uint32_t lo[4], hi[4];
      for (int i = 0; i < 4; ++i) {
        lo[i] = __shfl_sync(0xffffffffu, w[i], src);
        hi[i] = __shfl_sync(0xffffffffu, w[i], src + 1);
      }
      const int shift = (col % 2) * 16;
      r[j] = ((lo[col / 2] >> shift) & 0xffffu) | (((hi[col / 2] >> shift) & 0xffffu) << 16);
    }
  }
#else
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  if constexpr (kTrans) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
  }
#endif
}

// This lane's row address offset within a 16 x 16 block of a [rows][ld] shared tile, for
// LdMatrixX4 with matrices ordered
//   rows first (rows 0-7, rows 8-15 of columns 0-7, then of columns 8-15): an A fragment a[0..3]
//     from row-major A [m][k]; with trans, two B fragments {r0, r1}, {r2, r3} (n-tiles 0 and 1)
//     from B stored [k][n];
//   columns first (columns 0-7, columns 8-15 of rows 0-7, then of rows 8-15): two B fragments
//     from B stored [n][k]; with trans, an A fragment from A stored [k][m].
SDPO_D int LdOffsetRowsFirst(int lane, int ld) {
  return ((lane & 7) + ((lane >> 3) & 1) * 8) * ld + (lane >> 4) * 8;
}
SDPO_D int LdOffsetColsFirst(int lane, int ld) {
  return ((lane & 7) + (lane >> 4) * 8) * ld + ((lane >> 3) & 1) * 8;
}

// ------------------------------------------------------------------------- tensor-core forward
constexpr int kFwdBr = 64, kFwdBc = 64;
static_assert(kFwdBr == kFwdBc, "the Q tile is staged in a K tile's place");

// Two stages of [K tile | V tile], each [kFwdBc][D + 8].
template <int D>
constexpr size_t FwdSmemBytes() {
  return static_cast<size_t>(4 * kFwdBc) * (D + 8) * 2;
}

// K/V tiles are double-buffered: the copy of tile i + 1 (cp.async) overlaps the math on tile i.
// Fragments come from shared memory through ldmatrix (V transposed on the fly).
template <typename T, int D>
__global__ void __launch_bounds__(128) FlashFwdKernel(AttnArgs a) {
  constexpr int LD = D + 8, kTile = kFwdBc * LD;
  SDPO_DYNAMIC_SMEM(smem);
  uint16_t* const stage[2] = {smem, smem + 2 * kTile};
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t bh = blockIdx.y, bi = bh / a.h, hi = bh % a.h;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kFwdBr;
  const uint16_t* q = static_cast<const uint16_t*>(a.q) + bh * a.lq * D;
  const uint16_t* k = static_cast<const uint16_t*>(a.k) + bh * a.lk * D;
  const uint16_t* v = static_cast<const uint16_t*>(a.v) + bh * a.lk * D;
  const int64_t tiles = (a.lk + kFwdBc - 1) / kFwdBc;
  // Group 0: the Q tile (in stage 1's K place); group 1: K/V tile 0.
  LoadTileAsync<D>(stage[1], q, q0, a.lq, kFwdBr);
  CpAsyncCommit();
  LoadTileAsync<D>(stage[0], k, 0, a.lk, kFwdBc);
  LoadTileAsync<D>(stage[0] + kTile, v, 0, a.lk, kFwdBc);
  CpAsyncCommit();
  CpAsyncWait<1>();
  __syncthreads();
  const int r0 = warp * 16;
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int ks_ = 0; ks_ < D / 16; ++ks_) {
    LdMatrixX4<false>(qf[ks_], stage[1] + r0 * LD + ks_ * 16 + LdOffsetRowsFirst(lane, LD));
  }
  __syncthreads();  // every warp holds its Q fragments before stage 1 is refilled
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const float sl2 = static_cast<float>(a.scale) * kLog2e;
  const int64_t row_g[2] = {q0 + r0 + g, q0 + r0 + g + 8};
  const int off_k = LdOffsetColsFirst(lane, LD), off_v = LdOffsetRowsFirst(lane, LD);
  for (int64_t it = 0; it < tiles; ++it) {
    const int64_t kb = it * kFwdBc;
    if (it + 1 < tiles) {
      uint16_t* next = stage[(it + 1) & 1];
      LoadTileAsync<D>(next, k, kb + kFwdBc, a.lk, kFwdBc);
      LoadTileAsync<D>(next + kTile, v, kb + kFwdBc, a.lk, kFwdBc);
    }
    CpAsyncCommit();  // possibly empty: keeps "all but the newest group" = tile it
    CpAsyncWait<1>();
    __syncthreads();
    const uint16_t* ks = stage[it & 1];
    const uint16_t* vs = ks + kTile;
    float s[kFwdBc / 8][4];
#pragma unroll
    for (int nt = 0; nt < kFwdBc / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
    for (int np = 0; np < kFwdBc / 16; ++np) {
#pragma unroll
      for (int ks_ = 0; ks_ < D / 16; ++ks_) {
        uint32_t kf[4];
        LdMatrixX4<false>(kf, ks + np * 16 * LD + ks_ * 16 + off_k);
        const uint32_t b0[2] = {kf[0], kf[1]}, b1[2] = {kf[2], kf[3]};
        Mma<T>(s[2 * np], qf[ks_], b0);
        Mma<T>(s[2 * np + 1], qf[ks_], b1);
      }
    }
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nt = 0; nt < kFwdBc / 8; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t col = kb + nt * 8 + 2 * t + (i & 1);
        const int64_t row = row_g[i >> 1];
        float x = s[nt][i] * sl2;
        if (col >= a.lk) {
          x = -INFINITY;
        } else if (a.mask != nullptr && row < a.lq) {
          x += MaskAt<T>(a, bi, hi, row, col) * kLog2e;
        }
        s[nt][i] = x;
        mx[i >> 1] = fmaxf(mx[i >> 1], x);
      }
    }
    float mu[2], corr[2], rsum[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      mu[r] = mx[r] == -INFINITY ? 0.f : mx[r];
      corr[r] = Exp2(m[r] - mu[r]);
      m[r] = mx[r];
    }
#pragma unroll
    for (int nt = 0; nt < kFwdBc / 8; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float p = Exp2(s[nt][i] - mu[i >> 1]);
        s[nt][i] = p;
        rsum[i >> 1] += p;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      rsum[r] += __shfl_xor_sync(0xffffffffu, rsum[r], 1);
      rsum[r] += __shfl_xor_sync(0xffffffffu, rsum[r], 2);
      l[r] = l[r] * corr[r] + rsum[r];
    }
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      o[dt][0] *= corr[0];
      o[dt][1] *= corr[0];
      o[dt][2] *= corr[1];
      o[dt][3] *= corr[1];
    }
#pragma unroll
    for (int kk = 0; kk < kFwdBc / 16; ++kk) {
      const uint32_t pa[4] = {Pack2<T>(s[2 * kk][0], s[2 * kk][1]),
                              Pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                              Pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              Pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t vf[4];
        LdMatrixX4<true>(vf, vs + kk * 16 * LD + dp * 16 + off_v);
        const uint32_t b0[2] = {vf[0], vf[1]}, b1[2] = {vf[2], vf[3]};
        Mma<T>(o[2 * dp], pa, b0);
        Mma<T>(o[2 * dp + 1], pa, b1);
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
  uint16_t* out = static_cast<uint16_t*>(a.out) + bh * a.lq * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = row_g[r];
    if (row >= a.lq) continue;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      *reinterpret_cast<uint32_t*>(out + row * D + dt * 8 + 2 * t) =
          Pack2<T>(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    }
    if (t == 0) {
      a.lse[bh * a.lq + row] = l[r] > 0.f ? m[r] * kLn2 + logf(l[r]) : -INFINITY;
    }
  }
}

// ------------------------------------------------------------------------ tensor-core backward
constexpr int kBwdBc = 64, kBwdBr = 32;

// K, V; two stages of [Q tile | dO tile]; dS^T; two stages of lse and delta.
template <int D>
constexpr size_t BwdSmemBytes() {
  return static_cast<size_t>(2 * kBwdBc + 4 * kBwdBr) * (D + 8) * 2 +
         static_cast<size_t>(kBwdBc) * (kBwdBr + 8) * 2 + 4 * kBwdBr * sizeof(float);
}

// Q/dO tiles are double-buffered (cp.async); fragments come through ldmatrix.
template <typename T, int D>
__global__ void __launch_bounds__(128)
    FlashBwdKernel(AttnArgs a, const float* delta, float* dq_acc) {
  constexpr int LD = D + 8, LDS = kBwdBr + 8, kQTile = kBwdBr * LD;
  SDPO_DYNAMIC_SMEM(smem);
  uint16_t* ks = smem;
  uint16_t* vs = ks + kBwdBc * LD;
  uint16_t* const qstage[2] = {vs + kBwdBc * LD, vs + kBwdBc * LD + 2 * kQTile};  // [Q | dO]
  uint16_t* dss = qstage[1] + 2 * kQTile;  // dS^T [key][query]
  float* const lse_stage[2] = {reinterpret_cast<float*>(dss + kBwdBc * LDS),
                               reinterpret_cast<float*>(dss + kBwdBc * LDS) + 2 * kBwdBr};
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t bh = blockIdx.y, bi = bh / a.h, hi = bh % a.h;
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kBwdBc;
  const uint16_t* q = static_cast<const uint16_t*>(a.q) + bh * a.lq * D;
  const uint16_t* dout = static_cast<const uint16_t*>(a.dout) + bh * a.lq * D;
  const uint16_t* k = static_cast<const uint16_t*>(a.k) + bh * a.lk * D;
  const uint16_t* v = static_cast<const uint16_t*>(a.v) + bh * a.lk * D;
  const int64_t tiles = (a.lq + kBwdBr - 1) / kBwdBr;
  // Stage `st` <- query tile `tile`: Q and dO by cp.async, lse (log2 domain) and delta by plain
  // stores (read after the next __syncthreads).
  auto prefetch = [&](int64_t tile, int st) {
    const int64_t qb = tile * kBwdBr;
    LoadTileAsync<D>(qstage[st], q, qb, a.lq, kBwdBr);
    LoadTileAsync<D>(qstage[st] + kQTile, dout, qb, a.lq, kBwdBr);
    if (threadIdx.x < kBwdBr) {
      const int64_t row = qb + threadIdx.x;
      lse_stage[st][threadIdx.x] = row < a.lq ? a.lse[bh * a.lq + row] * kLog2e : -INFINITY;
      lse_stage[st][kBwdBr + threadIdx.x] = row < a.lq ? delta[bh * a.lq + row] : 0.f;
    }
  };
  LoadTileAsync<D>(ks, k, k0, a.lk, kBwdBc);
  LoadTileAsync<D>(vs, v, k0, a.lk, kBwdBc);
  prefetch(0, 0);
  CpAsyncCommit();
  const int kr = warp * 16;
  const int64_t key_g[2] = {k0 + kr + g, k0 + kr + g + 8};
  const float sl2 = static_cast<float>(a.scale) * kLog2e;
  float dv[D / 8][4], dk[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) {
    dv[i][0] = dv[i][1] = dv[i][2] = dv[i][3] = 0.f;
    dk[i][0] = dk[i][1] = dk[i][2] = dk[i][3] = 0.f;
  }
  const int mt = warp & 1, nbase = (warp >> 1) * (D / 16);
  const int off_rows = LdOffsetRowsFirst(lane, LD), off_cols = LdOffsetColsFirst(lane, LD);
  for (int64_t it = 0; it < tiles; ++it) {
    const int64_t qb = it * kBwdBr;
    if (it + 1 < tiles) prefetch(it + 1, static_cast<int>((it + 1) & 1));
    CpAsyncCommit();
    CpAsyncWait<1>();
    __syncthreads();
    const uint16_t* qs = qstage[it & 1];
    const uint16_t* dos = qs + kQTile;
    const float* lse_s = lse_stage[it & 1];
    const float* delta_s = lse_s + kBwdBr;
    // S^T = K_w Q^T and dP^T = V_w dO^T: 16 keys x 32 queries per warp.
    float st[kBwdBr / 8][4], dpt[kBwdBr / 8][4];
#pragma unroll
    for (int nt = 0; nt < kBwdBr / 8; ++nt) {
      st[nt][0] = st[nt][1] = st[nt][2] = st[nt][3] = 0.f;
      dpt[nt][0] = dpt[nt][1] = dpt[nt][2] = dpt[nt][3] = 0.f;
    }
#pragma unroll
    for (int ks_ = 0; ks_ < D / 16; ++ks_) {
      uint32_t ka[4], va[4];
      LdMatrixX4<false>(ka, ks + kr * LD + ks_ * 16 + off_rows);
      LdMatrixX4<false>(va, vs + kr * LD + ks_ * 16 + off_rows);
#pragma unroll
      for (int np = 0; np < kBwdBr / 16; ++np) {
        uint32_t qf[4], df[4];
        LdMatrixX4<false>(qf, qs + np * 16 * LD + ks_ * 16 + off_cols);
        LdMatrixX4<false>(df, dos + np * 16 * LD + ks_ * 16 + off_cols);
        const uint32_t bq0[2] = {qf[0], qf[1]}, bq1[2] = {qf[2], qf[3]};
        const uint32_t bd0[2] = {df[0], df[1]}, bd1[2] = {df[2], df[3]};
        Mma<T>(st[2 * np], ka, bq0);
        Mma<T>(st[2 * np + 1], ka, bq1);
        Mma<T>(dpt[2 * np], va, bd0);
        Mma<T>(dpt[2 * np + 1], va, bd1);
      }
    }
    // P^T and dS^T (element: key row key_g[i >> 1], query column nt * 8 + 2t + (i & 1)).
#pragma unroll
    for (int nt = 0; nt < kBwdBr / 8; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int qi = nt * 8 + 2 * t + (i & 1);
        const int64_t query = qb + qi, key = key_g[i >> 1];
        float p = 0.f, ds = 0.f;
        if (key < a.lk && query < a.lq) {
          float x = st[nt][i] * sl2;
          if (a.mask != nullptr) x += MaskAt<T>(a, bi, hi, query, key) * kLog2e;
          const float l2 = lse_s[qi];
          p = l2 == -INFINITY ? 0.f : Exp2(x - l2);
          ds = p * (dpt[nt][i] - delta_s[qi]) * static_cast<float>(a.scale);
        }
        st[nt][i] = p;
        dpt[nt][i] = ds;
      }
    }
    // dV += P^T dO, dK += dS^T Q (k = queries).
#pragma unroll
    for (int kk = 0; kk < kBwdBr / 16; ++kk) {
      const uint32_t pa[4] = {Pack2<T>(st[2 * kk][0], st[2 * kk][1]),
                              Pack2<T>(st[2 * kk][2], st[2 * kk][3]),
                              Pack2<T>(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                              Pack2<T>(st[2 * kk + 1][2], st[2 * kk + 1][3])};
      const uint32_t da[4] = {Pack2<T>(dpt[2 * kk][0], dpt[2 * kk][1]),
                              Pack2<T>(dpt[2 * kk][2], dpt[2 * kk][3]),
                              Pack2<T>(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]),
                              Pack2<T>(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t df[4], qf[4];
        LdMatrixX4<true>(df, dos + kk * 16 * LD + dp * 16 + off_rows);
        LdMatrixX4<true>(qf, qs + kk * 16 * LD + dp * 16 + off_rows);
        const uint32_t bd0[2] = {df[0], df[1]}, bd1[2] = {df[2], df[3]};
        const uint32_t bq0[2] = {qf[0], qf[1]}, bq1[2] = {qf[2], qf[3]};
        Mma<T>(dv[2 * dp], pa, bd0);
        Mma<T>(dv[2 * dp + 1], pa, bd1);
        Mma<T>(dk[2 * dp], da, bq0);
        Mma<T>(dk[2 * dp + 1], da, bq1);
      }
    }
    // dS^T to shared memory for dQ.
#pragma unroll
    for (int nt = 0; nt < kBwdBr / 8; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = kr + g + ((i >> 1) << 3), col = nt * 8 + 2 * t + (i & 1);
        dss[row * LDS + col] = ConvertTo<T>(dpt[nt][i]).bits;
      }
    }
    __syncthreads();
    // dQ[32 x D] += dS[32 x 64 keys] K[64 x D]: warp -> query tile mt, D/16 column tiles.
    float dqa[D / 16][4];
#pragma unroll
    for (int j = 0; j < D / 16; ++j) dqa[j][0] = dqa[j][1] = dqa[j][2] = dqa[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kBwdBc / 16; ++kk) {
      uint32_t aq[4];
      LdMatrixX4<true>(aq, dss + kk * 16 * LDS + mt * 16 + LdOffsetColsFirst(lane, LDS));
#pragma unroll
      for (int jp = 0; jp < D / 32; ++jp) {
        uint32_t kf[4];
        LdMatrixX4<true>(kf, ks + kk * 16 * LD + (nbase + 2 * jp) * 8 + off_rows);
        const uint32_t bk0[2] = {kf[0], kf[1]}, bk1[2] = {kf[2], kf[3]};
        Mma<T>(dqa[2 * jp], aq, bk0);
        Mma<T>(dqa[2 * jp + 1], aq, bk1);
      }
    }
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t query = qb + mt * 16 + g + ((i >> 1) << 3);
        const int col = (nbase + j) * 8 + 2 * t + (i & 1);
        if (query < a.lq) atomicAdd(dq_acc + (bh * a.lq + query) * D + col, dqa[j][i]);
      }
    }
    __syncthreads();  // this stage and dS^T are free for the next prefetch and iteration
  }
  uint16_t* dkp = static_cast<uint16_t*>(a.dk) + bh * a.lk * D;
  uint16_t* dvp = static_cast<uint16_t*>(a.dv_out) + bh * a.lk * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t key = key_g[r];
    if (key >= a.lk) continue;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      *reinterpret_cast<uint32_t*>(dkp + key * D + dt * 8 + 2 * t) =
          Pack2<T>(dk[dt][2 * r], dk[dt][2 * r + 1]);
      *reinterpret_cast<uint32_t*>(dvp + key * D + dt * 8 + 2 * t) =
          Pack2<T>(dv[dt][2 * r], dv[dt][2 * r + 1]);
    }
  }
}

// ------------------------------------------------------------------------------- simple path
constexpr int kMaxPerLane = 8;  // D, Dv <= 256

template <typename T>
using SAcc = std::conditional_t<std::is_same_v<T, double>, double, float>;

SDPO_D float ExpA(float x) { return expf(x); }
SDPO_D double ExpA(double x) { return exp(x); }
SDPO_D float LogA(float x) { return logf(x); }
SDPO_D double LogA(double x) { return log(x); }

template <typename T>
SDPO_D SAcc<T> MaskA(const AttnArgs& a, int64_t b, int64_t h, int64_t i, int64_t j) {
  const T* m = static_cast<const T*>(a.mask);
  return ConvertTo<SAcc<T>>(m[b * a.ms[0] + h * a.ms[1] + i * a.ms[2] + j * a.ms[3]]);
}

// One warp per query row.
template <typename T>
__global__ void __launch_bounds__(128) SimpleFwdKernel(AttnArgs a) {
  using A = SAcc<T>;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * 4 + threadIdx.x / 32;
  const int64_t bh = blockIdx.y, bi = bh / a.h, hi = bh % a.h;
  if (row >= a.lq) return;  // whole warps leave together; no block barrier below
  const T* q = static_cast<const T*>(a.q) + (bh * a.lq + row) * a.d;
  const T* k = static_cast<const T*>(a.k) + bh * a.lk * a.d;
  const T* v = static_cast<const T*>(a.v) + bh * a.lk * a.dv;
  A qv[kMaxPerLane], acc[kMaxPerLane];
#pragma unroll
  for (int u = 0; u < kMaxPerLane; ++u) {
    const int64_t dd = lane + 32 * u;
    qv[u] = dd < a.d ? ConvertTo<A>(q[dd]) : A(0);
    acc[u] = 0;
  }
  A m = -INFINITY, l = 0;
  for (int64_t j = 0; j < a.lk; ++j) {
    A part = 0;
#pragma unroll
    for (int u = 0; u < kMaxPerLane; ++u) {
      const int64_t dd = lane + 32 * u;
      if (dd < a.d) part += qv[u] * ConvertTo<A>(k[j * a.d + dd]);
    }
    A s = WarpSum(part) * static_cast<A>(a.scale);
    if (a.mask != nullptr) s += MaskA<T>(a, bi, hi, row, j);
    if (s == A(-INFINITY)) continue;
    const A m_new = s > m ? s : m;
    const A corr = m == A(-INFINITY) ? A(0) : ExpA(m - m_new);
    const A p = ExpA(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int u = 0; u < kMaxPerLane; ++u) {
      const int64_t dd = lane + 32 * u;
      if (dd < a.dv) acc[u] = acc[u] * corr + p * ConvertTo<A>(v[j * a.dv + dd]);
    }
    m = m_new;
  }
  T* out = static_cast<T*>(a.out) + (bh * a.lq + row) * a.dv;
  const A inv = l > A(0) ? A(1) / l : A(0);
#pragma unroll
  for (int u = 0; u < kMaxPerLane; ++u) {
    const int64_t dd = lane + 32 * u;
    if (dd < a.dv) out[dd] = ConvertTo<T>(acc[u] * inv);
  }
  if (lane == 0) {
    a.lse[bh * a.lq + row] =
        l > A(0) ? static_cast<float>(m + LogA(l)) : static_cast<float>(-INFINITY);
  }
}

// delta[bh, i] = sum_d dO[bh, i, d] * O[bh, i, d], one warp per row.
template <typename T>
__global__ void __launch_bounds__(128) DeltaKernel(const T* dout, const T* out, SAcc<T>* delta,
                                                   int64_t rows, int64_t dv) {
  using A = SAcc<T>;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * 4 + threadIdx.x / 32;
  if (row >= rows) return;
  A s = 0;
  for (int64_t dd = lane; dd < dv; dd += 32) {
    s += ConvertTo<A>(dout[row * dv + dd]) * ConvertTo<A>(out[row * dv + dd]);
  }
  s = WarpSum(s);
  if (lane == 0) delta[row] = s;
}

// dQ: one warp per query row. For f64 the row's log-sum-exp is recomputed in double (the
// forward's lse is f32) and stored to lse64 for the dK/dV kernel.
template <typename T>
__global__ void __launch_bounds__(128)
    SimpleBwdDqKernel(AttnArgs a, const SAcc<T>* delta, double* lse64) {
  using A = SAcc<T>;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * 4 + threadIdx.x / 32;
  const int64_t bh = blockIdx.y, bi = bh / a.h, hi = bh % a.h;
  if (row >= a.lq) return;
  const T* q = static_cast<const T*>(a.q) + (bh * a.lq + row) * a.d;
  const T* dout = static_cast<const T*>(a.dout) + (bh * a.lq + row) * a.dv;
  const T* k = static_cast<const T*>(a.k) + bh * a.lk * a.d;
  const T* v = static_cast<const T*>(a.v) + bh * a.lk * a.dv;
  A qv[kMaxPerLane], dov[kMaxPerLane], dq[kMaxPerLane];
#pragma unroll
  for (int u = 0; u < kMaxPerLane; ++u) {
    const int64_t dd = lane + 32 * u;
    qv[u] = dd < a.d ? ConvertTo<A>(q[dd]) : A(0);
    dov[u] = dd < a.dv ? ConvertTo<A>(dout[dd]) : A(0);
    dq[u] = 0;
  }
  A lse = a.lse[bh * a.lq + row];
  if constexpr (std::is_same_v<T, double>) {
    A m = -INFINITY, l = 0;
    for (int64_t j = 0; j < a.lk; ++j) {
      A sp = 0;
#pragma unroll
      for (int u = 0; u < kMaxPerLane; ++u) {
        const int64_t dd = lane + 32 * u;
        if (dd < a.d) sp += qv[u] * ConvertTo<A>(k[j * a.d + dd]);
      }
      A s = WarpSum(sp) * static_cast<A>(a.scale);
      if (a.mask != nullptr) s += MaskA<T>(a, bi, hi, row, j);
      if (s == A(-INFINITY)) continue;
      const A m_new = s > m ? s : m;
      l = (m == A(-INFINITY) ? A(0) : l * ExpA(m - m_new)) + ExpA(s - m_new);
      m = m_new;
    }
    lse = l > A(0) ? m + LogA(l) : A(-INFINITY);
    if (lane == 0) lse64[bh * a.lq + row] = lse;
  }
  const A dl = delta[bh * a.lq + row];
  if (lse != A(-INFINITY)) {
    for (int64_t j = 0; j < a.lk; ++j) {
      A sp = 0, dpp = 0;
#pragma unroll
      for (int u = 0; u < kMaxPerLane; ++u) {
        const int64_t dd = lane + 32 * u;
        if (dd < a.d) sp += qv[u] * ConvertTo<A>(k[j * a.d + dd]);
        if (dd < a.dv) dpp += dov[u] * ConvertTo<A>(v[j * a.dv + dd]);
      }
      A s = WarpSum(sp) * static_cast<A>(a.scale);
      const A dp = WarpSum(dpp);
      if (a.mask != nullptr) s += MaskA<T>(a, bi, hi, row, j);
      const A p = ExpA(s - lse);
      const A ds = p * (dp - dl) * static_cast<A>(a.scale);
#pragma unroll
      for (int u = 0; u < kMaxPerLane; ++u) {
        const int64_t dd = lane + 32 * u;
        if (dd < a.d) dq[u] += ds * ConvertTo<A>(k[j * a.d + dd]);
      }
    }
  }
  T* dqp = static_cast<T*>(a.dq) + (bh * a.lq + row) * a.d;
#pragma unroll
  for (int u = 0; u < kMaxPerLane; ++u) {
    const int64_t dd = lane + 32 * u;
    if (dd < a.d) dqp[dd] = ConvertTo<T>(dq[u]);
  }
}

// dK, dV: one warp per key row.
template <typename T>
__global__ void __launch_bounds__(128)
    SimpleBwdDkvKernel(AttnArgs a, const SAcc<T>* delta, const double* lse64) {
  using A = SAcc<T>;
  const int lane = threadIdx.x % 32;
  const int64_t key = static_cast<int64_t>(blockIdx.x) * 4 + threadIdx.x / 32;
  const int64_t bh = blockIdx.y, bi = bh / a.h, hi = bh % a.h;
  if (key >= a.lk) return;
  const T* q = static_cast<const T*>(a.q) + bh * a.lq * a.d;
  const T* dout = static_cast<const T*>(a.dout) + bh * a.lq * a.dv;
  const T* k = static_cast<const T*>(a.k) + (bh * a.lk + key) * a.d;
  const T* v = static_cast<const T*>(a.v) + (bh * a.lk + key) * a.dv;
  A kv[kMaxPerLane], vv[kMaxPerLane], dk[kMaxPerLane], dv[kMaxPerLane];
#pragma unroll
  for (int u = 0; u < kMaxPerLane; ++u) {
    const int64_t dd = lane + 32 * u;
    kv[u] = dd < a.d ? ConvertTo<A>(k[dd]) : A(0);
    vv[u] = dd < a.dv ? ConvertTo<A>(v[dd]) : A(0);
    dk[u] = 0;
    dv[u] = 0;
  }
  for (int64_t i = 0; i < a.lq; ++i) {
    A lse;
    if constexpr (std::is_same_v<T, double>) {
      lse = lse64[bh * a.lq + i];
    } else {
      lse = a.lse[bh * a.lq + i];
    }
    if (lse == A(-INFINITY)) continue;
    A sp = 0, dpp = 0;
#pragma unroll
    for (int u = 0; u < kMaxPerLane; ++u) {
      const int64_t dd = lane + 32 * u;
      if (dd < a.d) sp += kv[u] * ConvertTo<A>(q[i * a.d + dd]);
      if (dd < a.dv) dpp += vv[u] * ConvertTo<A>(dout[i * a.dv + dd]);
    }
    A s = WarpSum(sp) * static_cast<A>(a.scale);
    const A dp = WarpSum(dpp);
    if (a.mask != nullptr) s += MaskA<T>(a, bi, hi, i, key);
    const A p = ExpA(s - lse);
    const A ds = p * (dp - static_cast<A>(delta[bh * a.lq + i])) * static_cast<A>(a.scale);
#pragma unroll
    for (int u = 0; u < kMaxPerLane; ++u) {
      const int64_t dd = lane + 32 * u;
      if (dd < a.d) dk[u] += ds * ConvertTo<A>(q[i * a.d + dd]);
      if (dd < a.dv) dv[u] += p * ConvertTo<A>(dout[i * a.dv + dd]);
    }
  }
  T* dkp = static_cast<T*>(a.dk) + (bh * a.lk + key) * a.d;
  T* dvp = static_cast<T*>(a.dv_out) + (bh * a.lk + key) * a.dv;
#pragma unroll
  for (int u = 0; u < kMaxPerLane; ++u) {
    const int64_t dd = lane + 32 * u;
    if (dd < a.d) dkp[dd] = ConvertTo<T>(dk[u]);
    if (dd < a.dv) dvp[dd] = ConvertTo<T>(dv[u]);
  }
}

template <typename T>
__global__ void __launch_bounds__(256) F32ToKernel(T* out, const float* in, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = ConvertTo<T>(in[i]);
  }
}

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

void CheckShapes(const AttnArgs& a) {
  if (a.b * a.h > 65535) {
    ThrowCudaError("attention", "batch * heads must be at most 65535", __FILE__, __LINE__);
  }
  if (CeilDiv(a.lq, 4) > 2147483647LL || CeilDiv(a.lk, 4) > 2147483647LL) {
    ThrowCudaError("attention", "sequence too long", __FILE__, __LINE__);
  }
}

bool UseTensorCores(const AttnArgs& a, bool backward) {
  if (a.force_path == 1) return false;
  const bool ok = (a.dtype == kCodeBF16 || a.dtype == kCodeF16) && a.d == a.dv &&
                  (a.d == 64 || a.d == 128) && Aligned16(a.q) && Aligned16(a.k) &&
                  Aligned16(a.v) && (!backward || Aligned16(a.dout));
  if (a.force_path == 2 && !ok) {
    ThrowCudaError("attention", "tensor-core path forced for unsupported arguments", __FILE__,
                   __LINE__);
  }
  return ok;
}

template <typename Kern>
void AllowSmem(Kern kern, size_t bytes) {
  if (bytes > 48 * 1024) {
    cudaError_t e =
        cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(bytes));
    if (e != cudaSuccess) {
      ThrowCudaError("cudaFuncSetAttribute (attention)", cudaGetErrorString(e), __FILE__,
                     __LINE__);
    }
  }
}

template <typename T, int D>
void FwdTc(const AttnArgs& a, cudaStream_t s) {
  auto kern = &FlashFwdKernel<T, D>;
  constexpr size_t smem = FwdSmemBytes<D>();
  AllowSmem(kern, smem);
  dim3 grid(static_cast<unsigned>(CeilDiv(a.lq, kFwdBr)), static_cast<unsigned>(a.b * a.h));
  SDPO_LAUNCH(kern, grid, 128, smem, s, a);
  SDPO_CHECK_LAUNCH("flash_attention_forward", s);
}

template <typename T, int D>
void BwdTc(const AttnArgs& a, const float* delta, float* dq_acc, cudaStream_t s) {
  auto kern = &FlashBwdKernel<T, D>;
  constexpr size_t smem = BwdSmemBytes<D>();
  AllowSmem(kern, smem);
  dim3 grid(static_cast<unsigned>(CeilDiv(a.lk, kBwdBc)), static_cast<unsigned>(a.b * a.h));
  SDPO_LAUNCH(kern, grid, 128, smem, s, a, delta, dq_acc);
  SDPO_CHECK_LAUNCH("flash_attention_backward", s);
}

}  // namespace

bool AttentionUsesTensorCores(const AttnArgs& a) { return UseTensorCores(a, false); }

void LaunchAttentionForward(const AttnArgs& a, cudaStream_t s) {
  if (a.b * a.h * a.lq == 0) return;
  CheckShapes(a);
  if (UseTensorCores(a, false)) {
    if (a.dtype == kCodeBF16) {
      a.d == 64 ? FwdTc<Bf16, 64>(a, s) : FwdTc<Bf16, 128>(a, s);
    } else {
      a.d == 64 ? FwdTc<Half, 64>(a, s) : FwdTc<Half, 128>(a, s);
    }
    return;
  }
  if (a.d > 32 * kMaxPerLane || a.dv > 32 * kMaxPerLane) {
    ThrowCudaError("attention", "head dim over 256 is not supported on CUDA", __FILE__, __LINE__);
  }
  DispatchFloat(a.dtype, "attention", [&](auto tag) {
    using T = decltype(tag);
    auto kern = &SimpleFwdKernel<T>;
    dim3 grid(static_cast<unsigned>(CeilDiv(a.lq, 4)), static_cast<unsigned>(a.b * a.h));
    SDPO_LAUNCH(kern, grid, 128, 0, s, a);
    SDPO_CHECK_LAUNCH("attention_forward_simple", s);
  });
}

size_t AttentionBackwardWorkspaceBytes(const AttnArgs& a) {
  const size_t rows = static_cast<size_t>(a.b * a.h * a.lq);
  size_t bytes = (rows * sizeof(double) + 255) / 256 * 256;  // delta (f32, f64 for f64)
  if (UseTensorCores(a, true)) {
    bytes += rows * static_cast<size_t>(a.d) * sizeof(float);  // dQ accumulator
  } else if (a.dtype == kCodeF64) {
    bytes += rows * sizeof(double);  // exact lse
  }
  return bytes;
}

void LaunchAttentionBackward(const AttnArgs& a, cudaStream_t s) {
  if (a.b * a.h == 0) return;
  CheckShapes(a);
  const int64_t rows = a.b * a.h * a.lq;
  void* delta = a.workspace;
  float* dq_acc = reinterpret_cast<float*>(static_cast<char*>(a.workspace) +
                                           (rows * sizeof(double) + 255) / 256 * 256);
  if (a.lk == 0 || a.lq == 0) {
    ThrowCudaError("attention backward", "empty sequence", __FILE__, __LINE__);
  }
  DispatchFloat(a.dtype, "attention backward", [&](auto tag) {
    using T = decltype(tag);
    auto kern = &DeltaKernel<T>;
    SDPO_LAUNCH(kern, GridFor(rows, 4, 2147483647LL), 128, 0, s,
                static_cast<const T*>(a.dout), static_cast<const T*>(a.out),
                static_cast<SAcc<T>*>(delta), rows, a.dv);
    SDPO_CHECK_LAUNCH("attention_backward_delta", s);
  });
  if (UseTensorCores(a, true)) {
    const size_t dq_bytes = static_cast<size_t>(rows) * a.d * sizeof(float);
    cudaError_t e = cudaMemsetAsync(dq_acc, 0, dq_bytes, s);
    if (e != cudaSuccess) ThrowCudaError("cudaMemsetAsync", cudaGetErrorString(e), __FILE__, __LINE__);
    if (a.dtype == kCodeBF16) {
      const float* df = static_cast<const float*>(delta);
      a.d == 64 ? BwdTc<Bf16, 64>(a, df, dq_acc, s) : BwdTc<Bf16, 128>(a, df, dq_acc, s);
    } else {
      const float* df = static_cast<const float*>(delta);
      a.d == 64 ? BwdTc<Half, 64>(a, df, dq_acc, s) : BwdTc<Half, 128>(a, df, dq_acc, s);
    }
    const int64_t n = rows * a.d;
    if (a.dtype == kCodeBF16) {
      auto kern = &F32ToKernel<Bf16>;
      SDPO_LAUNCH(kern, GridFor(n, 256), 256, 0, s, static_cast<Bf16*>(a.dq), dq_acc, n);
    } else {
      auto kern = &F32ToKernel<Half>;
      SDPO_LAUNCH(kern, GridFor(n, 256), 256, 0, s, static_cast<Half*>(a.dq), dq_acc, n);
    }
    SDPO_CHECK_LAUNCH("attention_backward_dq_convert", s);
    return;
  }
  if (a.d > 32 * kMaxPerLane || a.dv > 32 * kMaxPerLane) {
    ThrowCudaError("attention backward", "head dim over 256 is not supported on CUDA", __FILE__,
                   __LINE__);
  }
  DispatchFloat(a.dtype, "attention backward", [&](auto tag) {
    using T = decltype(tag);
    auto kq = &SimpleBwdDqKernel<T>;
    dim3 gq(static_cast<unsigned>(CeilDiv(a.lq, 4)), static_cast<unsigned>(a.b * a.h));
    double* lse64 = a.dtype == kCodeF64 ? reinterpret_cast<double*>(dq_acc) : nullptr;
    SDPO_LAUNCH(kq, gq, 128, 0, s, a, static_cast<const SAcc<T>*>(delta), lse64);
    SDPO_CHECK_LAUNCH("attention_backward_dq_simple", s);
    auto kkv = &SimpleBwdDkvKernel<T>;
    dim3 gk(static_cast<unsigned>(CeilDiv(a.lk, 4)), static_cast<unsigned>(a.b * a.h));
    SDPO_LAUNCH(kkv, gk, 128, 0, s, a, static_cast<const SAcc<T>*>(delta),
                static_cast<const double*>(lse64));
    SDPO_CHECK_LAUNCH("attention_backward_dkv_simple", s);
  });
}

}  // namespace sdpo::cuda
