// cuDNN fused flash attention (see cudnn_attention.h) through the cuDNN 9 backend graph API.
//
// The operation graphs are the decomposed SDPA patterns that cuDNN's fused attention engines
// recognise (the same graphs cudnn-frontend's composite SDPA nodes lower to). Tensor names and
// unique ids (uids) below; "v" = virtual (never in memory), f32 = CUDNN_DATA_FLOAT, io = q's dtype.
//
// Forward (uids 1..):
//   Q [B,H,Lq,D] io, KT [B,H,D,Lk] io (K with dims/strides 2,3 swapped), V [B,H,Lk,D] io,
//   SCALE [1,1,1,1] f32 by value, O [B,H,Lq,D] io, STATS [B,H,Lq,1] f32 (our lse)
//   S     = matmul(Q, KT)             v f32 [B,H,Lq,Lk]
//   SS    = mul(S, SCALE)             v f32
//   M     = reduce_max(SS)            v f32 [B,H,Lq,1]
//   SM    = sub(SS, M)                v f32
//   E     = exp(SM)                   v f32
//   Z     = reduce_add(E)             v f32 [B,H,Lq,1]
//   LZ    = log(Z)                    v f32 [B,H,Lq,1]
//   STATS = add(M, LZ)
//   P     = div(E, Z)                 v io  (the second matmul's A operand is of the io type)
//   O     = matmul(P, V)
// Backward:
//   Q, KT, VT [B,H,D,Lk] io (V swapped), O, DO [B,H,Lq,D] io, STATS f32, SCALE, ONE f32 by value,
//   DQ, DK, DV io, and two f32 buffers in our workspace: SOFTMAX_SUM [B,H,Lq,1], DQ_ACCUM [B,H,Lq,D]
//   T1    = mul(DO, O)                v f32 [B,H,Lq,D]
//   T2    = reduce_add(T1)            v f32 [B,H,Lq,1]
//   SOFTMAX_SUM = mul(T2, ONE)
//   S     = matmul(Q, KT)             v f32 [B,H,Lq,Lk]
//   SS    = mul(S, SCALE)             v f32
//   SM    = sub(SS, STATS)            v f32
//   [pad mask: SM = select(SM, -inf, row < SEQ_Q && col < SEQ_KV), see below]
//   P     = exp(SM)                   v f32
//   PT    = reshape(P)                v io [B,H,Lk,Lq] (strides of P transposed)
//   DV    = matmul(PT, DO)
//   DP    = matmul(DO, VT)            v f32 [B,H,Lq,Lk]
//   T3    = sub(DP, SOFTMAX_SUM)      v f32
//   T4    = mul(T3, P)                v f32
//   DS    = mul(T4, SCALE)            v f32
//   DST   = reshape(DS)               v io [B,H,Lk,Lq]
//   DK    = matmul(DST, Q)
//   KR    = reshape(KT)               v f32 [B,H,Lk,D] (K's own layout)
//   DQ_ACCUM = matmul(DS, KR)
//   DQ    = identity(DQ_ACCUM)
// cuDNN <= 9.15 needs, in the backward pass with Lk % 128 != 0, a padding mask with the full
// lengths (SEQ_Q, SEQ_KV: int32 [B,1,1,1] in our workspace) and the matching matmul M/N/K
// overrides, as cudnn-frontend adds; 9.0 <= cuDNN < 9.10 applies it twice.
//
// Plans: heuristics (CUDNN_HEUR_MODE_A), engine configs tried in order until an execution plan
// finalizes; if none does, every engine by global index. Errors name the step that failed.
#include "tensor/cuda/cudnn_attention.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tensor/error.h"

#ifndef SDPO_CUDA_EMULATE
#include <dlfcn.h>

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#include <cudnn_graph.h>

#include "tensor/cuda/cuda_runtime.h"
#endif

namespace sdpo::cuda {

namespace {

bool EnvDisabled() {
  const char* v = std::getenv("SDPO_CUDNN_ATTENTION");
  return v != nullptr && v[0] == '0';
}

bool ShapeEligible(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                   std::string* why) {
  auto no = [&](const std::string& r) {
    if (why) *why = r;
    return false;
  };
  if (mask.defined()) return no("a mask is given");
  if (q.dtype() != kBF16 && q.dtype() != kF16) return no("dtype is not bf16/f16");
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype()) return no("q/k/v dtypes differ");
  if (!q.device().is_cuda() || k.device() != q.device() || v.device() != q.device()) {
    return no("q/k/v are not on one CUDA device");
  }
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return no("q/k/v are not 4-d");
  const int64_t d = q.size(3);
  if (d != 64 && d != 128) return no("head dim is not 64 or 128");
  if (k.size(3) != d || v.size(3) != d) return no("D != Dv");
  if (k.size(0) != q.size(0) || v.size(0) != q.size(0) || k.size(1) != q.size(1) ||
      v.size(1) != q.size(1) || v.size(2) != k.size(2)) {
    return no("q/k/v shapes do not match");
  }
  if (q.numel() == 0 || k.numel() == 0) return no("empty operands");
  if (!q.is_contiguous() || !k.is_contiguous() || !v.is_contiguous()) {
    return no("operands not contiguous");
  }
  for (const Tensor* t : {&q, &k, &v}) {
    if (reinterpret_cast<uintptr_t>(t->raw_data()) % 16 != 0) return no("operands not 16-byte aligned");
  }
  return true;
}

// The other operands of a call (out, lse; for the backward pass dout, dq, dk, dv): "" when usable.
std::string OperandProblem(const Tensor& q, const Tensor& o, const Tensor& lse, const Tensor& dout,
                           const Tensor& dq, const Tensor& dk, const Tensor& dv, bool backward) {
  const int64_t b = q.size(0), h = q.size(1), lq = q.size(2);
  if (!lse.defined() || lse.dtype() != kF32 || lse.numel() != b * h * lq || !lse.is_contiguous() ||
      lse.device() != q.device()) {
    return "lse must be a contiguous f32 [B, H, Lq] tensor on q's device";
  }
  std::vector<const Tensor*> io = {&o};
  if (backward) io.insert(io.end(), {&dout, &dq, &dk, &dv});
  for (const Tensor* t : io) {
    if (!t->defined() || t->dtype() != q.dtype() || !t->is_contiguous() ||
        t->device() != q.device()) {
      return "out/dout/dq/dk/dv must be contiguous tensors of q's dtype on q's device";
    }
  }
  if (o.numel() != q.numel() || (backward && (dout.numel() != q.numel() || dq.numel() != q.numel()))) {
    return "out/dout/dq must have q's shape";
  }
  for (const Tensor* t : io) {
    if (reinterpret_cast<uintptr_t>(t->raw_data()) % 16 != 0) return "operands not 16-byte aligned";
  }
  if (reinterpret_cast<uintptr_t>(lse.raw_data()) % 16 != 0) return "lse not 16-byte aligned";
  return "";
}

}  // namespace

