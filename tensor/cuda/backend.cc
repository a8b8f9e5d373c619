// The CUDA backend: a DeviceBackend (caching allocator, staged host <-> device copies) and a
// Kernels implementation, both registered at static-initialisation time only when a GPU is
// present (cudaGetDeviceCount succeeds with at least one device). Without a GPU nothing is
// registered and CUDA tensors fail with a clear error, while everything runs on the CPU.
//
// The host side lays operands out for the kernels in the .cu files (tensor/cuda/launchers.h):
// elementwise operands are collapsed (size-1 dims dropped, dims contiguous in every operand
// merged) to at most kMaxDims dims; more than that are split over the outermost dim.
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "tensor/cpu/scalar.h"
#include "tensor/cuda/allocator.h"
#include "tensor/cuda/cuda_ops.h"
#include "tensor/cuda/cuda_runtime.h"
#include "tensor/cuda/cudnn_attention.h"
#include "tensor/cuda/cudnn_conv.h"
#include "tensor/cuda/launchers.h"
#include "tensor/kernels.h"
#include "tensor/storage.h"

namespace sdpo::cuda {

// The .cu files use their own codes; they must equal the library's enums.
static_assert(kCodeF32 == static_cast<int>(DType::kF32) &&
              kCodeF64 == static_cast<int>(DType::kF64) &&
              kCodeBF16 == static_cast<int>(DType::kBF16) &&
              kCodeF16 == static_cast<int>(DType::kF16) &&
              kCodeI32 == static_cast<int>(DType::kI32) &&
              kCodeI64 == static_cast<int>(DType::kI64) &&
              kCodeBool == static_cast<int>(DType::kBool));
// Built from the same lists (tensor/op_list.h); the counts catch a list edited on one side.
static_assert(kNumUnaryCodes == ops::kNumUnaryOps && kNumBinaryCodes == ops::kNumBinaryOps &&
              kNumCompareCodes == ops::kNumCompareOps && kNumReduceCodes == kNumReduceKinds);
static_assert(kUTanhGradFromOutput == static_cast<int>(ops::UnaryOp::kTanhGradFromOutput) &&
              kBMinimum == static_cast<int>(ops::BinaryOp::kMinimum) &&
              kCGe == static_cast<int>(ops::CompareOp::kGe) &&
              kRVar == static_cast<int>(ReduceKind::kVar));

namespace {

int Code(DType t) { return static_cast<int>(t); }
int Dev(const Tensor& t) { return t.device().index; }
cudaStream_t StreamOf(const Tensor& t) { return CurrentStream(Dev(t)); }

void CheckCuda(const Tensor& t, const char* op) {
  SDPO_CHECK(t.device().is_cuda(), op, " (cuda): tensor ", t.str(), " is not on a CUDA device");
}

// A scratch buffer from the caching allocator, released (stream-ordered) with the tensor.
Tensor Workspace(size_t bytes, Device device) {
  return Tensor::Empty({static_cast<int64_t>(bytes == 0 ? 1 : bytes)}, kBool, device);
}

// ----------------------------------------------------------------------- elementwise layout

template <size_t N>
bool Collapse(const std::array<const Tensor*, N>& ts, Iter* it, std::array<Operand, N>* ops) {
  const Shape& shape = ts[0]->shape();
  std::vector<int64_t> sizes;
  std::array<std::vector<int64_t>, N> strides;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !sizes.empty();
    for (size_t k = 0; k < N && merge; ++k) {
      merge = strides[k].back() == ts[k]->stride(d) * shape[d];
    }
    if (merge) {
      sizes.back() *= shape[d];
      for (size_t k = 0; k < N; ++k) strides[k].back() = ts[k]->stride(d);
    } else {
      sizes.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) strides[k].push_back(ts[k]->stride(d));
    }
  }
  if (sizes.empty()) {
    sizes.push_back(1);
    for (size_t k = 0; k < N; ++k) strides[k].push_back(1);
  }
  if (sizes.size() > static_cast<size_t>(kMaxDims)) return false;
  it->rank = static_cast<int>(sizes.size());
  it->numel = 1;
  for (int i = 0; i < it->rank; ++i) {
    it->sizes[i] = sizes[i];
    it->numel *= sizes[i];
  }
  for (size_t k = 0; k < N; ++k) {
    (*ops)[k].data = ts[k]->raw_data();
    (*ops)[k].dtype = Code(ts[k]->dtype());
    for (int i = 0; i < it->rank; ++i) (*ops)[k].strides[i] = strides[k][i];
  }
  return true;
}

