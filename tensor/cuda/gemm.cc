// GEMM through cuBLASLt: f32 (full f32, or TF32 when allowed), bf16 and f16 with f32
// accumulation, transposed operands, strided batches, bias and bias + tanh-GELU epilogues.
// f64, and every dtype under the CPU emulation, use the plain fallback kernel.
//
// Row-major out [B, M, N] = op(a) op(b) is computed as the column-major product
// out^T [N, M] = op(b)^T op(a)^T, so cuBLASLt's A is our b and its B is our a.
#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>

#include "tensor/cuda/cuda_ops.h"
#include "tensor/cuda/cuda_runtime.h"
#include "tensor/cuda/allocator.h"
#include "tensor/cuda/launchers.h"
#include "tensor/error.h"

#ifndef SDPO_CUDA_EMULATE
#include <cublasLt.h>
#endif

namespace sdpo::cuda {

namespace {
std::mutex g_tf32_mu;
int g_allow_tf32 = -1;  // -1: read SDPO_ALLOW_TF32 on first use
}  // namespace

void SetAllowTF32(bool allow) {
  std::lock_guard<std::mutex> lock(g_tf32_mu);
  g_allow_tf32 = allow ? 1 : 0;
}

bool AllowTF32() {
  std::lock_guard<std::mutex> lock(g_tf32_mu);
  if (g_allow_tf32 < 0) {
    const char* v = std::getenv("SDPO_ALLOW_TF32");
    g_allow_tf32 = (v != nullptr && v[0] == '1') ? 1 : 0;
  }
  return g_allow_tf32 == 1;
}

#ifndef SDPO_CUDA_EMULATE
namespace {

#define SDPO_CUBLAS_CHECK(call)                                                         \
  do {                                                                                  \
    const cublasStatus_t sdpo_st_ = (call);                                             \
    if (sdpo_st_ != CUBLAS_STATUS_SUCCESS) {                                            \
      ::sdpo::cuda::ThrowCudaError(#call, cublasLtGetStatusString(sdpo_st_), __FILE__, \
                                   __LINE__);                                           \
    }                                                                                   \
  } while (0)

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// One cached plan per problem shape.
using PlanKey = std::tuple<int, int, int, int, bool, bool, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int64_t, int, int, int, int>;

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo;
};

struct DeviceState {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::map<PlanKey, Plan> plans;
};

std::mutex g_mu;
std::map<int, DeviceState>& States() {
  static auto* m = new std::map<int, DeviceState>();
  return *m;
}

int AlignmentOf(const void* p) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  int a = 1;
  while (a < 256 && (v % (2 * a)) == 0) a *= 2;
  return a;
}

cudaDataType_t LtType(DType t) {
  switch (t) {
    case kF32: return CUDA_R_32F;
    case kBF16: return CUDA_R_16BF;
    case kF16: return CUDA_R_16F;
    default: SDPO_FAIL("matmul (cuBLASLt): unsupported dtype ", DTypeName(t));
  }
}

