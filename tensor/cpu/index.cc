// Row gathers and scatter-adds for index_select / gather and their backwards.
#include <cstring>

#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/scalar.h"
#include "tensor/thread_pool.h"

namespace sdpo::cpu {

// out [rows(index), inner] (a strided slice with contiguous rows) from x [n, inner].
void IndexRows(const Tensor& out, const Tensor& x, const Tensor& index) {
  const int64_t inner = x.size(1);
  const int64_t* idx = index.data<int64_t>();
  const size_t es = ElementSize(x.dtype());
  const char* src = static_cast<const char*>(x.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  const int64_t out_row = out.stride(0) * es, x_row = x.stride(0) * es, row = inner * es;
  ParallelFor(index.numel(), 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(dst + i * out_row, src + idx[i] * x_row, row);
  });
}

void IndexAddRows(const Tensor& out, const Tensor& index, const Tensor& src) {
  const int64_t inner = src.size(1);
  const int64_t* idx = index.data<int64_t>();
  DispatchAll(src.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      SDPO_FAIL("index_add on bool tensors");
    } else {
      using C = typename ComputeType<T>::type;
      T* o = static_cast<T*>(out.raw_data());
      const T* s = static_cast<const T*>(src.raw_data());
      for (int64_t i = 0; i < index.numel(); ++i) {  // serial: repeated indices accumulate
        T* row = o + idx[i] * out.stride(0);
        const T* srow = s + i * src.stride(0);
        for (int64_t j = 0; j < inner; ++j) {
          row[j] = ConvertTo<T>(ConvertTo<C>(row[j]) + ConvertTo<C>(srow[j]));
        }
      }
    }
  });
}

// Views are [outer, n, inner] contiguous.
void Gather(const Tensor& out, const Tensor& x, const Tensor& index) {
  const int64_t outer = out.size(0), m = out.size(1), inner = out.size(2), n = x.size(1);
  const int64_t* idx = index.data<int64_t>();
  DispatchAll(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* px = static_cast<const T*>(x.raw_data());
    T* po = static_cast<T*>(out.raw_data());
    ParallelFor(outer, 1, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o)
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < inner; ++j) {
            int64_t pos = (o * m + i) * inner + j;
            po[pos] = px[(o * n + idx[pos]) * inner + j];
          }
    });
  });
}

void ScatterAdd(const Tensor& out, const Tensor& index, const Tensor& src) {
  const int64_t outer = src.size(0), m = src.size(1), inner = src.size(2), n = out.size(1);
  const int64_t* idx = index.data<int64_t>();
  DispatchAll(src.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      SDPO_FAIL("scatter_add on bool tensors");
    } else {
      using C = typename ComputeType<T>::type;
      const T* ps = static_cast<const T*>(src.raw_data());
      T* po = static_cast<T*>(out.raw_data());
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < inner; ++j) {
            int64_t pos = (o * m + i) * inner + j;
            T& dst = po[(o * n + idx[pos]) * inner + j];
            dst = ConvertTo<T>(ConvertTo<C>(dst) + ConvertTo<C>(ps[pos]));
          }
    }
  });
}