// Calls launch(iter, operands) over the operands (same shape), splitting the outermost dim
// when the collapsed layout has more than kMaxDims dims.
template <size_t N, typename Launch>
void ForElementwise(const std::array<Tensor, N>& ts, Launch launch) {
  if (ts[0].numel() == 0) return;
  std::array<const Tensor*, N> ptrs;
  for (size_t k = 0; k < N; ++k) ptrs[k] = &ts[k];
  Iter it;
  std::array<Operand, N> ops;
  if (Collapse<N>(ptrs, &it, &ops)) {
    launch(it, ops);
    return;
  }
  for (int64_t i = 0; i < ts[0].size(0); ++i) {
    std::array<Tensor, N> sub;
    for (size_t k = 0; k < N; ++k) sub[k] = ops::Select(ts[k], 0, i);
    ForElementwise<N>(sub, launch);
  }
}

uint64_t ValueBits(double value, DType dtype) {
  uint64_t bits = 0;
  cpu::StoreFromDouble(&bits, dtype, value);
  return bits;
}

// ---------------------------------------------------------------------------- norms

Tensor StatsAs(const Tensor& t, DType x_dtype) {
  return ops::Contiguous(ops::Cast(t, x_dtype == kF64 ? kF64 : kF32));
}
Tensor ParamAs(const Tensor& t) { return t.defined() ? ops::Contiguous(t) : t; }
const void* PtrOr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

ops::NormResult NormForward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                            const Tensor& shift, const Tensor& scale, int64_t rows_per_batch,
                            double eps, bool rms) {
  CheckCuda(x, rms ? "rms_norm" : "layer_norm");
  DeviceGuard guard(Dev(x));
  const int64_t rows = x.size(0), d = x.size(1);
  const DType stat = x.dtype() == kF64 ? kF64 : kF32;
  ops::NormResult r;
  r.out = Tensor::Empty(x.shape(), x.dtype(), x.device());
  if (!rms) r.mean = Tensor::Empty({rows}, stat, x.device());
  r.rstd = Tensor::Empty({rows}, stat, x.device());
  Tensor w = ParamAs(weight), b = ParamAs(bias), sh = ParamAs(shift), sc = ParamAs(scale);
  NormFwdArgs a;
  a.x = x.raw_data();
  a.weight = PtrOr(w);
  a.bias = PtrOr(b);
  a.shift = PtrOr(sh);
  a.scale = PtrOr(sc);
  a.rows_per_batch = rows_per_batch > 0 ? rows_per_batch : std::max<int64_t>(rows, 1);
  a.out = r.out.raw_data();
  a.mean = rms ? nullptr : r.mean.raw_data();
  a.rstd = r.rstd.raw_data();
  a.dtype = Code(x.dtype());
  a.rows = rows;
  a.d = d;
  a.eps = eps;
  a.rms = rms;
  LaunchNormForward(a, StreamOf(x));
  return r;
}

struct NormBackwardResult {
  Tensor dx, dweight, dbias, dshift, dscale;
};

NormBackwardResult NormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                const Tensor& bias, const Tensor& scale, int64_t rows_per_batch,
                                const Tensor& mean, const Tensor& rstd, bool need_weight,
                                bool need_bias, bool modulated, bool rms) {
  CheckCuda(x, rms ? "rms_norm backward" : "layer_norm backward");
  DeviceGuard guard(Dev(x));
  const int64_t rows = x.size(0), d = x.size(1);
  const int64_t rpb = rows_per_batch > 0 ? rows_per_batch : std::max<int64_t>(rows, 1);
  NormBackwardResult g;
  g.dx = Tensor::Empty(x.shape(), x.dtype(), x.device());
  if (need_weight) g.dweight = Tensor::Empty({d}, x.dtype(), x.device());
  if (need_bias) g.dbias = Tensor::Empty({d}, x.dtype(), x.device());
  const int64_t batches = modulated ? (rows + rpb - 1) / rpb : 0;
  if (modulated) {
    g.dshift = Tensor::Empty({batches, d}, x.dtype(), x.device());
    g.dscale = Tensor::Empty({batches, d}, x.dtype(), x.device());
  }
  Tensor w = ParamAs(weight), b = ParamAs(bias), sc = ParamAs(scale);
  Tensor mu = rms ? Tensor() : StatsAs(mean, x.dtype());
  Tensor rs = StatsAs(rstd, x.dtype());
  Tensor dyc = ops::Contiguous(ops::Cast(dy, x.dtype()));
  Tensor ws = Workspace(NormBackwardWorkspaceBytes(rows, d, rpb, Code(x.dtype())), x.device());
  NormBwdArgs a;
  a.dy = dyc.raw_data();
  a.x = x.raw_data();
  a.weight = PtrOr(w);
  a.bias = PtrOr(b);
  a.scale = PtrOr(sc);
  a.rows_per_batch = rpb;
  a.mean = rms ? nullptr : mu.raw_data();
  a.rstd = rs.raw_data();
  a.dx = g.dx.raw_data();
  a.dweight = need_weight ? g.dweight.raw_data() : nullptr;
  a.dbias = need_bias ? g.dbias.raw_data() : nullptr;
  a.dshift = modulated ? g.dshift.raw_data() : nullptr;
  a.dscale = modulated ? g.dscale.raw_data() : nullptr;
  a.dtype = Code(x.dtype());
  a.rows = rows;
  a.d = d;
  a.rms = rms;
  a.workspace = ws.raw_data();
  LaunchNormBackward(a, StreamOf(x));
  return g;
}

