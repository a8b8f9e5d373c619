// Batched GEMM. f32/f64 products go to OpenBLAS (sgemm/dgemm, threaded by OpenBLAS with
// NumThreads() threads): Eigen's own GEMM measured about 3x slower on these machines (see
// docs/performance.md). Inside a parallel region (e.g. per-head attention) each call runs
// single-threaded on Eigen so that the pool's threads do not oversubscribe OpenBLAS's.
// A `b` narrower than the output (a bf16 weight under f32 compute) is converted in panels of
// output columns, each panel used by one GEMM while it is still in cache (Debian's OpenBLAS has
// no sbgemm, and a bf16 GEMM would round the activations too). bf16 operands with an f32 output
// go to oneDNN (tensor/cpu/dnnl_gemm.h), else to this converting path.
#include <cblas.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstring>

#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/dnnl_gemm.h"
#include "tensor/cpu/scalar.h"
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

// With explicit leading dimensions (row strides) of a, b and c.
template <typename T>
void BlasGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
              const T* b, int64_t ldb, T* c, int64_t ldc) {
  openblas_set_num_threads(BlasThreads(m, n, k));
  const CBLAS_TRANSPOSE tra = ta ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE trb = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, tra, trb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, tra, trb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
  }
}

template <typename T>
void BlasGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, const T* b, T* c) {
  BlasGemm<T>(ta, tb, m, n, k, a, ta ? m : k, b, tb ? k : n, c, n);
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
  if (ta && tb)
    cm.noalias() = am.transpose() * bm.transpose();
  else if (ta)
    cm.noalias() = am.transpose() * bm;
  else if (tb)
    cm.noalias() = am * bm.transpose();
  else
    cm.noalias() = am * bm;
}
template void MatMulRowMajor<float>(bool, bool, int64_t, int64_t, int64_t, const float*,
                                    const float*, float*);
template void MatMulRowMajor<double>(bool, bool, int64_t, int64_t, int64_t, const double*,
                                     const double*, double*);

template <typename T>
void GemmOnCallingThread(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                         int64_t ldb, T beta, T* c, int64_t ldc) {
  openblas_set_num_threads(1);
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb, beta, c,
                ldc);
  } else {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0, a, lda, b, ldb, beta, c,
                ldc);
  }
}
template void GemmOnCallingThread<float>(int64_t, int64_t, int64_t, const float*, int64_t,
                                         const float*, int64_t, float, float*, int64_t);
template void GemmOnCallingThread<double>(int64_t, int64_t, int64_t, const double*, int64_t,
                                          const double*, int64_t, double, double*, int64_t);

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
      if (tb)
        c.noalias() = am * bm.transpose();
      else
        c.noalias() = am * bm;
    } else {
      ConstMap<T> am(pa + i * a_step, k, m);
      auto cols = am.middleCols(r0, rows);
      if (tb)
        c.noalias() = cols.transpose() * bm.transpose();
      else
        c.noalias() = cols.transpose() * bm;
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
      ParallelFor(blocks, std::max<int64_t>(1, blocks / threads),
                  [&](int64_t s, int64_t e) { product(i, s * 8, std::min(m, e * 8)); });
    }
  }
}

// dst[0, n) = src[0, n) converted to T (src of dtype `from`).
template <typename T>
void ConvertRow(const void* src, DType from, T* dst, int64_t n) {
  if (from == kBF16) {  // the common case, vectorised: bf16 is the high half of an f32
    const uint16_t* s = static_cast<const uint16_t*>(src);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t bits = static_cast<uint32_t>(s[i]) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      dst[i] = static_cast<T>(f);
    }
    return;
  }
  DispatchAll(from, [&](auto tag) {
    using S = decltype(tag);
    const S* s = static_cast<const S*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = ConvertTo<T>(ConvertTo<float>(s[i]));
  });
}

// Output columns per converted panel of b: about 16 MiB of T (the product re-reads `a` once per
// panel, so a panel must be wide enough to amortise that), at least 256 columns.
int64_t PanelColumns(int64_t n, int64_t k, size_t element_size) {
  const int64_t fit =
      static_cast<int64_t>((size_t{16} << 20) / (element_size * std::max<int64_t>(k, 1)));
  return std::min(n, std::max<int64_t>(256, fit / 64 * 64));
}