Plan MakePlan(cublasLtHandle_t handle, DType dtype, bool tf32, int64_t m, int64_t n, int64_t k,
              bool lt_trans_a, bool lt_trans_b, int64_t lda, int64_t ldb, int64_t ldc,
              int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c,
              Epilogue epilogue, int align_a, int align_b, int align_c) {
  Plan p;
  const cudaDataType_t type = LtType(dtype);
  const cublasComputeType_t compute =
      dtype == kF32 && tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  SDPO_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, compute, CUDA_R_32F));
  const cublasOperation_t ta = lt_trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = lt_trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  SDPO_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  SDPO_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (epilogue == Epilogue::kBias) epi = CUBLASLT_EPILOGUE_BIAS;
  if (epilogue == Epilogue::kBiasGeluTanh) epi = CUBLASLT_EPILOGUE_GELU_BIAS;
  SDPO_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  // Stored shapes (column-major): A is m x k (or k x m when transposed), B k x n (or n x k).
  SDPO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, type, lt_trans_a ? k : m,
                                               lt_trans_a ? m : k, lda));
  SDPO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, type, lt_trans_b ? n : k,
                                               lt_trans_b ? k : n, ldb));
  SDPO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, type, m, n, ldc));
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    for (auto [layout, stride] : {std::pair{p.a, stride_a}, std::pair{p.b, stride_b},
                                  std::pair{p.c, stride_c}}) {
      SDPO_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
          layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
      SDPO_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
          layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
    }
  }
  cublasLtMatmulPreference_t pref;
  SDPO_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kWorkspaceBytes;
  SDPO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  const uint32_t aa = align_a, ab = align_b, ac = align_c;
  SDPO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof(aa)));
  SDPO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof(ab)));
  SDPO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof(ac)));
  SDPO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof(ac)));
  cublasLtMatmulHeuristicResult_t result;
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.a, p.b, p.c, p.c, pref, 1,
                                                     &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    SDPO_FAIL("matmul (cuBLASLt): no algorithm for ", DTypeName(dtype), " m=", m, " n=", n,
              " k=", k, " batch=", batch, (st != CUBLAS_STATUS_SUCCESS ? ": " : ""),
              (st != CUBLAS_STATUS_SUCCESS ? cublasLtGetStatusString(st) : ""));
  }
  p.algo = result.algo;
  return p;
}

void LtGemm(const Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb,
            const Tensor& bias, Epilogue epilogue, int64_t batch_begin, int64_t batch_count,
            bool a_bcast, bool b_bcast) {
  const int device = out.device().index;
  const int64_t m = out.size(1), n = out.size(2);
  const int64_t k = ta ? a.size(1) : a.size(2);
  const size_t es = ElementSize(out.dtype());
  const char* pa = static_cast<const char*>(a.raw_data()) +
                   (a_bcast ? 0 : batch_begin * m * k * static_cast<int64_t>(es));
  const char* pb = static_cast<const char*>(b.raw_data()) +
                   (b_bcast ? 0 : batch_begin * k * n * static_cast<int64_t>(es));
  char* pc = static_cast<char*>(out.raw_data()) + batch_begin * m * n * static_cast<int64_t>(es);
  // Column-major problem: C' (n_lt = M columns of m_lt = N rows) = A' (b) x B' (a).
  const int64_t m_lt = n, n_lt = m;
  const bool lt_ta = tb, lt_tb = ta;
  const int64_t lda = tb ? k : n;
  const int64_t ldb = ta ? m : k;
  const int64_t ldc = n;
  const bool tf32 = out.dtype() == kF32 && AllowTF32();
  const int al_a = AlignmentOf(pb), al_b = AlignmentOf(pa), al_c = AlignmentOf(pc);
  std::lock_guard<std::mutex> lock(g_mu);
  DeviceState& state = States()[device];
  if (state.handle == nullptr) {
    SDPO_CUBLAS_CHECK(cublasLtCreate(&state.handle));
    state.workspace = DeviceAllocate(kWorkspaceBytes, device);
  }
  PlanKey key{static_cast<int>(out.dtype()), tf32 ? 1 : 0, static_cast<int>(epilogue), 0,
              lt_ta, lt_tb, m_lt, n_lt, k, batch_count, a_bcast ? 0 : 1, b_bcast ? 0 : 1,
              al_a, al_b, al_c, 0};
  auto it = state.plans.find(key);
  if (it == state.plans.end()) {
    Plan plan = MakePlan(state.handle, out.dtype(), tf32, m_lt, n_lt, k, lt_ta, lt_tb, lda, ldb,
                         ldc, batch_count, k * n, m * k, m * n, epilogue, al_a, al_b, al_c);
    it = state.plans.emplace(key, plan).first;
  }
  Plan& plan = it->second;
  if (epilogue != Epilogue::kNone) {
    const void* bias_ptr = bias.raw_data();
    SDPO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                     &bias_ptr, sizeof(bias_ptr)));
  }
  const float alpha = 1.0f, beta = 0.0f;
  SDPO_CUBLAS_CHECK(cublasLtMatmul(state.handle, plan.op, &alpha, pb, plan.a, pa, plan.b, &beta,
                                   pc, plan.c, pc, plan.c, &plan.algo, state.workspace,
                                   kWorkspaceBytes, CurrentStream(device)));
}

}  // namespace
#endif  // SDPO_CUDA_EMULATE