// ---------------------------------------------------------------------------- attention

AttnArgs MakeAttnArgs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                      double scale, int path) {
  AttnArgs a;
  a.q = q.raw_data();
  a.k = k.raw_data();
  a.v = v.raw_data();
  if (mask.defined()) {
    SDPO_CHECK(mask.dtype() == q.dtype() && mask.dim() == 4,
               "attention (cuda): mask must be expanded to [B, H, Lq, Lk] in q's dtype, got ",
               mask.str());
    a.mask = mask.raw_data();
    for (int i = 0; i < 4; ++i) a.ms[i] = mask.stride(i);
  }
  a.dtype = Code(q.dtype());
  a.b = q.size(0);
  a.h = q.size(1);
  a.lq = q.size(2);
  a.lk = k.size(2);
  a.d = q.size(3);
  a.dv = v.size(3);
  a.scale = scale;
  a.force_path = path;
  return a;
}

ops::AttentionResult AttentionImpl(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                   const Tensor& mask, double scale, int path) {
  CheckCuda(q_in, "attention");
  DeviceGuard guard(Dev(q_in));
  Tensor q = ops::Contiguous(q_in), k = ops::Contiguous(k_in), v = ops::Contiguous(v_in);
  ops::AttentionResult r;
  r.out = Tensor::Empty({q.size(0), q.size(1), q.size(2), v.size(3)}, q.dtype(), q.device());
  r.lse = Tensor::Empty({q.size(0), q.size(1), q.size(2)}, kF32, q.device());
  if (q.numel() == 0 && r.out.numel() == 0) return r;
  if (k.size(2) == 0) {  // no keys: every row fully masked
    ops::Fill(r.out, 0);
    ops::Fill(r.lse, -INFINITY);
    return r;
  }
  if (path == 3) {  // cuDNN fused attention, forced (throws when unavailable)
    CudnnAttentionForward(q, k, v, scale, r.out, r.lse);
    return r;
  }
  if (path == 0 && TryCudnnAttentionForward(q, k, v, mask, scale, r.out, r.lse)) return r;
  AttnArgs a = MakeAttnArgs(q, k, v, mask, scale, path);
  a.out = r.out.raw_data();
  a.lse = r.lse.data<float>();
  LaunchAttentionForward(a, StreamOf(q));
  return r;
}

ops::AttentionGrads AttentionBackwardImpl(const Tensor& dout, const Tensor& q_in,
                                          const Tensor& k_in, const Tensor& v_in,
                                          const Tensor& mask, double scale, const Tensor& out,
                                          const Tensor& lse_in, int path) {
  CheckCuda(q_in, "attention backward");
  DeviceGuard guard(Dev(q_in));
  Tensor q = ops::Contiguous(q_in), k = ops::Contiguous(k_in), v = ops::Contiguous(v_in);
  ops::AttentionGrads g;
  g.dq = Tensor::Empty(q.shape(), q.dtype(), q.device());
  g.dk = Tensor::Empty(k.shape(), k.dtype(), k.device());
  g.dv = Tensor::Empty(v.shape(), v.dtype(), v.device());
  if (q.size(2) == 0 || k.size(2) == 0 || q.size(0) * q.size(1) == 0) {
    ops::Fill(g.dq, 0);
    ops::Fill(g.dk, 0);
    ops::Fill(g.dv, 0);
    return g;
  }
  Tensor o = ops::Contiguous(ops::Cast(out, q.dtype()));
  Tensor lse = lse_in.defined() && lse_in.device() == q.device()
                   ? ops::Contiguous(ops::Cast(lse_in, kF32))
                   : AttentionImpl(q, k, v, mask, scale, path).lse;
  Tensor dcont = ops::Contiguous(ops::Cast(dout, q.dtype()));
  if (path == 3) {  // cuDNN fused attention, forced (throws when unavailable)
    CudnnAttentionBackward(dcont, q, k, v, o, lse, scale, g.dq, g.dk, g.dv);
    return g;
  }
  if (path == 0 && TryCudnnAttentionBackward(dcont, q, k, v, mask, o, lse, scale, g.dq, g.dk, g.dv)) {
    return g;
  }
  AttnArgs a = MakeAttnArgs(q, k, v, mask, scale, path);
  a.out = o.raw_data();
  a.lse = lse.data<float>();
  a.dout = dcont.raw_data();
  a.dq = g.dq.raw_data();
  a.dk = g.dk.raw_data();
  a.dv_out = g.dv.raw_data();
  Tensor ws = Workspace(AttentionBackwardWorkspaceBytes(a), q.device());
  a.workspace = ws.raw_data();
  LaunchAttentionBackward(a, StreamOf(q));
  return g;
}

