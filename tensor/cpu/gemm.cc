// Batched GEMM. f32/f64 products go to OpenBLAS (sgemm/dgemm, threaded by OpenBLAS with
// NumThreads() threads): Eigen's own GEMM measured about 3x slower on these machines (see
// docs/performance.md). Inside a parallel region (e.g. per-head attention) each call runs
// single-threaded on Eigen so that the pool's threads do not oversubscribe OpenBLAS's.
#include <cblas.h>

#include <Eigen/Core>

#include "tensor/cpu/cpu_kernels.h"
#include "tensor/ops.h"
#include "tensor/thread_pool.h"

namespace sdpo::cpu {
namespace {

template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMap = Eigen::Map<const RowMajor<T>>;
template <typename T>
using MutMap = Eigen::Map<RowMajor<T>>;

// C[m, n] = op(A) op(B), row-major, A stored [m, k] ([k, m] when ta), B [k, n] ([n, k] when tb).
// OpenBLAS threads for one product: its threads busy-wait between calls, which costs more than
// it gains below a few MFLOP (measured on the demo model's 64-wide layers).
int BlasThreads(int64_t m, int64_t n, int64_t k) {
  return static_cast<double>(m) * n * k < 8e6 ? 1 : NumThreads();
}

template <typename T>
void BlasGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, const T* b, T* c) {
  openblas_set_num_threads(BlasThreads(m, n, k));
  const CBLAS_TRANSPOSE tra = ta ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE trb = tb ? CblasTrans : CblasNoTrans;
  const int lda = static_cast<int>(ta ? m : k), ldb = static_cast<int>(tb ? k : n);
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, tra, trb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
  } else {
    cblas_dgemm(CblasRowMajor, tra, trb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, n);
  }
}

}  // namespace

template <typename T>
void MatMulRowMajor(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                    T* c) {
  if (!InParallelRegion()) {
    BlasGemm<T>(ta, tb, m, n, k, a, b, c);
    return;
  }
  MutMap<T> cm(c, m, n);
  ConstMap<T> am(a, ta ? k : m, ta ? m : k), bm(b, tb ? n : k, tb ? k : n);
  if (ta && tb) cm.noalias() = am.transpose() * bm.transpose();
  else if (ta) cm.noalias() = am.transpose() * bm;
  else if (tb) cm.noalias() = am * bm.transpose();
  else cm.noalias() = am * bm;
}
template void MatMulRowMajor<float>(bool, bool, int64_t, int64_t, int64_t, const float*,
                                    const float*, float*);
template void MatMulRowMajor<double>(bool, bool, int64_t, int64_t, int64_t, const double*,
                                     const double*, double*);

namespace {

template <typename T>
void GemmTyped(const Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb) {
  const int64_t batch = out.size(0), m = out.size(1), n = out.size(2);
  const int64_t k = ta ? a.size(1) : a.size(2);
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  const int64_t a_step = a.size(0) == 1 ? 0 : m * k;
  const int64_t b_step = b.size(0) == 1 ? 0 : k * n;

  // One product of rows [r0, r1) of batch i.
  auto product = [&](int64_t i, int64_t r0, int64_t r1) {
    const int64_t rows = r1 - r0;
    MutMap<T> c(po + i * m * n + r0 * n, rows, n);
    ConstMap<T> bm(pb + i * b_step, tb ? n : k, tb ? k : n);
    if (!ta) {
      ConstMap<T> am(pa + i * a_step + r0 * k, rows, k);
      if (tb) c.noalias() = am * bm.transpose(); else c.noalias() = am * bm;
    } else {
      ConstMap<T> am(pa + i * a_step, k, m);
      auto cols = am.middleCols(r0, rows);
      if (tb) c.noalias() = cols.transpose() * bm.transpose(); else c.noalias() = cols.transpose() * bm;
    }
  };

  if (!InParallelRegion()) {
    for (int64_t i = 0; i < batch; ++i) {
      BlasGemm<T>(ta, tb, m, n, k, pa + i * a_step, pb + i * b_step, po + i * m * n);
    }
    return;
  }
  const int threads = NumThreads();
  if (batch >= threads || m < 64) {
    ParallelFor(batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i) product(i, 0, m);
    });
  } else {
    // Split rows in multiples of 8 (keeps Eigen's register blocking intact).
    for (int64_t i = 0; i < batch; ++i) {
      int64_t blocks = (m + 7) / 8;
      ParallelFor(blocks, std::max<int64_t>(1, blocks / threads), [&](int64_t s, int64_t e) {
        product(i, s * 8, std::min(m, e * 8));
      });
    }
  }
}

}  // namespace

void Gemm(const Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb) {
  switch (out.dtype()) {
    case DType::kF32: return GemmTyped<float>(out, a, ta, b, tb);
    case DType::kF64: return GemmTyped<double>(out, a, ta, b, tb);
    case DType::kBF16:
    case DType::kF16: {  // computed in f32 on the CPU
      Tensor out32 = Tensor::Empty(out.shape(), kF32);
      GemmTyped<float>(out32, ops::Cast(a, kF32), ta, ops::Cast(b, kF32), tb);
      Copy(out, out32);
      return;
    }
    default: SDPO_FAIL("matmul: unsupported dtype ", DTypeName(out.dtype()));
  }
}

}  // namespace sdpo::cpu
