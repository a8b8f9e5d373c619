// The C-style interface between the host side of the CUDA backend (backend.cc, Tensor-aware)
// and the kernels in the .cu files (which include no tensor or Abseil headers). Pointers are
// device pointers to the first element; strides and sizes are in elements. Every launcher
// checks its launch and throws sdpo::Error naming the kernel, file and line on failure.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/cuda/cuda_api.h"
#include "tensor/op_list.h"

namespace sdpo::cuda {

// Element type codes: equal to static_cast<int>(sdpo::DType) (checked in backend.cc).
enum DTypeCode : int { kCodeF32 = 0, kCodeF64, kCodeBF16, kCodeF16, kCodeI32, kCodeI64, kCodeBool };
// Op codes: built from the same lists as the ops:: enums (tensor/op_list.h), so equal by
// construction (backend.cc checks the counts).
#define SDPO_CODE_U(Name, str) kU##Name,
#define SDPO_CODE_B(Name, str) kB##Name,
#define SDPO_CODE_C(Name, str) kC##Name,
#define SDPO_CODE_R(Name, str) kR##Name,
enum UnaryCode : int { SDPO_UNARY_OPS(SDPO_CODE_U) kNumUnaryCodes };
enum BinaryCode : int { SDPO_BINARY_OPS(SDPO_CODE_B) kNumBinaryCodes };
enum CompareCode : int { SDPO_COMPARE_OPS(SDPO_CODE_C) kNumCompareCodes };
enum ReduceCode : int { SDPO_REDUCE_KINDS(SDPO_CODE_R) kNumReduceCodes };
#undef SDPO_CODE_U
#undef SDPO_CODE_B
#undef SDPO_CODE_C
#undef SDPO_CODE_R

constexpr int kMaxDims = 8;

// N operands of one shape (collapsed: size-1 dims dropped, mergeable dims merged).
struct Iter {
  int rank = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t numel = 0;
};
struct Operand {
  void* data = nullptr;
  int dtype = kCodeF32;
  int64_t strides[kMaxDims] = {};
};

[[noreturn]] void ThrowCudaError(const char* what, const char* detail, const char* file, int line);
// Throws if the last launch failed; with SDPO_CUDA_SYNC=1 it also synchronises the stream so
// that an asynchronous fault is reported at the kernel that caused it.
void CheckLaunch(const char* kernel, cudaStream_t stream, const char* file, int line);
#define SDPO_CHECK_LAUNCH(name, stream) ::sdpo::cuda::CheckLaunch(name, stream, __FILE__, __LINE__)

// --- elementwise.cu ---------------------------------------------------------------------------
// `value` holds one element of out's dtype (its bit pattern).
void LaunchFill(const Iter& it, const Operand& out, uint64_t value_bits, cudaStream_t s);
void LaunchCopy(const Iter& it, const Operand& dst, const Operand& src, cudaStream_t s);
void LaunchUnary(int op, const Iter& it, const Operand& out, const Operand& x, cudaStream_t s);
void LaunchBinary(int op, const Iter& it, const Operand& out, const Operand& a, const Operand& b,
                  cudaStream_t s);
void LaunchCompare(int op, const Iter& it, const Operand& out, const Operand& a,
                   const Operand& b, cudaStream_t s);
void LaunchWhere(const Iter& it, const Operand& out, const Operand& cond, const Operand& a,
                 const Operand& b, cudaStream_t s);
void LaunchClamp(const Iter& it, const Operand& out, const Operand& x, double lo, double hi,
                 cudaStream_t s);
// out contiguous, n elements: element i = Philox(seed, offset + i), see tensor/philox.h.
void LaunchPhilox(void* out, int dtype, int64_t n, uint64_t seed, uint64_t offset, bool normal,
                  cudaStream_t s);

// --- reduce.cu --------------------------------------------------------------------------------
// x contiguous [rows, cols]; out [rows] (i64 for argmax, else x's dtype).
void LaunchReduceRows(int kind, void* out, const void* x, int dtype, int64_t rows, int64_t cols,
                      int64_t correction, cudaStream_t s);
void LaunchSoftmaxRows(void* out, const void* x, int dtype, int64_t rows, int64_t cols, bool log,
                       cudaStream_t s);
// Sum / mean of few long float rows in two passes: > 0 chunks per row when that pays (else 0);
// partial holds rows * chunks doubles.
int ChunkedSumChunks(int kind, int dtype, int64_t rows, int64_t cols);
// Sum / mean over the middle dim of a contiguous float [outer, rows, cols] into out [outer,
// cols]; partial holds outer * chunks * cols doubles, chunks from ReduceMiddleChunks.
int ReduceMiddleChunks(int64_t outer, int64_t rows, int64_t cols);
void LaunchReduceMiddle(int kind, void* out, const void* x, double* partial, int chunks,
                        int dtype, int64_t outer, int64_t rows, int64_t cols, cudaStream_t s);
void LaunchChunkedSumRows(int kind, void* out, const void* x, double* partial, int chunks,
                          int dtype, int64_t rows, int64_t cols, cudaStream_t s);

// --- norm.cu ----------------------------------------------------------------------------------
// x, out contiguous [rows, d]; weight/bias [d] or null; stats [rows] f32 (f64 for f64 x).
// Optional AdaLN modulation (LayerNorm only): out = norm(x) * (1 + scale[b]) + shift[b] where
// b = row / rows_per_batch and shift/scale are contiguous [batches, d] (null: none).
struct NormFwdArgs {
  const void* x = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;
  const void* shift = nullptr;
  const void* scale = nullptr;
  int64_t rows_per_batch = 1;
  void* out = nullptr;
  void* mean = nullptr;  // LayerNorm only
  void* rstd = nullptr;
  int dtype = kCodeF32;
  int64_t rows = 0, d = 0;
  double eps = 1e-5;
  bool rms = false;
};
void LaunchNormForward(const NormFwdArgs& a, cudaStream_t s);
// dx [rows, d]; dweight/dbias [d] of x's dtype (null: not wanted). `workspace` holds at least
// NormBackwardWorkspaceBytes(...) bytes. With shift/scale given (the modulated forward),
// dy is the gradient of the modulated output and dshift/dscale [batches, d] are written too.
struct NormBwdArgs {
  const void* dy = nullptr;
  const void* x = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;   // modulated LayerNorm backward needs it for dscale
  const void* scale = nullptr;  // modulation (LayerNorm only)
  int64_t rows_per_batch = 1;
  const void* mean = nullptr;  // LayerNorm only
  const void* rstd = nullptr;
  void* dx = nullptr;
  void* dweight = nullptr;
  void* dbias = nullptr;
  void* dshift = nullptr;
  void* dscale = nullptr;
  int dtype = kCodeF32;
  int64_t rows = 0, d = 0;
  bool rms = false;
  void* workspace = nullptr;
};
size_t NormBackwardWorkspaceBytes(int64_t rows, int64_t d, int64_t rows_per_batch, int dtype);
void LaunchNormBackward(const NormBwdArgs& a, cudaStream_t s);

// --- conv.cu ----------------------------------------------------------------------------------
// out [batch, cout, to, ho, wo] = Conv3d(concat(history, x)) as Kernels::Conv3d: x [batch, cin,
// frames, h, w], history [batch, cin, history_frames, h, w] (null when history_frames == 0),
// weight [cout, cin, kt, kh, kw], bias [cout] or null; all contiguous of one dtype. pad_* are the
// "before" paddings (the output sizes imply the "after" ones).
struct Conv3dArgs {
  const void* x = nullptr;
  const void* history = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;
  void* out = nullptr;
  int dtype = kCodeF32;
  int64_t batch = 0, cin = 0, frames = 0, history_frames = 0, h = 0, w = 0;
  int64_t cout = 0, kt = 0, kh = 0, kw = 0;
  int64_t to = 0, ho = 0, wo = 0;
  int64_t stride_t = 1, stride_h = 1, stride_w = 1;
  int64_t pad_t = 0, pad_h = 0, pad_w = 0;
};
void LaunchConv3d(const Conv3dArgs& a, cudaStream_t s);
// x, out contiguous [outer, c, inner]; gamma [c] f32 (f64 for f64 x); see ops::ChannelRmsNorm.
void LaunchChannelRmsNorm(void* out, const void* x, const void* gamma, int dtype, int64_t outer,
                          int64_t c, int64_t inner, double eps, bool silu, cudaStream_t s);

// --- group_norm.cu ----------------------------------------------------------------------------
// x, out contiguous [batch, c, inner]; weight/bias [c] f32 (f64 for f64 x) or null; groups
// divides c; see ops::GroupNorm. `workspace` holds GroupNormWorkspaceBytes(args) bytes.
struct GroupNormArgs {
  const void* x = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;
  void* out = nullptr;
  void* workspace = nullptr;
  int dtype = kCodeF32;
  int64_t batch = 0, c = 0, inner = 0, groups = 1;
  double eps = 1e-5;
  bool silu = false;
};
size_t GroupNormWorkspaceBytes(const GroupNormArgs& a);
void LaunchGroupNorm(const GroupNormArgs& a, cudaStream_t s);

// --- rope.cu (also index ops) -----------------------------------------------------------------
// x, out contiguous [n, l, h, d]; cos/sin contiguous [l, d/2] of x's dtype.
void LaunchRope(void* out, const void* x, const void* cos, const void* sin, int dtype, int64_t n,
                int64_t l, int64_t h, int64_t d, bool interleaved, bool inverse, cudaStream_t s);
// out row i (stride out_stride) = x row index[i] (stride x_stride); rows of `inner` elements.
void LaunchIndexRows(void* out, int64_t out_stride, const void* x, int64_t x_stride,
                     const int64_t* index, int64_t count, int64_t inner, int dtype,
                     cudaStream_t s);
void LaunchIndexAddRows(void* out, int64_t out_stride, const int64_t* index, const void* src,
                        int64_t src_stride, int64_t count, int64_t inner, int dtype,
                        cudaStream_t s);
// [outer, n, inner] x / out, [outer, m, inner] out/index/src, contiguous.
void LaunchGather(void* out, const void* x, const int64_t* index, int64_t outer, int64_t m,
                  int64_t n, int64_t inner, int dtype, cudaStream_t s);
void LaunchScatterAdd(void* out, const int64_t* index, const void* src, int64_t outer, int64_t m,
                      int64_t n, int64_t inner, int dtype, cudaStream_t s);

// --- adamw.cu ---------------------------------------------------------------------------------
// One AdamW step over many tensors in one launch. param/exp_avg/exp_avg_sq are f32; grad is
// f32, bf16 or f16; `param_copy` (optional) receives the updated parameter in its own dtype.
struct AdamWTensor {
  float* param = nullptr;
  const void* grad = nullptr;
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  void* param_copy = nullptr;
  int64_t n = 0;
  int grad_dtype = kCodeF32;
  int copy_dtype = kCodeBF16;
};
struct AdamWHyper {
  float lr, beta1, beta2, eps, weight_decay;
  float bias_correction1, bias_correction2;  // 1 - beta^step
  float grad_scale;                          // gradients are multiplied by this first
};
// `table` is a device buffer of at least AdamWTableBytes(tensors, count) bytes; `host_table` a
// host (preferably pinned) buffer of the same size that stays valid until the launch completes.
size_t AdamWTableBytes(const AdamWTensor* tensors, int count);
void LaunchAdamW(const AdamWTensor* tensors, int count, const AdamWHyper& h, void* host_table,
                 void* table, cudaStream_t s);

// --- attention.cu -----------------------------------------------------------------------------
// q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv], out [B, H, Lq, Dv] contiguous; mask
// (optional) additive of q's dtype, element (b, h, i, j) at b*ms0 + h*ms1 + i*ms2 + j*ms3;
// lse [B, H, Lq] f32.
struct AttnArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* mask = nullptr;
  int64_t ms[4] = {0, 0, 0, 0};
  void* out = nullptr;
  float* lse = nullptr;
  int dtype = kCodeBF16;
  int64_t b = 0, h = 0, lq = 0, lk = 0, d = 0, dv = 0;
  double scale = 1.0;
  // backward
  const void* dout = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv_out = nullptr;
  void* workspace = nullptr;  // AttentionBackwardWorkspaceBytes(...)
  int force_path = 0;         // 0 auto, 1 simple (SIMT), 2 tensor cores
};
// Which path Auto picks: true for the tensor-core kernels (bf16/f16, D = Dv in {64, 128}).
bool AttentionUsesTensorCores(const AttnArgs& a);
void LaunchAttentionForward(const AttnArgs& a, cudaStream_t s);
size_t AttentionBackwardWorkspaceBytes(const AttnArgs& a);
void LaunchAttentionBackward(const AttnArgs& a, cudaStream_t s);

// --- gemm_fallback.cu (used where cuBLASLt is not: the CPU emulation, f64) ---------------------
// out [batch, m, n] = op(a) op(b) (+ bias[n]) (then gelu_tanh if gelu), row-major, strides as
// in tensor/kernels.h; a_batch_stride / b_batch_stride are 0 for a broadcast operand.
void LaunchGemmFallback(void* out, const void* a, bool trans_a, int64_t a_batch_stride,
                        const void* b, bool trans_b, int64_t b_batch_stride, const void* bias,
                        bool gelu, int dtype, int64_t batch, int64_t m, int64_t n, int64_t k,
                        cudaStream_t s);

}  // namespace sdpo::cuda