// --------------------------------------------------------------------------- convolution

std::atomic<int> g_conv_path{-1};  // -1: not set yet (read SDPO_CUDNN_CONV once)

int ConvPath() {
  int path = g_conv_path.load();
  if (path < 0) {
    const char* env = std::getenv("SDPO_CUDNN_CONV");
    path = env != nullptr && env[0] == '0' ? 1 : 0;
    int unset = -1;
    g_conv_path.compare_exchange_strong(unset, path);
    path = g_conv_path.load();
  }
  return path;
}

void Conv3dImpl(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
                const Tensor& bias, const ops::Conv3dOptions& o) {
  CheckCuda(x, "conv3d");
  DeviceGuard guard(Dev(x));
  const int path = ConvPath();
  if (path == 2) {  // cuDNN, forced (throws when unavailable)
    CudnnConv3d(out, x, history, weight, bias, o);
    return;
  }
  if (path == 0 && TryCudnnConv3d(out, x, history, weight, bias, o)) return;
  Conv3dArgs a;
  a.x = x.raw_data();
  a.history = history.defined() ? history.raw_data() : nullptr;
  a.weight = weight.raw_data();
  a.bias = bias.defined() ? bias.raw_data() : nullptr;
  a.out = out.raw_data();
  a.dtype = Code(x.dtype());
  a.batch = x.size(0);
  a.cin = x.size(1);
  a.frames = x.size(2);
  a.history_frames = history.defined() ? history.size(2) : 0;
  a.h = x.size(3);
  a.w = x.size(4);
  a.cout = weight.size(0);
  a.kt = weight.size(2);
  a.kh = weight.size(3);
  a.kw = weight.size(4);
  a.to = out.size(2);
  a.ho = out.size(3);
  a.wo = out.size(4);
  a.stride_t = o.stride[0];
  a.stride_h = o.stride[1];
  a.stride_w = o.stride[2];
  a.pad_t = o.padding[0];
  a.pad_h = o.padding[2];
  a.pad_w = o.padding[4];
  LaunchConv3d(a, StreamOf(x));
}

// ---------------------------------------------------------------------------- backends

constexpr size_t kStageChunk = size_t{8} << 20;
constexpr size_t kDirectCopyLimit = size_t{1} << 20;

class CudaBackend final : public DeviceBackend {
 public:
  void* Allocate(size_t nbytes, int device_index) override {
    return DeviceAllocate(nbytes, device_index);
  }
  void Free(void* ptr, int device_index) override { DeviceFree(ptr, device_index); }
  int DeviceCount() override { return cuda::DeviceCount(); }

  void Copy(void* dst, Device dst_device, const void* src, Device src_device,
            size_t nbytes) override {
    if (nbytes == 0) return;
    if (dst_device.is_cuda() && src_device.is_cuda()) {
      DeviceGuard guard(src_device.index);
      cudaStream_t s = CurrentStream(src_device.index);
      if (dst_device.index != src_device.index) {
        // Order after pending work on the destination device too.
        SDPO_CUDA_CHECK(cudaStreamSynchronize(CurrentStream(dst_device.index)));
      }
      SDPO_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, s));
      SDPO_CUDA_CHECK(cudaStreamSynchronize(s));
      return;
    }
    const bool to_device = dst_device.is_cuda();
    const int device = to_device ? dst_device.index : src_device.index;
    DeviceGuard guard(device);
    cudaStream_t s = CurrentStream(device);
    const cudaMemcpyKind kind = to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
    if (nbytes <= kDirectCopyLimit) {
      SDPO_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, s));
      SDPO_CUDA_CHECK(cudaStreamSynchronize(s));
      return;
    }
    // Staged through two pinned buffers so that the host memcpy of one chunk overlaps the DMA
    // of the other.
    PinnedBuffer stage[2] = {PinnedBuffer(kStageChunk), PinnedBuffer(kStageChunk)};
    Event done[2] = {Event(false), Event(false)};
    bool in_flight[2] = {false, false};
    const char* from = static_cast<const char*>(src);
    char* to = static_cast<char*>(dst);
    if (to_device) {
      for (size_t off = 0, i = 0; off < nbytes; off += kStageChunk, ++i) {
        const size_t n = std::min(kStageChunk, nbytes - off);
        const int b = static_cast<int>(i % 2);
        if (in_flight[b]) done[b].Synchronize();
        std::memcpy(stage[b].data(), from + off, n);
        SDPO_CUDA_CHECK(cudaMemcpyAsync(to + off, stage[b].data(), n, kind, s));
        done[b].Record(s);
        in_flight[b] = true;
      }
      SDPO_CUDA_CHECK(cudaStreamSynchronize(s));
    } else {
      // Issue chunk i + 1 before copying chunk i out of its pinned buffer.
      const size_t chunks = (nbytes + kStageChunk - 1) / kStageChunk;
      auto issue = [&](size_t i) {
        const size_t off = i * kStageChunk, n = std::min(kStageChunk, nbytes - off);
        SDPO_CUDA_CHECK(cudaMemcpyAsync(stage[i % 2].data(), from + off, n, kind, s));
        done[i % 2].Record(s);
      };
      issue(0);
      for (size_t i = 0; i < chunks; ++i) {
        if (i + 1 < chunks) issue(i + 1);
        done[i % 2].Synchronize();
        const size_t off = i * kStageChunk, n = std::min(kStageChunk, nbytes - off);
        std::memcpy(to + off, stage[i % 2].data(), n);
      }
    }
  }
};