bool CudnnAttentionEligible(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                            std::string* why) {
  return ShapeEligible(q, k, v, mask, why);
}

#ifdef SDPO_CUDA_EMULATE
// ------------------------------------------------------------------------------------- stub

bool CudnnAttentionAvailable(std::string* reason) {
  if (reason) *reason = "cuDNN attention: unavailable in the CUDA emulation build";
  return false;
}

void CudnnAttentionForward(const Tensor&, const Tensor&, const Tensor&, double, const Tensor&,
                           const Tensor&) {
  SDPO_FAIL("attention (cuDNN): unavailable in the CUDA emulation build");
}

void CudnnAttentionBackward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, const Tensor&, double, const Tensor&, const Tensor&,
                            const Tensor&) {
  SDPO_FAIL("attention (cuDNN): unavailable in the CUDA emulation build");
}

bool TryCudnnAttentionForward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double,
                              const Tensor&, const Tensor&) {
  return false;
}

bool TryCudnnAttentionBackward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const Tensor&, const Tensor&, const Tensor&, double,
                               const Tensor&, const Tensor&, const Tensor&) {
  return false;
}

#else
// ------------------------------------------------------------------------------- real cuDNN

namespace {

// The backend functions, resolved from libcudnn.so.9 at run time.
struct Api {
  decltype(&cudnnGetVersion) GetVersion = nullptr;
  decltype(&cudnnGetErrorString) GetErrorString = nullptr;
  decltype(&cudnnGetLastErrorString) GetLastErrorString = nullptr;  // optional
  decltype(&cudnnCreate) Create = nullptr;
  decltype(&cudnnSetStream) SetStream = nullptr;
  decltype(&cudnnBackendCreateDescriptor) CreateDescriptor = nullptr;
  decltype(&cudnnBackendDestroyDescriptor) DestroyDescriptor = nullptr;
  decltype(&cudnnBackendSetAttribute) SetAttribute = nullptr;
  decltype(&cudnnBackendGetAttribute) GetAttribute = nullptr;
  decltype(&cudnnBackendFinalize) Finalize = nullptr;
  decltype(&cudnnBackendExecute) Execute = nullptr;
  size_t version = 0;
  bool ok = false;
  std::string error;  // why not ok
};

const Api& GetApi() {
  static const Api* api = [] {
    auto* a = new Api();
    if (DeviceCount() == 0) {
      a->error = "no CUDA device";
      return a;
    }
    // The fused attention engines may compile kernels at run time (NVRTC). Preload it where our
    // RUNPATH finds it, so that cuDNN's own dlopen of the same soname succeeds; harmless otherwise.
    if (dlopen("libnvrtc.so.13", RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      dlerror();
    }
    void* lib = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* e = dlerror();
      a->error = std::string("dlopen(libcudnn.so.9) failed: ") + (e ? e : "?");
      return a;
    }
    std::string missing;
    auto sym = [&](auto* fn, const char* name, bool required) {
      void* p = dlsym(lib, name);
      if (p == nullptr && required) missing += std::string(missing.empty() ? "" : ", ") + name;
      *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)>>(p);
    };
    sym(&a->GetVersion, "cudnnGetVersion", true);
    sym(&a->GetErrorString, "cudnnGetErrorString", true);
    sym(&a->GetLastErrorString, "cudnnGetLastErrorString", false);
    sym(&a->Create, "cudnnCreate", true);
    sym(&a->SetStream, "cudnnSetStream", true);
    sym(&a->CreateDescriptor, "cudnnBackendCreateDescriptor", true);
    sym(&a->DestroyDescriptor, "cudnnBackendDestroyDescriptor", true);
    sym(&a->SetAttribute, "cudnnBackendSetAttribute", true);
    sym(&a->GetAttribute, "cudnnBackendGetAttribute", true);
    sym(&a->Finalize, "cudnnBackendFinalize", true);
    sym(&a->Execute, "cudnnBackendExecute", true);
    if (!missing.empty()) {
      a->error = "libcudnn.so.9 lacks " + missing;
      return a;
    }
    a->version = a->GetVersion();
    if (a->version < 90000 || a->version >= 100000) {
      a->error = "libcudnn.so.9 reports version " + std::to_string(a->version) + " (need 9.x)";
      return a;
    }
    a->ok = true;
    return a;
  }();
  return *api;
}

std::string VersionString(size_t v) {
  return std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." +
         std::to_string(v % 100);
}

// "CUDNN_STATUS_...: <cuDNN's last error message>".
std::string StatusText(const Api& api, cudnnStatus_t st) {
  std::string s = api.GetErrorString ? api.GetErrorString(st) : "?";
  s += " (" + std::to_string(static_cast<int>(st)) + ")";
  if (api.GetLastErrorString) {
    char buf[1024] = {0};
    api.GetLastErrorString(buf, sizeof(buf));
    if (buf[0] != '\0') s += std::string(": ") + buf;
  }
  return s;
}