void GemmEx(const Tensor& out, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
            const Tensor& bias, Epilogue epilogue) {
  SDPO_CHECK(out.device().is_cuda() && a.device() == out.device() && b.device() == out.device(),
             "matmul (cuda): operands must be on the output's CUDA device: ", out.str(), ", ",
             a.str(), ", ", b.str());
  SDPO_CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype(),
             "matmul (cuda): dtype mismatch ", a.str(), ", ", b.str(), " -> ", out.str());
  SDPO_CHECK(out.dim() == 3 && a.dim() == 3 && b.dim() == 3 && out.is_contiguous() &&
                 a.is_contiguous() && b.is_contiguous(),
             "matmul (cuda): expects contiguous [B, R, C] operands");
  const int64_t batch = out.size(0), m = out.size(1), n = out.size(2);
  const int64_t k = trans_a ? a.size(1) : a.size(2);
  SDPO_CHECK((a.size(0) == batch || a.size(0) == 1) && (b.size(0) == batch || b.size(0) == 1),
             "matmul (cuda): batch mismatch ", a.str(), ", ", b.str(), " -> ", out.str());
  SDPO_CHECK((trans_a ? a.size(2) : a.size(1)) == m && (trans_b ? b.size(1) : b.size(2)) == n &&
                 (trans_b ? b.size(2) : b.size(1)) == k,
             "matmul (cuda): shapes do not match ", a.str(), (trans_a ? "^T" : ""), " x ",
             b.str(), (trans_b ? "^T" : ""), " -> ", out.str());
  if (epilogue != Epilogue::kNone) {
    SDPO_CHECK(bias.defined() && bias.dtype() == out.dtype() && bias.numel() == n &&
                   bias.is_contiguous() && bias.device() == out.device(),
               "matmul (cuda): bias must be a contiguous [", n, "] tensor of ",
               DTypeName(out.dtype()), " on ", out.device().str(), ", got ",
               bias.defined() ? bias.str() : "undefined");
  }
  if (out.numel() == 0) return;
  DeviceGuard guard(out.device().index);
  const bool a_bcast = a.size(0) == 1 && batch > 1;
  const bool b_bcast = b.size(0) == 1 && batch > 1;
#ifndef SDPO_CUDA_EMULATE
  if (out.dtype() != kF64 && k > 0) {
    if (!a_bcast && !b_bcast) {
      LtGemm(out, a, trans_a, b, trans_b, bias, epilogue, 0, batch, false, false);
    } else {
      // A broadcast operand: one product per batch (cuBLASLt batches want real strides).
      for (int64_t i = 0; i < batch; ++i) {
        LtGemm(out, a, trans_a, b, trans_b, bias, epilogue, i, 1, a_bcast, b_bcast);
      }
    }
    return;
  }
#endif
  const int64_t a_bs = a.size(0) == 1 ? 0 : m * k;
  const int64_t b_bs = b.size(0) == 1 ? 0 : k * n;
  LaunchGemmFallback(out.raw_data(), a.raw_data(), trans_a, a_bs, b.raw_data(), trans_b, b_bs,
                     epilogue == Epilogue::kNone ? nullptr : bias.raw_data(),
                     epilogue == Epilogue::kBiasGeluTanh, static_cast<int>(out.dtype()), batch, m,
                     n, k, CurrentStream(out.device().index));
}

}  // namespace sdpo::cuda