// out = op(a) op(b) for b of a narrower dtype than out (a has out's dtype), outside a parallel
// region: each panel of output columns converts its slice of b (rows of b when tb, else columns)
// with the pool's threads, then one threaded BLAS product writes the panel's columns of out.
template <typename T>
void GemmConvertingB(const Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb) {
  const int64_t batch = out.size(0), m = out.size(1), n = out.size(2);
  const int64_t k = ta ? a.size(1) : a.size(2);
  const size_t b_size = ElementSize(b.dtype());
  const T* pa = static_cast<const T*>(a.raw_data());
  const char* pb = static_cast<const char*>(b.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  const int64_t a_step = a.size(0) == 1 ? 0 : m * k;
  const int64_t b_step = b.size(0) == 1 ? 0 : k * n;
  const int64_t cols = PanelColumns(n, k, sizeof(T));
  Tensor panel_buffer = Tensor::Empty({cols * k}, out.dtype());
  T* panel = static_cast<T*>(panel_buffer.raw_data());
  for (int64_t i = 0; i < batch; ++i) {
    const char* bi = pb + static_cast<size_t>(i * b_step) * b_size;
    for (int64_t c0 = 0; c0 < n; c0 += cols) {
      const int64_t w = std::min(cols, n - c0);
      if (tb) {  // b [n, k]: rows c0.. of b, contiguous, as a [w, k] panel
        ParallelFor(w, std::max<int64_t>(1, 65536 / std::max<int64_t>(k, 1)),
                    [&](int64_t r0, int64_t r1) {
                      ConvertRow(bi + static_cast<size_t>((c0 + r0) * k) * b_size, b.dtype(),
                                 panel + r0 * k, (r1 - r0) * k);
                    });
      } else {  // b [k, n]: columns c0.. of each row, as a [k, w] panel
        ParallelFor(k, std::max<int64_t>(1, 65536 / std::max<int64_t>(w, 1)),
                    [&](int64_t r0, int64_t r1) {
                      for (int64_t r = r0; r < r1; ++r) {
                        ConvertRow(bi + static_cast<size_t>(r * n + c0) * b_size, b.dtype(),
                                   panel + r * w, w);
                      }
                    });
      }
      BlasGemm<T>(ta, tb, m, w, k, pa + i * a_step, ta ? m : k, panel, tb ? k : w,
                  po + i * m * n + c0, n);
    }
  }
}

}  // namespace

void Gemm(const Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb) {
  if (out.dtype() == kF32 && a.dtype() == kBF16) {  // bf16 operands, f32 accumulation and result
    if (b.dtype() == kBF16 && !InParallelRegion() && DnnlGemmBf16(out, a, ta, b, tb)) return;
    // Without oneDNN: `a` converted (exactly) to f32, `b` panel by panel as the product uses it.
    return Gemm(out, ops::Contiguous(ops::Cast(a, kF32)), ta, b, tb);
  }
  if (b.dtype() != out.dtype() && (out.dtype() == kF32 || out.dtype() == kF64)) {
    if (InParallelRegion()) {  // rare: convert b whole and multiply as usual
      return Gemm(out, a, ta, ops::Contiguous(ops::Cast(b, out.dtype())), tb);
    }
    if (out.dtype() == kF32) return GemmConvertingB<float>(out, a, ta, b, tb);
    return GemmConvertingB<double>(out, a, ta, b, tb);
  }
  switch (out.dtype()) {
    case DType::kF32:
      return GemmTyped<float>(out, a, ta, b, tb);
    case DType::kF64:
      return GemmTyped<double>(out, a, ta, b, tb);
    case DType::kBF16:
    case DType::kF16: {  // computed in f32 on the CPU
      Tensor out32 = Tensor::Empty(out.shape(), kF32);
      GemmTyped<float>(out32, ops::Cast(a, kF32), ta, ops::Cast(b, kF32), tb);
      Copy(out, out32);
      return;
    }
    default:
      SDPO_FAIL("matmul: unsupported dtype ", DTypeName(out.dtype()));
  }
}

}  // namespace sdpo::cpu