class CudaKernels final : public Kernels {
 public:
  void Fill(const Tensor& out, double value) override {
    CheckCuda(out, "fill");
    DeviceGuard guard(Dev(out));
    const uint64_t bits = ValueBits(value, out.dtype());
    ForElementwise<1>({out}, [&](const Iter& it, const std::array<Operand, 1>& o) {
      LaunchFill(it, o[0], bits, StreamOf(out));
    });
  }

  void Copy(const Tensor& dst, const Tensor& src) override {
    CheckCuda(dst, "copy");
    SDPO_CHECK(src.device() == dst.device(), "copy (cuda): devices differ: ", dst.str(), " <- ",
               src.str());
    DeviceGuard guard(Dev(dst));
    if (dst.numel() == 0) return;
    if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
      if (dst.raw_data() != src.raw_data()) {
        SDPO_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(),
                                        cudaMemcpyDeviceToDevice, StreamOf(dst)));
      }
      return;
    }
    ForElementwise<2>({dst, src}, [&](const Iter& it, const std::array<Operand, 2>& o) {
      LaunchCopy(it, o[0], o[1], StreamOf(dst));
    });
  }

  void Unary(ops::UnaryOp op, const Tensor& out, const Tensor& x) override {
    CheckCuda(out, ops::UnaryOpName(op));
    const bool basic = op == ops::UnaryOp::kNeg || op == ops::UnaryOp::kAbs ||
                       op == ops::UnaryOp::kSquare || op == ops::UnaryOp::kSign;
    SDPO_CHECK(out.dtype() != kBool && (IsFloating(out.dtype()) || basic),
               ops::UnaryOpName(op), ": unsupported for ", DTypeName(out.dtype()));
    DeviceGuard guard(Dev(out));
    ForElementwise<2>({out, x}, [&](const Iter& it, const std::array<Operand, 2>& o) {
      LaunchUnary(static_cast<int>(op), it, o[0], o[1], StreamOf(out));
    });
  }

  void Binary(ops::BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) override {
    CheckCuda(out, ops::BinaryOpName(op));
    SDPO_CHECK(out.dtype() != kBool, ops::BinaryOpName(op), ": unsupported dtype bool");
    SDPO_CHECK(op != ops::BinaryOp::kDiv || IsFloating(out.dtype()),
               "div: integer division is not supported (cast to a float dtype)");
    DeviceGuard guard(Dev(out));
    ForElementwise<3>({out, a, b}, [&](const Iter& it, const std::array<Operand, 3>& o) {
      LaunchBinary(static_cast<int>(op), it, o[0], o[1], o[2], StreamOf(out));
    });
  }

  void Compare(ops::CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b) override {
    CheckCuda(out, "compare");
    DeviceGuard guard(Dev(out));
    ForElementwise<3>({out, a, b}, [&](const Iter& it, const std::array<Operand, 3>& o) {
      LaunchCompare(static_cast<int>(op), it, o[0], o[1], o[2], StreamOf(out));
    });
  }

  void Where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) override {
    CheckCuda(out, "where");
    DeviceGuard guard(Dev(out));
    ForElementwise<4>({out, cond, a, b}, [&](const Iter& it, const std::array<Operand, 4>& o) {
      LaunchWhere(it, o[0], o[1], o[2], o[3], StreamOf(out));
    });
  }

  void Clamp(const Tensor& out, const Tensor& x, double lo, double hi) override {
    CheckCuda(out, "clamp");
    SDPO_CHECK(out.dtype() != kBool, "clamp: unsupported dtype bool");
    DeviceGuard guard(Dev(out));
    ForElementwise<2>({out, x}, [&](const Iter& it, const std::array<Operand, 2>& o) {
      LaunchClamp(it, o[0], o[1], lo, hi, StreamOf(out));
    });
  }

  void ReduceRows(ReduceKind kind, const Tensor& out, const Tensor& x,
                  int64_t correction) override {
    CheckCuda(x, "reduce");
    SDPO_CHECK(x.dtype() != kBool, "reduction over a bool tensor (cast it first)");
    DeviceGuard guard(Dev(x));
    Tensor xc = ops::Contiguous(x);
    const int code = Code(x.dtype());
    if (const int chunks = ChunkedSumChunks(static_cast<int>(kind), code, xc.size(0), xc.size(1));
        chunks > 0) {
      Tensor partial = Tensor::Empty({xc.size(0), chunks}, kF64, x.device());
      LaunchChunkedSumRows(static_cast<int>(kind), out.raw_data(), xc.raw_data(),
                           static_cast<double*>(partial.raw_data()), chunks, code, xc.size(0),
                           xc.size(1), StreamOf(x));
      return;
    }
    LaunchReduceRows(static_cast<int>(kind), out.raw_data(), xc.raw_data(), code, xc.size(0),
                     xc.size(1), correction, StreamOf(x));
  }

  ops::NormResult LayerNormModulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                    int64_t rows_per_batch, double eps) override {
    return NormForward(x, Tensor(), Tensor(), shift, scale, rows_per_batch, eps, false);
  }
  ops::NormModulateGrads LayerNormModulateBackward(const Tensor& dy, const Tensor& x,
                                                   const Tensor& scale, const Tensor& mean,
                                                   const Tensor& rstd,
                                                   int64_t rows_per_batch) override {
    NormBackwardResult g = NormBackward(dy, x, Tensor(), Tensor(), scale, rows_per_batch, mean,
                                        rstd, false, false, true, false);
    return {g.dx, g.dshift, g.dscale};
  }

  void ReduceMiddle(ReduceKind kind, const Tensor& out, const Tensor& x) override {
    CheckCuda(x, "reduce");
    DeviceGuard guard(Dev(x));
    Tensor xc = ops::Contiguous(x);
    const int64_t outer = xc.size(0), rows = xc.size(1), cols = xc.size(2);
    const int chunks = ReduceMiddleChunks(outer, rows, cols);
    Tensor partial =
        Tensor::Empty({std::max<int64_t>(1, outer * chunks * cols)}, kF64, x.device());
    LaunchReduceMiddle(static_cast<int>(kind), out.raw_data(), xc.raw_data(),
                       static_cast<double*>(partial.raw_data()), chunks, Code(x.dtype()), outer,
                       rows, cols, StreamOf(x));
  }

  void SoftmaxRows(const Tensor& out, const Tensor& x, bool log) override {
    CheckCuda(x, "softmax");
    DeviceGuard guard(Dev(x));
    Tensor xc = ops::Contiguous(x);
    LaunchSoftmaxRows(out.raw_data(), xc.raw_data(), Code(x.dtype()), xc.size(0), xc.size(1),
                      log, StreamOf(x));
  }

  void Gemm(const Tensor& out, const Tensor& a, bool trans_a, const Tensor& b,
            bool trans_b) override {
    GemmEx(out, a, trans_a, b, trans_b, Tensor(), Epilogue::kNone);
  }

  ops::NormResult LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                            double eps) override {
    return NormForward(x, weight, bias, Tensor(), Tensor(), 0, eps, /*rms=*/false);
  }
  ops::NormGrads LayerNormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const Tensor& mean, const Tensor& rstd,
                                   bool need_bias_grad) override {
    NormBackwardResult g = NormBackward(dy, x, weight, Tensor(), Tensor(), 0, mean, rstd,
                                        weight.defined(), need_bias_grad, false, false);
    return {g.dx, g.dweight, g.dbias};
  }
  ops::NormResult RmsNorm(const Tensor& x, const Tensor& weight, double eps) override {
    return NormForward(x, weight, Tensor(), Tensor(), Tensor(), 0, eps, /*rms=*/true);
  }
  ops::NormGrads RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                 const Tensor& rstd) override {
    NormBackwardResult g = NormBackward(dy, x, weight, Tensor(), Tensor(), 0, Tensor(), rstd,
                                        weight.defined(), false, false, true);
    return {g.dx, g.dweight, Tensor()};
  }

  ops::AttentionResult Attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& mask, double scale) override {
    return AttentionImpl(q, k, v, mask, scale, 0);
  }
  ops::AttentionGrads AttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                        const Tensor& v, const Tensor& mask, double scale,
                                        const Tensor& out, const Tensor& lse) override {
    return AttentionBackwardImpl(dout, q, k, v, mask, scale, out, lse, 0);
  }

  Tensor Rope(const Tensor& x_in, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout,
              bool inverse) override {
    CheckCuda(x_in, "rope");
    DeviceGuard guard(Dev(x_in));
    Tensor x = ops::Contiguous(x_in);
    Tensor c = ops::Contiguous(ops::Cast(cos, x.dtype()));
    Tensor s = ops::Contiguous(ops::Cast(sin, x.dtype()));
    Tensor out = Tensor::Empty(x.shape(), x.dtype(), x.device());
    LaunchRope(out.raw_data(), x.raw_data(), c.raw_data(), s.raw_data(), Code(x.dtype()),
               x.size(0), x.size(1), x.size(2), x.size(3),
               layout == ops::RopeLayout::kInterleaved, inverse, StreamOf(x));
    return out;
  }

  void IndexRows(const Tensor& out, const Tensor& x, const Tensor& index) override {
    CheckCuda(out, "index_select");
    DeviceGuard guard(Dev(out));
    SDPO_CHECK(out.stride(1) == 1 && x.stride(1) == 1 && index.dtype() == kI64 &&
                   index.is_contiguous(),
               "index_select (cuda): rows must be contiguous and the index i64");
    LaunchIndexRows(out.raw_data(), out.stride(0), x.raw_data(), x.stride(0),
                    index.data<int64_t>(), index.numel(), x.size(1), Code(x.dtype()),
                    StreamOf(out));
  }

  void IndexAddRows(const Tensor& out, const Tensor& index, const Tensor& src) override {
    CheckCuda(out, "index_add");
    DeviceGuard guard(Dev(out));
    Tensor sc = src.stride(src.dim() - 1) == 1 ? src : ops::Contiguous(src);
    SDPO_CHECK(out.stride(1) == 1 && index.dtype() == kI64 && index.is_contiguous(),
               "index_add (cuda): rows must be contiguous and the index i64");
    LaunchIndexAddRows(out.raw_data(), out.stride(0), index.data<int64_t>(), sc.raw_data(),
                       sc.stride(0), index.numel(), sc.size(1), Code(src.dtype()),
                       StreamOf(out));
  }

  void Gather(const Tensor& out, const Tensor& x, const Tensor& index) override {
    CheckCuda(out, "gather");
    DeviceGuard guard(Dev(out));
    Tensor xc = ops::Contiguous(x), ic = ops::Contiguous(index);
    LaunchGather(out.raw_data(), xc.raw_data(), ic.data<int64_t>(), out.size(0), out.size(1),
                 xc.size(1), out.size(2), Code(x.dtype()), StreamOf(out));
  }

  void ScatterAdd(const Tensor& out, const Tensor& index, const Tensor& src) override {
    CheckCuda(out, "scatter_add");
    DeviceGuard guard(Dev(out));
    Tensor sc = ops::Contiguous(src), ic = ops::Contiguous(index);
    LaunchScatterAdd(out.raw_data(), ic.data<int64_t>(), sc.raw_data(), sc.size(0), sc.size(1),
                     out.size(1), sc.size(2), Code(src.dtype()), StreamOf(out));
  }

  void Conv3d(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
              const Tensor& bias, const ops::Conv3dOptions& options) override {
    Conv3dImpl(out, x, history, weight, bias, options);
  }

  void ChannelRmsNorm(const Tensor& out, const Tensor& x, const Tensor& gamma, double eps,
                      bool silu) override {
    CheckCuda(x, "channel_rms_norm");
    DeviceGuard guard(Dev(x));
    LaunchChannelRmsNorm(out.raw_data(), x.raw_data(), gamma.raw_data(), Code(x.dtype()),
                         x.size(0), x.size(1), x.size(2), eps, silu, StreamOf(x));
  }

  void GroupNorm(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                 int64_t groups, double eps, bool silu) override {
    CheckCuda(x, "group_norm");
    DeviceGuard guard(Dev(x));
    GroupNormArgs a;
    a.x = x.raw_data();
    a.weight = PtrOr(weight);
    a.bias = PtrOr(bias);
    a.out = out.raw_data();
    a.dtype = Code(x.dtype());
    a.batch = x.size(0);
    a.c = x.size(1);
    a.inner = x.size(2);
    a.groups = groups;
    a.eps = eps;
    a.silu = silu;
    Tensor ws = Workspace(GroupNormWorkspaceBytes(a), x.device());
    a.workspace = ws.raw_data();
    LaunchGroupNorm(a, StreamOf(x));
  }

  bool FusedAdamW(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                  const Tensor& exp_avg_sq, const AdamWStep& h) override {
    AdamWOptions o;
    o.lr = h.lr;
    o.beta1 = h.beta1;
    o.beta2 = h.beta2;
    o.eps = h.eps;
    o.weight_decay = h.weight_decay;
    cuda::FusedAdamW({{param, grad, exp_avg, exp_avg_sq, Tensor()}}, o, h.step);
    return true;
  }

  void Philox(const Tensor& out, uint64_t seed, uint64_t offset, bool normal) override {
    CheckCuda(out, "random");
    SDPO_CHECK(out.is_contiguous(), "random (cuda): output must be contiguous");
    DeviceGuard guard(Dev(out));
    LaunchPhilox(out.raw_data(), Code(out.dtype()), out.numel(), seed, offset, normal,
                 StreamOf(out));
  }
};