namespace {
class CpuKernelsImpl final : public Kernels {
 public:
  void Fill(const Tensor& out, double v) override { cpu::Fill(out, v); }
  void Copy(const Tensor& d, const Tensor& s) override { cpu::Copy(d, s); }
  void Unary(ops::UnaryOp op, const Tensor& o, const Tensor& x) override { cpu::Unary(op, o, x); }
  void Binary(ops::BinaryOp op, const Tensor& o, const Tensor& a, const Tensor& b) override {
    cpu::Binary(op, o, a, b);
  }
  void Compare(ops::CompareOp op, const Tensor& o, const Tensor& a, const Tensor& b) override {
    cpu::Compare(op, o, a, b);
  }
  void Where(const Tensor& o, const Tensor& c, const Tensor& a, const Tensor& b) override {
    cpu::Where(o, c, a, b);
  }
  void Clamp(const Tensor& o, const Tensor& x, double lo, double hi) override {
    cpu::Clamp(o, x, lo, hi);
  }
  ops::NormResult LayerNormModulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                    int64_t rows_per_batch, double eps) override {
    return cpu::LayerNormModulate(x, shift, scale, rows_per_batch, eps);
  }
  ops::NormModulateGrads LayerNormModulateBackward(const Tensor& dy, const Tensor& x,
                                                   const Tensor& scale, const Tensor& mean,
                                                   const Tensor& rstd,
                                                   int64_t rows_per_batch) override {
    return cpu::LayerNormModulateBackward(dy, x, scale, mean, rstd, rows_per_batch);
  }
  void ReduceMiddle(ReduceKind k, const Tensor& o, const Tensor& x) override {
    cpu::ReduceMiddle(k, o, x);
  }
  void ReduceRows(ReduceKind k, const Tensor& o, const Tensor& x, int64_t c) override {
    cpu::ReduceRows(k, o, x, c);
  }
  void SoftmaxRows(const Tensor& o, const Tensor& x, bool log) override {
    cpu::SoftmaxRows(o, x, log);
  }
  void Gemm(const Tensor& o, const Tensor& a, bool ta, const Tensor& b, bool tb) override {
    cpu::Gemm(o, a, ta, b, tb);
  }
  ops::NormResult LayerNorm(const Tensor& x, const Tensor& w, const Tensor& b,
                            double eps) override {
    return cpu::LayerNorm(x, w, b, eps);
  }
  ops::NormGrads LayerNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                   const Tensor& m, const Tensor& r, bool nb) override {
    return cpu::LayerNormBackward(dy, x, w, m, r, nb);
  }
  ops::NormResult RmsNorm(const Tensor& x, const Tensor& w, double eps) override {
    return cpu::RmsNorm(x, w, eps);
  }
  ops::NormGrads RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                 const Tensor& r) override {
    return cpu::RmsNormBackward(dy, x, w, r);
  }
  ops::AttentionResult Attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& m, double s) override {
    return cpu::Attention(q, k, v, m, s);
  }
  ops::AttentionGrads AttentionBackward(const Tensor& d, const Tensor& q, const Tensor& k,
                                        const Tensor& v, const Tensor& m, double s,
                                        const Tensor& o, const Tensor& l) override {
    return cpu::AttentionBackward(d, q, k, v, m, s, o, l);
  }
  Tensor Rope(const Tensor& x, const Tensor& c, const Tensor& s, ops::RopeLayout layout,
              bool inverse) override {
    return cpu::Rope(x, c, s, layout, inverse);
  }
  void IndexRows(const Tensor& o, const Tensor& x, const Tensor& i) override {
    cpu::IndexRows(o, x, i);
  }
  void IndexAddRows(const Tensor& o, const Tensor& i, const Tensor& s) override {
    cpu::IndexAddRows(o, i, s);
  }
  void Gather(const Tensor& o, const Tensor& x, const Tensor& i) override { cpu::Gather(o, x, i); }
  void ScatterAdd(const Tensor& o, const Tensor& i, const Tensor& s) override {
    cpu::ScatterAdd(o, i, s);
  }
  void Conv3d(const Tensor& o, const Tensor& x, const Tensor& h, const Tensor& w, const Tensor& b,
              const ops::Conv3dOptions& opt) override {
    cpu::Conv3d(o, x, h, w, b, opt);
  }
  void ChannelRmsNorm(const Tensor& o, const Tensor& x, const Tensor& g, double eps,
                      bool silu) override {
    cpu::ChannelRmsNorm(o, x, g, eps, silu);
  }
  void GroupNorm(const Tensor& o, const Tensor& x, const Tensor& w, const Tensor& b, int64_t groups,
                 double eps, bool silu) override {
    cpu::GroupNorm(o, x, w, b, groups, eps, silu);
  }
  void Philox(const Tensor& o, uint64_t seed, uint64_t offset, bool normal) override {
    cpu::Philox(o, seed, offset, normal);
  }
};
}  // namespace

}  // namespace sdpo::cpu

namespace sdpo {
Kernels& CpuKernels() {
  static cpu::CpuKernelsImpl kernels;
  return kernels;
}
}  // namespace sdpo
