// Row reductions and softmax over contiguous [rows, cols] inputs.
#include <cmath>
#include <limits>

#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/scalar.h"
#include "tensor/thread_pool.h"

namespace sdpo::cpu {
namespace {

// Accumulator type: double for every floating type (exact enough to be an oracle), int64 for
// integers.
template <typename T>
using Acc = std::conditional_t<std::is_floating_point_v<typename ComputeType<T>::type>, double,
                               int64_t>;

template <typename T>
void ReduceTyped(ReduceKind kind, const Tensor& out, const Tensor& x, int64_t correction) {
  using C = typename ComputeType<T>::type;
  const int64_t rows = x.size(0), cols = x.size(1);
  const T* in = static_cast<const T*>(x.raw_data());
  ParallelFor(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)),
              [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* row = in + r * cols;
      switch (kind) {
        case ReduceKind::kSum:
        case ReduceKind::kMean: {
          Acc<T> s = 0;
          for (int64_t c = 0; c < cols; ++c) s += static_cast<Acc<T>>(ConvertTo<C>(row[c]));
          if (kind == ReduceKind::kMean) {
            static_cast<T*>(out.raw_data())[r] =
                ConvertTo<T>(static_cast<double>(s) / static_cast<double>(cols));
          } else {
            static_cast<T*>(out.raw_data())[r] = ConvertTo<T>(s);  // integers stay exact
          }
          break;
        }
        case ReduceKind::kVar: {
          double mean = 0;
          for (int64_t c = 0; c < cols; ++c) mean += static_cast<double>(ConvertTo<C>(row[c]));
          mean /= static_cast<double>(cols);
          double ss = 0;
          for (int64_t c = 0; c < cols; ++c) {
            double d = static_cast<double>(ConvertTo<C>(row[c])) - mean;
            ss += d * d;
          }
          double denom = static_cast<double>(cols - correction);
          static_cast<T*>(out.raw_data())[r] =
              ConvertTo<T>(denom > 0 ? ss / denom : std::numeric_limits<double>::quiet_NaN());
          break;
        }
        case ReduceKind::kMax:
        case ReduceKind::kArgMax: {
          C best = ConvertTo<C>(row[0]);
          int64_t arg = 0;
          for (int64_t c = 1; c < cols; ++c) {
            C v = ConvertTo<C>(row[c]);
            if (best != best) break;  // NaN wins, like torch
            if (v > best || v != v) {
              best = v;
              arg = c;
            }
          }
          if (kind == ReduceKind::kMax) {
            static_cast<T*>(out.raw_data())[r] = ConvertTo<T>(best);
          } else {
            static_cast<int64_t*>(out.raw_data())[r] = arg;
          }
          break;
        }
      }
    }
  });
}

template <typename T>
void SoftmaxTyped(const Tensor& out, const Tensor& x, bool log) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t rows = x.size(0), cols = x.size(1);
  const T* in = static_cast<const T*>(x.raw_data());
  T* o = static_cast<T*>(out.raw_data());
  ParallelFor(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(cols, 1)),
              [&](int64_t begin, int64_t end) {
    std::vector<C> buf(cols);
    for (int64_t r = begin; r < end; ++r) {
      const T* row = in + r * cols;
      C mx = -std::numeric_limits<C>::infinity();
      for (int64_t c = 0; c < cols; ++c) {
        buf[c] = ConvertTo<C>(row[c]);
        mx = std::max(mx, buf[c]);
      }
      if (std::isinf(mx) && mx < 0) mx = 0;  // fully masked row: exp(-inf) = 0
      double sum = 0;
      for (int64_t c = 0; c < cols; ++c) sum += std::exp(static_cast<double>(buf[c] - mx));
      if (log) {
        // (x - max) - log(sum): forming max + log(sum) first would round it at the scale of
        // the logits and lose the low bits of every output.
        const C log_sum = static_cast<C>(std::log(sum));
        for (int64_t c = 0; c < cols; ++c) {
          o[r * cols + c] = ConvertTo<T>((buf[c] - mx) - log_sum);
        }
      } else {
        C inv = static_cast<C>(1.0 / sum);
        for (int64_t c = 0; c < cols; ++c) o[r * cols + c] = ConvertTo<T>(std::exp(buf[c] - mx) * inv);
      }
    }
  });
}

}  // namespace

void ReduceRows(ReduceKind kind, const Tensor& out, const Tensor& x, int64_t correction) {
  DispatchAll(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      SDPO_FAIL("reduction over a bool tensor (cast it first)");
    } else {
      ReduceTyped<T>(kind, out, x, correction);
    }
  });
}

// The oracle: the reduced dim moved last, then ReduceRows (what ops::Sum did before
// ReduceMiddle existed).
void ReduceMiddle(ReduceKind kind, const Tensor& out, const Tensor& x) {
  const int64_t outer = x.size(0), rows = x.size(1), cols = x.size(2);
  Tensor moved = ops::Contiguous(ops::Permute(x, {0, 2, 1}));
  ReduceRows(kind, ops::View(out, {outer * cols}), ops::View(moved, {outer * cols, rows}), 0);
}

void SoftmaxRows(const Tensor& out, const Tensor& x, bool log) {
  switch (x.dtype()) {
    case DType::kF32: return SoftmaxTyped<float>(out, x, log);
    case DType::kF64: return SoftmaxTyped<double>(out, x, log);
    case DType::kBF16: return SoftmaxTyped<BF16>(out, x, log);
    case DType::kF16: return SoftmaxTyped<F16>(out, x, log);
    default: SDPO_FAIL("softmax: unsupported dtype ", DTypeName(x.dtype()));
  }
}

}  // namespace sdpo::cpu
