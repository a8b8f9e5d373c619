// Group normalisation over [B, C, inner] (ops::GroupNorm): the statistics of each (batch item,
// group) in double over its C/G channels and all positions (two passes: the mean, then the mean
// squared deviation, so a large mean does not cancel the variance), then one pass per channel
// row y = x * a + b with a = rstd * weight[c], b = bias[c] - mean * a in the statistics dtype
// (f32, f64 for f64), and SiLU when asked.
#include <cmath>
#include <type_traits>
#include <vector>

#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/scalar.h"
#include "tensor/thread_pool.h"

namespace sdpo::cpu {
namespace {

template <typename T>
void GroupNormTyped(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    int64_t groups, double eps, bool silu) {
  using ST = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t batch = x.size(0), c = x.size(1), inner = x.size(2);
  const int64_t per_group = c / groups, group_size = per_group * inner;
  const T* px = static_cast<const T*>(x.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  const ST* w = weight.defined() ? static_cast<const ST*>(weight.raw_data()) : nullptr;
  const ST* b = bias.defined() ? static_cast<const ST*>(bias.raw_data()) : nullptr;

  std::vector<double> mean(batch * groups), rstd(batch * groups);
  ParallelFor(batch * groups, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const T* xg = px + g * group_size;  // groups are contiguous in [B, C, inner]
      double sum = 0;
      for (int64_t i = 0; i < group_size; ++i) sum += ConvertTo<double>(xg[i]);
      const double m = sum / static_cast<double>(group_size);
      double squares = 0;
      for (int64_t i = 0; i < group_size; ++i) {
        const double d = ConvertTo<double>(xg[i]) - m;
        squares += d * d;
      }
      mean[g] = m;
      rstd[g] = 1.0 / std::sqrt(squares / static_cast<double>(group_size) + eps);
    }
  });
  ParallelFor(batch * c, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t ch = row % c, g = (row / c) * groups + ch / per_group;
      const double a = rstd[g] * (w != nullptr ? static_cast<double>(w[ch]) : 1.0);
      const ST scale = static_cast<ST>(a);
      const ST shift =
          static_cast<ST>((b != nullptr ? static_cast<double>(b[ch]) : 0.0) - mean[g] * a);
      const T* xr = px + row * inner;
      T* orow = po + row * inner;
      for (int64_t i = 0; i < inner; ++i) {
        ST y = ConvertTo<ST>(xr[i]) * scale + shift;
        if (silu) y = y / (ST(1) + std::exp(-y));
        orow[i] = ConvertTo<T>(y);
      }
    }
  });
}

}  // namespace

void GroupNorm(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
               int64_t groups, double eps, bool silu) {
  switch (x.dtype()) {
    case DType::kF32:
      return GroupNormTyped<float>(out, x, weight, bias, groups, eps, silu);
    case DType::kF64:
      return GroupNormTyped<double>(out, x, weight, bias, groups, eps, silu);
    case DType::kBF16:
      return GroupNormTyped<BF16>(out, x, weight, bias, groups, eps, silu);
    case DType::kF16:
      return GroupNormTyped<F16>(out, x, weight, bias, groups, eps, silu);
    default:
      SDPO_FAIL("group_norm: unsupported dtype ", DTypeName(x.dtype()));
  }
}

}  // namespace sdpo::cpu
