// A CPU emulation of the subset of CUDA C++ that sdpo's kernels use, so that the same kernel
// sources (tensor/cuda/*.cu) compile with g++ (-DSDPO_CUDA_EMULATE) and run here, on machines
// without a GPU. Each block runs its threads as cooperative fibers (ucontext) on one OS thread;
// __syncthreads, __syncwarp and the warp shuffles are real barriers, so a missing barrier, a
// shuffle reached by only part of a warp, or a block-wide barrier that some threads skip shows
// up as a deadlock report instead of passing silently. Blocks run one after another, which is
// why `__shared__` can be `static` storage.
//
// Not emulated: timing, memory coalescing, races between blocks (blocks are serial), and
// inline PTX (kernels provide an emulated path for each PTX helper, e.g. Mma in
// tensor/cuda/attention.cu).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)
#define __grid_constant__

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};

namespace sdpo::emu {

const uint3& ThreadIdx();
const uint3& BlockIdx();
const dim3& BlockDim();
const dim3& GridDim();
int LaneId();
void SyncThreads();
void SyncWarp();
void* DynamicSmem();
// Per-warp scratch of 32 lanes x 8 words used by the shuffle and mma emulations.
uint32_t* WarpScratch();

// Runs `body` once per thread of every block. `kernel` identifies the kernel for the dynamic
// shared memory limit set through cudaFuncSetAttribute.
void Launch(const void* kernel, dim3 grid, dim3 block, size_t dynamic_smem,
            const std::function<void()>& body);
void SetMaxDynamicSmem(const void* kernel, int bytes);

template <typename T>
T WarpExchange(T v, int src_lane) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  uint32_t* s = WarpScratch();
  const int lane = LaneId();
  uint32_t words[2] = {0, 0};
  std::memcpy(words, &v, sizeof(T));
  s[lane * 8] = words[0];
  s[lane * 8 + 1] = words[1];
  SyncWarp();
  words[0] = s[src_lane * 8];
  words[1] = s[src_lane * 8 + 1];
  SyncWarp();
  T out;
  std::memcpy(&out, words, sizeof(T));
  return out;
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 with the PTX fragment layout.
void Mma16816(bool bf16, float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]);

}  // namespace sdpo::emu

#define threadIdx (::sdpo::emu::ThreadIdx())
#define blockIdx (::sdpo::emu::BlockIdx())
#define blockDim (::sdpo::emu::BlockDim())
#define gridDim (::sdpo::emu::GridDim())

inline void __syncthreads() { ::sdpo::emu::SyncThreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::sdpo::emu::SyncWarp(); }

template <typename T>
inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
  const int lane = ::sdpo::emu::LaneId();
  return ::sdpo::emu::WarpExchange(v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  const int lane = ::sdpo::emu::LaneId();
  int src = lane ^ mask;
  if (src >= ((lane & ~(width - 1)) + width)) src = lane;
  return ::sdpo::emu::WarpExchange(v, src);
}
template <typename T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = ::sdpo::emu::LaneId();
  int src = lane + static_cast<int>(delta);
  if (src >= ((lane & ~(width - 1)) + width)) src = lane;
  return ::sdpo::emu::WarpExchange(v, src);
}

// Atomics: fibers of one OS thread never interleave inside these.
inline float atomicAdd(float* p, float v) {
  float old = *p;
  *p = old + v;
  return old;
}
inline double atomicAdd(double* p, double v) {
  double old = *p;
  *p = old + v;
  return old;
}
inline int atomicAdd(int* p, int v) {
  int old = *p;
  *p = old + v;
  return old;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  unsigned old = *p;
  *p = old + v;
  return old;
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  unsigned long long old = *p;
  *p = old + v;
  return old;
}
inline unsigned atomicCAS(unsigned* p, unsigned compare, unsigned v) {
  unsigned old = *p;
  if (old == compare) *p = v;
  return old;
}

inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