struct Registrar {
  Registrar() {
    if (DeviceCount() <= 0) return;  // no GPU: everything stays on the CPU
    static CudaBackend backend;
    static CudaKernels kernels;
    RegisterDeviceBackend(DeviceType::kCUDA, &backend);
    RegisterCudaKernels(&kernels);
  }
};
Registrar g_registrar;

}  // namespace

// ------------------------------------------------------------------------------ extras

ops::AttentionResult AttentionWithPath(const Tensor& q, const Tensor& k, const Tensor& v,
                                       const Tensor& mask, double scale, int path) {
  Tensor m;
  if (mask.defined()) {
    m = ops::Expand(ops::Cast(mask, q.dtype()), {q.size(0), q.size(1), q.size(2), k.size(2)});
  }
  return AttentionImpl(q, k, v, m, scale, path);
}

ops::AttentionGrads AttentionBackwardWithPath(const Tensor& dout, const Tensor& q,
                                              const Tensor& k, const Tensor& v,
                                              const Tensor& mask, double scale, const Tensor& out,
                                              const Tensor& lse, int path) {
  Tensor m;
  if (mask.defined()) {
    m = ops::Expand(ops::Cast(mask, q.dtype()), {q.size(0), q.size(1), q.size(2), k.size(2)});
  }
  return AttentionBackwardImpl(dout, q, k, v, m, scale, out, lse, path);
}