#define SDPO_CUDNN_CHECK(api, call, ...)                                                  \
  do {                                                                                    \
    const cudnnStatus_t sdpo_cudnn_st_ = (call);                                          \
    if (sdpo_cudnn_st_ != CUDNN_STATUS_SUCCESS) {                                         \
      SDPO_FAIL("attention (cuDNN ", VersionString((api).version), "): ", __VA_ARGS__,    \
                " failed: ", StatusText((api), sdpo_cudnn_st_));                          \
    }                                                                                     \
  } while (0)

// A backend descriptor, destroyed with its owner.
class Desc {
 public:
  Desc() = default;
  Desc(const Api* api, cudnnBackendDescriptorType_t type, const std::string& what) : api_(api) {
    SDPO_CUDNN_CHECK(*api, api->CreateDescriptor(type, &d_), "create descriptor ", what);
  }
  ~Desc() {
    if (d_ != nullptr) api_->DestroyDescriptor(d_);
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  cudnnBackendDescriptor_t get() const { return d_; }

 private:
  const Api* api_ = nullptr;
  cudnnBackendDescriptor_t d_ = nullptr;
};
using DescPtr = std::unique_ptr<Desc>;

// Builds one operation graph; owns every descriptor of it (kept alive with the plan).
class GraphBuilder {
 public:
  GraphBuilder(const Api& api, const char* direction) : api_(api), dir_(direction) {}

  DescPtr NewDesc(cudnnBackendDescriptorType_t type, const std::string& what) {
    return std::make_unique<Desc>(&api_, type, std::string(dir_) + " " + what);
  }
  void Set(const Desc& d, cudnnBackendAttributeName_t attr, cudnnBackendAttributeType_t type,
           int64_t count, const void* value, const std::string& what) {
    SDPO_CUDNN_CHECK(api_, api_.SetAttribute(d.get(), attr, type, count, value), dir_,
                     " set attribute ", what);
  }
  void Finalize(const Desc& d, const std::string& what) {
    SDPO_CUDNN_CHECK(api_, api_.Finalize(d.get()), dir_, " finalize ", what);
  }

  // A tensor; returns its uid. dims/strides of 4 entries.
  int64_t Tensor(const std::string& name, cudnnDataType_t type, std::vector<int64_t> dims,
                 std::vector<int64_t> strides, bool is_virtual, bool by_value = false) {
    const int64_t uid = next_uid_++;
    DescPtr d = NewDesc(CUDNN_BACKEND_TENSOR_DESCRIPTOR, "tensor " + name);
    const std::string w = "tensor " + name;
    Set(*d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, w + " DATA_TYPE");
    Set(*d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, static_cast<int64_t>(dims.size()),
        dims.data(), w + " DIMENSIONS");
    Set(*d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, static_cast<int64_t>(strides.size()),
        strides.data(), w + " STRIDES");
    Set(*d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, w + " UNIQUE_ID");
    const int64_t alignment = 16;
    Set(*d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment,
        w + " BYTE_ALIGNMENT");
    const bool virt = is_virtual;
    Set(*d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt, w + " IS_VIRTUAL");
    if (by_value) {
      const bool bv = true;
      Set(*d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &bv, w + " IS_BY_VALUE");
    }
    Finalize(*d, w);
    tensors_[uid] = std::move(d);
    names_[uid] = name;
    return uid;
  }
  // A by-value f32 / int32 scalar [1,1,1,1].
  int64_t Scalar(const std::string& name, cudnnDataType_t type) {
    return Tensor(name, type, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
  }

  // y = op(x [, b [, t]]); b/t = -1 when absent; axis >= 0 for GEN_INDEX.
  void Pointwise(const std::string& name, cudnnPointwiseMode_t mode, int64_t x, int64_t b,
                 int64_t y, cudnnDataType_t prec = CUDNN_DATA_FLOAT, int64_t t = -1,
                 int64_t axis = -1) {
    DescPtr pw = NewDesc(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, "pointwise desc " + name);
    Set(*pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, name + " MODE");
    Set(*pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec, name + " MATH_PREC");
    if (axis >= 0) {
      Set(*pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis, name + " AXIS");
    }
    Finalize(*pw, "pointwise desc " + name);
    DescPtr op = NewDesc(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, "pointwise op " + name);
    SetDesc(*op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw->get(), name + " PW_DESCRIPTOR");
    SetDesc(*op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, T(x), name + " XDESC");
    if (b >= 0) SetDesc(*op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, T(b), name + " BDESC");
    SetDesc(*op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, T(y), name + " YDESC");
    if (t >= 0) SetDesc(*op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, T(t), name + " TDESC");
    Finalize(*op, "pointwise op " + name);
    AddOp(std::move(pw), std::move(op));
  }

  void Reduction(const std::string& name, cudnnReduceTensorOp_t red, int64_t x, int64_t y) {
    DescPtr rd = NewDesc(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, "reduction desc " + name);
    Set(*rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &red,
        name + " REDUCTION_OPERATOR");
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    Set(*rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp,
        name + " REDUCTION_COMP_TYPE");
    Finalize(*rd, "reduction desc " + name);
    DescPtr op = NewDesc(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, "reduction op " + name);
    SetDesc(*op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, T(x), name + " XDESC");
    SetDesc(*op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, T(y), name + " YDESC");
    SetDesc(*op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, rd->get(), name + " DESC");
    Finalize(*op, "reduction op " + name);
    AddOp(std::move(rd), std::move(op));
  }

  void Matmul(const std::string& name, int64_t a, int64_t b, int64_t c, int64_t m_override = -1,
              int64_t n_override = -1, int64_t k_override = -1) {
    DescPtr md = NewDesc(CUDNN_BACKEND_MATMUL_DESCRIPTOR, "matmul desc " + name);
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    Set(*md, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, name + " COMP_TYPE");
    Finalize(*md, "matmul desc " + name);
    DescPtr op = NewDesc(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, "matmul op " + name);
    SetDesc(*op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, T(a), name + " ADESC");
    SetDesc(*op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, T(b), name + " BDESC");
    SetDesc(*op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, T(c), name + " CDESC");
    SetDesc(*op, CUDNN_ATTR_OPERATION_MATMUL_DESC, md->get(), name + " DESC");
    if (m_override >= 0) {
      SetDesc(*op, CUDNN_ATTR_OPERATION_MATMUL_GEMM_M_OVERRIDE_DESC, T(m_override),
              name + " GEMM_M_OVERRIDE_DESC");
    }
    if (n_override >= 0) {
      SetDesc(*op, CUDNN_ATTR_OPERATION_MATMUL_GEMM_N_OVERRIDE_DESC, T(n_override),
              name + " GEMM_N_OVERRIDE_DESC");
    }
    if (k_override >= 0) {
      SetDesc(*op, CUDNN_ATTR_OPERATION_MATMUL_GEMM_K_OVERRIDE_DESC, T(k_override),
              name + " GEMM_K_OVERRIDE_DESC");
    }
    Finalize(*op, "matmul op " + name);
    AddOp(std::move(md), std::move(op));
  }

  void Reshape(const std::string& name, int64_t x, int64_t y) {
    DescPtr op = NewDesc(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, "reshape op " + name);
    SetDesc(*op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, T(x), name + " XDESC");
    SetDesc(*op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, T(y), name + " YDESC");
    Finalize(*op, "reshape op " + name);
    AddOp(nullptr, std::move(op));
  }

  const std::vector<cudnnBackendDescriptor_t>& ops() const { return ops_; }
  std::vector<DescPtr> TakeOwned() {
    for (auto& [uid, d] : tensors_) owned_.push_back(std::move(d));
    tensors_.clear();
    return std::move(owned_);
  }

 private:
  cudnnBackendDescriptor_t T(int64_t uid) {
    auto it = tensors_.find(uid);
    SDPO_CHECK(it != tensors_.end(), "attention (cuDNN): internal: no tensor with uid ", uid);
    return it->second->get();
  }
  void SetDesc(const Desc& d, cudnnBackendAttributeName_t attr, cudnnBackendDescriptor_t value,
               const std::string& what) {
    Set(d, attr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &value, what);
  }
  void AddOp(DescPtr helper, DescPtr op) {
    ops_.push_back(op->get());
    if (helper) owned_.push_back(std::move(helper));
    owned_.push_back(std::move(op));
  }

  const Api& api_;
  const char* dir_;
  int64_t next_uid_ = 1;
  std::map<int64_t, DescPtr> tensors_;
  std::map<int64_t, std::string> names_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  std::vector<DescPtr> owned_;
};

// Uids of the non-virtual tensors a plan is executed with.
struct Uids {
  int64_t q = -1, k = -1, v = -1, o = -1, stats = -1, scale = -1;  // forward and backward
  int64_t dout = -1, dq = -1, dk = -1, dv = -1, one = -1, softmax_sum = -1, dq_accum = -1;
  int64_t seq_q = -1, seq_kv = -1, neg_inf = -1;
};

struct Plan {
  std::vector<DescPtr> descs;  // graph, tensors, ops, engine config, plan: alive together
  cudnnBackendDescriptor_t plan = nullptr;
  int64_t workspace_bytes = 0;
  Uids uids;
  bool padding_mask = false;
  float neg_inf_value = 0;
  std::string engine;  // which config finalized, for error messages
  std::string error;   // non-empty: building failed (not retried)
};

using PlanKey = std::tuple<int, bool, int, int64_t, int64_t, int64_t, int64_t, int64_t>;

struct DeviceState {
  cudnnHandle_t handle = nullptr;
  std::map<PlanKey, std::unique_ptr<Plan>> plans;
};

std::mutex g_mu;
std::map<int, DeviceState>& States() {
  static auto* m = new std::map<int, DeviceState>();
  return *m;
}

cudnnDataType_t IoType(DType t) { return t == kBF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF; }

// Finds an engine config whose execution plan finalizes: heuristics mode A first, then every
// engine by global index.
void MakeExecutionPlan(const Api& api, cudnnHandle_t handle, GraphBuilder& g, Plan* plan,
                       const char* dir) {
  DescPtr graph = g.NewDesc(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph");
  // HANDLE is deprecated in recent 9.x but accepted; a failure here is not fatal.
  api.SetAttribute(graph->get(), CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  g.Set(*graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
        static_cast<int64_t>(g.ops().size()), g.ops().data(), "operation graph OPS");
  g.Finalize(*graph, "operation graph");
  cudnnBackendDescriptor_t graph_raw = graph->get();

  std::string tried;
  auto try_config = [&](DescPtr cfg, const std::string& label) -> bool {
    auto p = std::make_unique<Desc>(&api, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR,
                                    std::string(dir) + " execution plan");
    api.SetAttribute(p->get(), CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    cudnnBackendDescriptor_t cfg_raw = cfg->get();
    cudnnStatus_t st = api.SetAttribute(p->get(), CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                        CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg_raw);
    if (st == CUDNN_STATUS_SUCCESS) st = api.Finalize(p->get());
    if (st != CUDNN_STATUS_SUCCESS) {
      if (tried.size() < 600) tried += "; " + label + ": " + StatusText(api, st);
      return false;
    }
    int64_t ws = 0, n = 0;
    SDPO_CUDNN_CHECK(api,
                     api.GetAttribute(p->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                      CUDNN_TYPE_INT64, 1, &n, &ws),
                     dir, " get EXECUTION_PLAN_WORKSPACE_SIZE");
    plan->workspace_bytes = ws;
    plan->plan = p->get();
    plan->engine = label;
    plan->descs.push_back(std::move(cfg));
    plan->descs.push_back(std::move(p));
    return true;
  };

  bool found = false;
  {
    DescPtr heur = g.NewDesc(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "engine heuristics");
    g.Set(*heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
          &graph_raw, "engine heuristics OPERATION_GRAPH");
    const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    g.Set(*heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode,
          "engine heuristics MODE");
    cudnnStatus_t st = api.Finalize(heur->get());
    int64_t count = 0;
    if (st == CUDNN_STATUS_SUCCESS) {
      st = api.GetAttribute(heur->get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr);
    }
    if (st != CUDNN_STATUS_SUCCESS) {
      tried += "; heuristics mode A: " + StatusText(api, st);
      count = 0;
    }
    if (count > 0) {
      std::vector<DescPtr> cfgs;
      std::vector<cudnnBackendDescriptor_t> raw;
      for (int64_t i = 0; i < count; ++i) {
        cfgs.push_back(g.NewDesc(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine config"));
        raw.push_back(cfgs.back()->get());
      }
      int64_t got = 0;
      st = api.GetAttribute(heur->get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                            CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, raw.data());
      if (st != CUDNN_STATUS_SUCCESS) {
        tried += "; heuristics results: " + StatusText(api, st);
        got = 0;
      }
      for (int64_t i = 0; i < got && i < count && !found; ++i) {
        found = try_config(std::move(cfgs[i]), "heuristic config " + std::to_string(i));
      }
    } else if (st == CUDNN_STATUS_SUCCESS) {
      tried += "; heuristics mode A: no engine config";
    }
  }
  if (!found) {
    int64_t engines = 0, n = 0;
    cudnnStatus_t st = api.GetAttribute(graph_raw, CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT,
                                        CUDNN_TYPE_INT64, 1, &n, &engines);
    if (st != CUDNN_STATUS_SUCCESS) tried += "; ENGINE_GLOBAL_COUNT: " + StatusText(api, st);
    for (int64_t i = 0; st == CUDNN_STATUS_SUCCESS && i < engines && !found; ++i) {
      auto engine = std::make_unique<Desc>(&api, CUDNN_BACKEND_ENGINE_DESCRIPTOR,
                                           std::string(dir) + " engine");
      cudnnStatus_t es = api.SetAttribute(engine->get(), CUDNN_ATTR_ENGINE_OPERATION_GRAPH,
                                          CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph_raw);
      if (es == CUDNN_STATUS_SUCCESS) {
        es = api.SetAttribute(engine->get(), CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1,
                              &i);
      }
      if (es == CUDNN_STATUS_SUCCESS) es = api.Finalize(engine->get());
      if (es != CUDNN_STATUS_SUCCESS) continue;  // engine does not support this graph
      auto cfg = std::make_unique<Desc>(&api, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR,
                                        std::string(dir) + " engine config");
      cudnnBackendDescriptor_t engine_raw = engine->get();
      es = api.SetAttribute(cfg->get(), CUDNN_ATTR_ENGINECFG_ENGINE,
                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &engine_raw);
      if (es == CUDNN_STATUS_SUCCESS) es = api.Finalize(cfg->get());
      if (es != CUDNN_STATUS_SUCCESS) {
        if (tried.size() < 600) tried += "; engine " + std::to_string(i) + " config: " + StatusText(api, es);
        continue;
      }
      found = try_config(std::move(cfg), "engine " + std::to_string(i));
      if (found) plan->descs.push_back(std::move(engine));
    }
    if (st == CUDNN_STATUS_SUCCESS && engines == 0) tried += "; no engine at all";
  }
  plan->descs.push_back(std::move(graph));
  if (!found) {
    SDPO_FAIL("attention (cuDNN ", VersionString(api.version), "): ", dir,
              ": no engine config finalizes an execution plan", tried);
  }
}

void AddPaddingMask(GraphBuilder& g, Plan* p, int64_t* x, const std::vector<int64_t>& dims,
                    const std::vector<int64_t>& strides, int pass) {
  const std::string s = std::to_string(pass);
  const int64_t row = g.Tensor("pad_row_idx" + s, CUDNN_DATA_INT32, dims, strides, true);
  g.Pointwise("gen_row_idx" + s, CUDNN_POINTWISE_GEN_INDEX, *x, -1, row, CUDNN_DATA_INT32, -1, 2);
  const int64_t col = g.Tensor("pad_col_idx" + s, CUDNN_DATA_INT32, dims, strides, true);
  g.Pointwise("gen_col_idx" + s, CUDNN_POINTWISE_GEN_INDEX, *x, -1, col, CUDNN_DATA_INT32, -1, 3);
  const int64_t row_ok = g.Tensor("pad_row_ok" + s, CUDNN_DATA_BOOLEAN, dims, strides, true);
  g.Pointwise("lt_row_sq" + s, CUDNN_POINTWISE_CMP_LT, row, p->uids.seq_q, row_ok,
              CUDNN_DATA_BOOLEAN);
  const int64_t col_ok = g.Tensor("pad_col_ok" + s, CUDNN_DATA_BOOLEAN, dims, strides, true);
  g.Pointwise("lt_col_skv" + s, CUDNN_POINTWISE_CMP_LT, col, p->uids.seq_kv, col_ok,
              CUDNN_DATA_BOOLEAN);
  const int64_t ok = g.Tensor("pad_ok" + s, CUDNN_DATA_BOOLEAN, dims, strides, true);
  g.Pointwise("and_row_col" + s, CUDNN_POINTWISE_LOGICAL_AND, row_ok, col_ok, ok,
              CUDNN_DATA_BOOLEAN);
  const int64_t y = g.Tensor("pad_selected" + s, CUDNN_DATA_FLOAT, dims, strides, true);
  g.Pointwise("select_padding" + s, CUDNN_POINTWISE_BINARY_SELECT, *x, p->uids.neg_inf, y,
              CUDNN_DATA_FLOAT, ok);
  *x = y;
}

std::unique_ptr<Plan> BuildPlan(const Api& api, cudnnHandle_t handle, bool backward, DType dtype,
                                int64_t b, int64_t h, int64_t lq, int64_t lk, int64_t d) {
  const char* dir = backward ? "backward" : "forward";
  auto plan = std::make_unique<Plan>();
  GraphBuilder g(api, dir);
  Uids& u = plan->uids;
  const cudnnDataType_t io = IoType(dtype);
  const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
  const std::vector<int64_t> q_dims{b, h, lq, d}, q_str{h * lq * d, lq * d, d, 1};
  const std::vector<int64_t> kv_dims{b, h, lk, d}, kv_str{h * lk * d, lk * d, d, 1};
  const std::vector<int64_t> kt_dims{b, h, d, lk}, kt_str{h * lk * d, lk * d, 1, d};
  const std::vector<int64_t> s_dims{b, h, lq, lk}, s_str{h * lq * lk, lq * lk, lk, 1};
  const std::vector<int64_t> st_dims{b, h, lk, lq}, st_str{h * lq * lk, lq * lk, 1, lk};
  const std::vector<int64_t> r_dims{b, h, lq, 1}, r_str{h * lq, lq, 1, 1};

  u.q = g.Tensor("Q", io, q_dims, q_str, false);
  u.k = g.Tensor("KT", io, kt_dims, kt_str, false);
  u.scale = g.Scalar("SCALE", f32);
  u.stats = g.Tensor("STATS", f32, r_dims, r_str, false);
  if (!backward) {
    u.v = g.Tensor("V", io, kv_dims, kv_str, false);
    u.o = g.Tensor("O", io, q_dims, q_str, false);
    const int64_t s = g.Tensor("S", f32, s_dims, s_str, true);
    g.Matmul("bmm1 Q*KT", u.q, u.k, s);
    const int64_t ss = g.Tensor("S_scaled", f32, s_dims, s_str, true);
    g.Pointwise("attn_scale", CUDNN_POINTWISE_MUL, s, u.scale, ss);
    const int64_t m = g.Tensor("M", f32, r_dims, r_str, true);
    g.Reduction("softmax max", CUDNN_REDUCE_TENSOR_MAX, ss, m);
    const int64_t sm = g.Tensor("S_sub_M", f32, s_dims, s_str, true);
    g.Pointwise("softmax sub", CUDNN_POINTWISE_SUB, ss, m, sm);
    const int64_t e = g.Tensor("E", f32, s_dims, s_str, true);
    g.Pointwise("softmax exp", CUDNN_POINTWISE_EXP, sm, -1, e);
    const int64_t z = g.Tensor("Z", f32, r_dims, r_str, true);
    g.Reduction("softmax sum", CUDNN_REDUCE_TENSOR_ADD, e, z);
    const int64_t lz = g.Tensor("logZ", f32, r_dims, r_str, true);
    g.Pointwise("softmax log", CUDNN_POINTWISE_LOG, z, -1, lz);
    g.Pointwise("softmax stats", CUDNN_POINTWISE_ADD, m, lz, u.stats);
    const int64_t p = g.Tensor("P", io, s_dims, s_str, true);
    g.Pointwise("softmax div", CUDNN_POINTWISE_DIV, e, z, p);
    g.Matmul("bmm2 P*V", p, u.v, u.o);
  } else {
    u.v = g.Tensor("VT", io, kt_dims, kt_str, false);
    u.o = g.Tensor("O", io, q_dims, q_str, false);
    u.dout = g.Tensor("dO", io, q_dims, q_str, false);
    u.dq = g.Tensor("dQ", io, q_dims, q_str, false);
    u.dk = g.Tensor("dK", io, kv_dims, kv_str, false);
    u.dv = g.Tensor("dV", io, kv_dims, kv_str, false);
    u.one = g.Scalar("ONE", f32);
    u.softmax_sum = g.Tensor("SOFTMAX_SUM", f32, r_dims, r_str, false);
    u.dq_accum = g.Tensor("DQ_ACCUM", f32, q_dims, q_str, false);
    const size_t version = api.version;
    plan->padding_mask = version <= 91500 && lk % 128 != 0;
    int64_t mo_q = -1, mo_kv = -1;
    if (plan->padding_mask) {
      u.seq_q = g.Tensor("SEQ_LEN_Q", CUDNN_DATA_INT32, {b, 1, 1, 1}, {1, 1, 1, 1}, false);
      u.seq_kv = g.Tensor("SEQ_LEN_KV", CUDNN_DATA_INT32, {b, 1, 1, 1}, {1, 1, 1, 1}, false);
      u.neg_inf = g.Scalar("NEG_INF", f32);
      plan->neg_inf_value = version < 91000 ? std::numeric_limits<float>::lowest()
                                            : -std::numeric_limits<float>::infinity();
      mo_q = u.seq_q;
      mo_kv = u.seq_kv;
    }
    // softmax_sum = rowsum(dO * O)
    const int64_t t1 = g.Tensor("dO_mul_O", f32, q_dims, {h * lq * d, lq * d, h * d, 1}, true);
    g.Pointwise("mul dO O", CUDNN_POINTWISE_MUL, u.dout, u.o, t1);
    const int64_t t2 = g.Tensor("rowsum_dO_O", f32, r_dims, r_str, true);
    g.Reduction("reduce dO O", CUDNN_REDUCE_TENSOR_ADD, t1, t2);
    g.Pointwise("scale dropout inv", CUDNN_POINTWISE_MUL, t2, u.one, u.softmax_sum);
    // P = exp(scale * Q KT - stats)
    const int64_t s = g.Tensor("S", f32, s_dims, s_str, true);
    g.Matmul("matmul Q KT", u.q, u.k, s, mo_q, mo_kv, -1);
    const int64_t ss = g.Tensor("S_scaled", f32, s_dims, s_str, true);
    g.Pointwise("mul S attn_scale", CUDNN_POINTWISE_MUL, s, u.scale, ss);
    int64_t sm = g.Tensor("S_sub_stats", f32, s_dims, s_str, true);
    g.Pointwise("sub S stats", CUDNN_POINTWISE_SUB, ss, u.stats, sm);
    if (plan->padding_mask) {
      AddPaddingMask(g, plan.get(), &sm, s_dims, s_str, 1);
      if (version >= 90000 && version < 91000) {
        AddPaddingMask(g, plan.get(), &sm, s_dims, s_str, 2);
      }
    }
    const int64_t p = g.Tensor("P", f32, s_dims, s_str, true);
    g.Pointwise("exp S", CUDNN_POINTWISE_EXP, sm, -1, p);
    // dV = P^T dO
    const int64_t pt = g.Tensor("PT", io, st_dims, st_str, true);
    g.Reshape("reshape P", p, pt);
    g.Matmul("matmul PT dO", pt, u.dout, u.dv, mo_kv, -1, mo_q);
    // dS = scale * P * (dO VT - softmax_sum)
    const int64_t dp = g.Tensor("dP", f32, s_dims, s_str, true);
    g.Matmul("matmul dO VT", u.dout, u.v, dp, mo_q, mo_kv, -1);
    const int64_t t3 = g.Tensor("dP_sub_sum", f32, s_dims, s_str, true);
    g.Pointwise("sub dP softmax_sum", CUDNN_POINTWISE_SUB, dp, u.softmax_sum, t3);
    const int64_t t4 = g.Tensor("dP_mul_P", f32, s_dims, s_str, true);
    g.Pointwise("mul dP P", CUDNN_POINTWISE_MUL, t3, p, t4);
    const int64_t ds = g.Tensor("dS", f32, s_dims, s_str, true);
    g.Pointwise("mul dS attn_scale", CUDNN_POINTWISE_MUL, t4, u.scale, ds);
    // dK = dS^T Q
    const int64_t dst = g.Tensor("dST", io, st_dims, st_str, true);
    g.Reshape("reshape dS", ds, dst);
    g.Matmul("matmul dST Q", dst, u.q, u.dk, mo_kv, -1, mo_q);
    // dQ = dS K (f32 accumulation buffer, then converted)
    const int64_t kr = g.Tensor("K", f32, kv_dims, kv_str, true);
    g.Reshape("reshape KT", u.k, kr);
    g.Matmul("matmul dS K", ds, kr, u.dq_accum, mo_q, -1, mo_kv);
    g.Pointwise("identity dQ", CUDNN_POINTWISE_IDENTITY, u.dq_accum, -1, u.dq);
  }
  MakeExecutionPlan(api, handle, g, plan.get(), dir);
  std::vector<DescPtr> owned = g.TakeOwned();
  for (auto& dsc : owned) plan->descs.push_back(std::move(dsc));
  return plan;
}

size_t Align256(size_t n) { return (n + 255) / 256 * 256; }

std::once_flag g_announce_once, g_fallback_once;

// Builds (or finds) the plan and executes it; throws on any failure.
void Run(bool backward, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
         const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
         const Tensor& dv, double scale) {
  const Api& api = GetApi();
  SDPO_CHECK(api.ok, "attention (cuDNN): unavailable: ", api.error);
  const int device = q.device().index;
  DeviceGuard guard(device);
  const int64_t b = q.size(0), h = q.size(1), lq = q.size(2), lk = k.size(2), d = q.size(3);
  cudaStream_t stream = CurrentStream(device);

  std::lock_guard<std::mutex> lock(g_mu);
  DeviceState& state = States()[device];
  if (state.handle == nullptr) {
    SDPO_CUDNN_CHECK(api, api.Create(&state.handle), "cudnnCreate on device ", device);
  }
  SDPO_CUDNN_CHECK(api, api.SetStream(state.handle, stream), "cudnnSetStream");
  const PlanKey key{static_cast<int>(q.dtype()), backward, 0, b, h, lq, lk, d};
  auto it = state.plans.find(key);
  if (it == state.plans.end()) {
    auto plan = std::make_unique<Plan>();
    try {
      plan = BuildPlan(api, state.handle, backward, q.dtype(), b, h, lq, lk, d);
    } catch (const Error& e) {
      plan->error = e.what();
    }
    it = state.plans.emplace(key, std::move(plan)).first;
  }
  Plan& plan = *it->second;
  if (!plan.error.empty()) SDPO_FAIL(plan.error);
  const Uids& u = plan.uids;

  // Workspace: cuDNN's, then our f32 buffers (backward) and the padding-mask lengths.
  const size_t cudnn_ws = Align256(static_cast<size_t>(plan.workspace_bytes));
  const size_t sum_bytes = backward ? Align256(static_cast<size_t>(b * h * lq) * 4) : 0;
  const size_t accum_bytes = backward ? Align256(static_cast<size_t>(b * h * lq * d) * 4) : 0;
  const size_t seq_bytes = plan.padding_mask ? Align256(static_cast<size_t>(b) * 4) : 0;
  const size_t total = cudnn_ws + sum_bytes + accum_bytes + 2 * seq_bytes;
  Tensor ws;
  char* base = nullptr;
  if (total > 0) {
    ws = Tensor::Empty({static_cast<int64_t>(total)}, kBool, q.device());
    base = static_cast<char*>(ws.raw_data());
  }
  void* cudnn_ptr = plan.workspace_bytes > 0 ? base : nullptr;
  char* sum_ptr = base + cudnn_ws;
  char* accum_ptr = sum_ptr + sum_bytes;
  char* seq_q_ptr = accum_ptr + accum_bytes;
  char* seq_kv_ptr = seq_q_ptr + seq_bytes;
  if (backward) {
    // cuDNN < 9.6 expects a zeroed dQ accumulator; cheap enough to always clear.
    SDPO_CUDA_CHECK(cudaMemsetAsync(accum_ptr, 0, accum_bytes, stream));
  }
  if (plan.padding_mask) {
    std::vector<int32_t> lens(static_cast<size_t>(2 * b));
    for (int64_t i = 0; i < b; ++i) {
      lens[i] = static_cast<int32_t>(lq);
      lens[b + i] = static_cast<int32_t>(lk);
    }
    SDPO_CUDA_CHECK(cudaMemcpyAsync(seq_q_ptr, lens.data(), b * 4, cudaMemcpyHostToDevice, stream));
    SDPO_CUDA_CHECK(
        cudaMemcpyAsync(seq_kv_ptr, lens.data() + b, b * 4, cudaMemcpyHostToDevice, stream));
    // Pageable source: the copies are staged before returning, but keep it simple and certain.
    SDPO_CUDA_CHECK(cudaStreamSynchronize(stream));
  }

  float scale_f = static_cast<float>(scale);
  float one_f = 1.0f;
  float neg_inf_f = plan.neg_inf_value;
  std::vector<int64_t> uids;
  std::vector<void*> ptrs;
  auto add = [&](int64_t uid, const void* p) {
    if (uid < 0) return;
    uids.push_back(uid);
    ptrs.push_back(const_cast<void*>(p));
  };
  add(u.q, q.raw_data());
  add(u.k, k.raw_data());
  add(u.v, v.raw_data());
  add(u.o, o.raw_data());
  add(u.stats, lse.raw_data());
  add(u.scale, &scale_f);
  if (backward) {
    add(u.dout, dout.raw_data());
    add(u.dq, dq.raw_data());
    add(u.dk, dk.raw_data());
    add(u.dv, dv.raw_data());
    add(u.one, &one_f);
    add(u.softmax_sum, sum_ptr);
    add(u.dq_accum, accum_ptr);
  }
  if (plan.padding_mask) {
    add(u.seq_q, seq_q_ptr);
    add(u.seq_kv, seq_kv_ptr);
    add(u.neg_inf, &neg_inf_f);
  }
  const char* dir = backward ? "backward" : "forward";
  Desc pack(&api, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, std::string(dir) + " variant pack");
  const int64_t n = static_cast<int64_t>(uids.size());
  SDPO_CUDNN_CHECK(api,
                   api.SetAttribute(pack.get(), CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                                    CUDNN_TYPE_INT64, n, uids.data()),
                   dir, " variant pack UNIQUE_IDS");
  SDPO_CUDNN_CHECK(api,
                   api.SetAttribute(pack.get(), CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                    CUDNN_TYPE_VOID_PTR, n, ptrs.data()),
                   dir, " variant pack DATA_POINTERS");
  SDPO_CUDNN_CHECK(api,
                   api.SetAttribute(pack.get(), CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                    CUDNN_TYPE_VOID_PTR, 1, &cudnn_ptr),
                   dir, " variant pack WORKSPACE");
  SDPO_CUDNN_CHECK(api, api.Finalize(pack.get()), dir, " finalize variant pack");
  const cudnnStatus_t st = api.Execute(state.handle, plan.plan, pack.get());
  if (st != CUDNN_STATUS_SUCCESS) {
    plan.error = absl::StrCat("attention (cuDNN ", VersionString(api.version), "): ", dir,
                              " cudnnBackendExecute (", plan.engine, ", B=", b, " H=", h,
                              " Lq=", lq, " Lk=", lk, " D=", d, ") failed: ", StatusText(api, st));
    SDPO_FAIL(plan.error);
  }
  std::call_once(g_announce_once, [&] {
    std::fprintf(stderr, "attention: cuDNN %s fused SDPA\n", VersionString(api.version).c_str());
  });
}

void CheckForced(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                 const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                 const Tensor& dv, bool backward) {
  std::string why;
  SDPO_CHECK(CudnnAttentionAvailable(&why), "attention (cuDNN path 3): unavailable: ", why);
  SDPO_CHECK(ShapeEligible(q, k, v, Tensor(), &why), "attention (cuDNN path 3): not supported: ",
             why, " (q ", q.str(), ", k ", k.str(), ", v ", v.str(), ")");
  why = OperandProblem(q, o, lse, dout, dq, dk, dv, backward);
  SDPO_CHECK(why.empty(), "attention (cuDNN path 3): ", why);
}

void NoteFallback(const std::string& what) {
  std::call_once(g_fallback_once, [&] {
    std::fprintf(stderr,
                 "attention: cuDNN fused SDPA failed, using sdpo's kernels instead (reported once): "
                 "%s\n",
                 what.c_str());
  });
}

}  // namespace

bool CudnnAttentionAvailable(std::string* reason) {
  if (EnvDisabled()) {
    if (reason) *reason = "disabled by SDPO_CUDNN_ATTENTION=0";
    return false;
  }
  const Api& api = GetApi();
  if (!api.ok && reason) *reason = api.error;
  return api.ok;
}

void CudnnAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                           const Tensor& out, const Tensor& lse) {
  CheckForced(q, k, v, out, lse, Tensor(), Tensor(), Tensor(), Tensor(), false);
  Run(false, q, k, v, out, lse, Tensor(), Tensor(), Tensor(), Tensor(), scale);
}

void CudnnAttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& out, const Tensor& lse, double scale, const Tensor& dq,
                            const Tensor& dk, const Tensor& dv) {
  CheckForced(q, k, v, out, lse, dout, dq, dk, dv, true);
  Run(true, q, k, v, out, lse, dout, dq, dk, dv, scale);
}

bool TryCudnnAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& mask, double scale, const Tensor& out,
                              const Tensor& lse) {
  if (!CudnnAttentionAvailable() || !ShapeEligible(q, k, v, mask, nullptr) ||
      !OperandProblem(q, out, lse, Tensor(), Tensor(), Tensor(), Tensor(), false).empty()) {
    return false;
  }
  try {
    Run(false, q, k, v, out, lse, Tensor(), Tensor(), Tensor(), Tensor(), scale);
    return true;
  } catch (const Error& e) {
    NoteFallback(e.what());
    return false;
  }
}

bool TryCudnnAttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& mask, const Tensor& out,
                               const Tensor& lse, double scale, const Tensor& dq,
                               const Tensor& dk, const Tensor& dv) {
  if (!CudnnAttentionAvailable() || !ShapeEligible(q, k, v, mask, nullptr) ||
      !OperandProblem(q, out, lse, dout, dq, dk, dv, true).empty()) {
    return false;
  }
  try {
    Run(true, q, k, v, out, lse, dout, dq, dk, dv, scale);
    return true;
  } catch (const Error& e) {
    NoteFallback(e.what());
    return false;
  }
}

#endif  // SDPO_CUDA_EMULATE

}  // namespace sdpo::cuda