void SetConv3dPath(int path) {
  SDPO_CHECK(path >= 0 && path <= 2,
             "conv3d: path must be 0 (auto), 1 (own kernel) or 2 (cuDNN), got ", path);
  g_conv_path.store(path);
}
int Conv3dPath() { return ConvPath(); }

void FusedAdamW(const std::vector<AdamWParam>& params, const AdamWOptions& o, int64_t step) {
  if (params.empty()) return;
  SDPO_CHECK(step >= 1, "adamw: step must be >= 1, got ", step);
  const Device device = params[0].param.device();
  CheckCuda(params[0].param, "adamw");
  DeviceGuard guard(device.index);
  std::vector<AdamWTensor> ts;
  ts.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const AdamWParam& p = params[i];
    for (const Tensor* t : {&p.param, &p.exp_avg, &p.exp_avg_sq}) {
      SDPO_CHECK(t->dtype() == kF32 && t->is_contiguous() && t->device() == device &&
                     t->numel() == p.param.numel(),
                 "adamw: parameter ", i, ": param/exp_avg/exp_avg_sq must be contiguous f32 on ",
                 device.str(), " with ", p.param.numel(), " elements, got ", t->str());
    }
    SDPO_CHECK(p.grad.is_contiguous() && p.grad.device() == device &&
                   p.grad.numel() == p.param.numel() &&
                   (p.grad.dtype() == kF32 || p.grad.dtype() == kBF16 || p.grad.dtype() == kF16),
               "adamw: parameter ", i, ": grad must be contiguous f32/bf16/f16, got ",
               p.grad.str());
    AdamWTensor t;
    t.param = p.param.data<float>();
    t.grad = p.grad.raw_data();
    t.exp_avg = p.exp_avg.data<float>();
    t.exp_avg_sq = p.exp_avg_sq.data<float>();
    t.n = p.param.numel();
    t.grad_dtype = Code(p.grad.dtype());
    if (p.param_copy.defined()) {
      SDPO_CHECK(p.param_copy.is_contiguous() && p.param_copy.numel() == p.param.numel() &&
                     p.param_copy.device() == device &&
                     (p.param_copy.dtype() == kF32 || p.param_copy.dtype() == kBF16 ||
                      p.param_copy.dtype() == kF16),
                 "adamw: parameter ", i, ": param_copy must be contiguous f32/bf16/f16, got ",
                 p.param_copy.str());
      t.param_copy = p.param_copy.raw_data();
      t.copy_dtype = Code(p.param_copy.dtype());
    }
    ts.push_back(t);
  }
  AdamWHyper h;
  h.lr = static_cast<float>(o.lr);
  h.beta1 = static_cast<float>(o.beta1);
  h.beta2 = static_cast<float>(o.beta2);
  h.eps = static_cast<float>(o.eps);
  h.weight_decay = static_cast<float>(o.weight_decay);
  h.bias_correction1 = static_cast<float>(1.0 - std::pow(o.beta1, static_cast<double>(step)));
  h.bias_correction2 = static_cast<float>(1.0 - std::pow(o.beta2, static_cast<double>(step)));
  h.grad_scale = static_cast<float>(o.grad_scale);
  const size_t bytes = AdamWTableBytes(ts.data(), static_cast<int>(ts.size()));
  // The host table must outlive its asynchronous upload: one pinned buffer, reused after the
  // previous upload's event completed.
  static std::mutex mu;
  static PinnedBuffer* host = new PinnedBuffer();
  static Event* uploaded = nullptr;
  std::lock_guard<std::mutex> lock(mu);
  if (uploaded != nullptr) uploaded->Synchronize();
  if (host->size() < bytes) *host = PinnedBuffer(bytes);
  Tensor table = Workspace(bytes, device);
  cudaStream_t s = CurrentStream(device.index);
  LaunchAdamW(ts.data(), static_cast<int>(ts.size()), h, host->data(), table.raw_data(), s);
  if (uploaded == nullptr) uploaded = new Event(false);
  uploaded->Record(s);
}

}  // namespace sdpo::cuda
