// 3-D convolution as im2col + GEMM, tiled per output frame and band of output rows so that the
// column buffer stays under kColumnElements whatever the activation size (no kt*kh*kw-fold copy
// of a whole clip or frame); the products run on OpenBLAS (MatMulRowMajor), the column fills on
// the thread pool. bf16/f16 compute in f32. Also the channel RMS norm of the video VAE.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/scalar.h"
#include "tensor/thread_pool.h"

namespace sdpo::cpu {
namespace {

// Column buffer bound per tile (16 MiB of f32): large enough that each GEMM has hundreds of
// columns, small enough to stay in the last-level cache's neighbourhood.
constexpr int64_t kColumnElements = int64_t{1} << 22;

// One input frame of concat(history, x): its data and the stride between its channels.
template <typename T>
struct FrameRef {
  const T* data = nullptr;  // null: outside the clip (reads zero)
  int64_t channel_stride = 0;
};

template <typename T>
class ConvInput {
 public:
  ConvInput(const Tensor& x, const Tensor& history)
      : x_(static_cast<const T*>(x.raw_data())),
        h_(history.defined() ? static_cast<const T*>(history.raw_data()) : nullptr),
        cin_(x.size(1)),
        frames_(x.size(2)),
        history_frames_(history.defined() ? history.size(2) : 0),
        plane_(x.size(3) * x.size(4)) {}

  // Frame v of concat(history, x) of batch item b.
  FrameRef<T> Frame(int64_t b, int64_t v) const {
    if (v < 0 || v >= history_frames_ + frames_) return {};
    if (v < history_frames_) {
      return {h_ + (b * cin_ * history_frames_ + v) * plane_, history_frames_ * plane_};
    }
    return {x_ + (b * cin_ * frames_ + (v - history_frames_)) * plane_, frames_ * plane_};
  }

 private:
  const T* x_;
  const T* h_;
  int64_t cin_, frames_, history_frames_, plane_;
};

// Elements of a tensor as the compute type CT (a copy only when the types differ).
template <typename CT, typename T>
std::vector<CT> AsCompute(const Tensor& t) {
  std::vector<CT> v(t.numel());
  const T* p = static_cast<const T*>(t.raw_data());
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = ConvertTo<CT>(p[i]);
  return v;
}

template <typename T>
void Conv3dTyped(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
                 const Tensor& bias, const ops::Conv3dOptions& opt) {
  using CT = typename ComputeType<T>::type;
  const int64_t batch = x.size(0), cin = x.size(1), frames = x.size(2), h = x.size(3),
                w = x.size(4);
  const int64_t cout = weight.size(0), kt = weight.size(2), kh = weight.size(3),
                kw = weight.size(4);
  const int64_t to = out.size(2), ho = out.size(3), wo = out.size(4);
  const int64_t st = opt.stride[0], sh = opt.stride[1], sw = opt.stride[2];
  const int64_t pt = opt.padding[0], ph = opt.padding[2], pw = opt.padding[4];
  const int64_t taps = kt * kh * kw, k_total = cin * taps;
  const int64_t out_frame = ho * wo, out_channel = to * out_frame;

  const std::vector<CT> w_compute = AsCompute<CT, T>(weight);
  const std::vector<CT> b_compute =
      bias.defined() ? AsCompute<CT, T>(bias) : std::vector<CT>(cout, CT(0));
  T* po = static_cast<T*>(out.raw_data());

  // Pointwise convolution: one product per batch item over all positions, straight into out.
  const bool pointwise = taps == 1 && st == 1 && sh == 1 && sw == 1 && !history.defined() &&
                         pt == 0 && ph == 0 && pw == 0 && std::is_same_v<T, CT>;
  if constexpr (std::is_same_v<T, CT>) {
    if (pointwise) {
      const int64_t n = frames * h * w;
      for (int64_t b = 0; b < batch; ++b) {
        T* ob = po + b * cout * n;
        MatMulRowMajor<CT>(false, false, cout, n, cin, w_compute.data(),
                           static_cast<const T*>(x.raw_data()) + b * cin * n, ob);
        ParallelFor(cout, 1, [&](int64_t c0, int64_t c1) {
          for (int64_t c = c0; c < c1; ++c) {
            const CT bc = b_compute[c];
            for (int64_t i = 0; i < n; ++i) ob[c * n + i] += bc;
          }
        });
      }
      return;
    }
  }

  const ConvInput<T> input(x, history);
  const int64_t rows_per_tile =
      std::clamp<int64_t>(kColumnElements / std::max<int64_t>(1, k_total * wo), 1, ho);
  std::vector<CT> columns(k_total * rows_per_tile * wo);
  std::vector<CT> products(cout * rows_per_tile * wo);

  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t o = 0; o < to; ++o) {
      for (int64_t r0 = 0; r0 < ho; r0 += rows_per_tile) {
        const int64_t rows = std::min(rows_per_tile, ho - r0), n = rows * wo;
        // columns[k, (r, ow)] = input(ci, frame, ih, iw) for k = ((ci * kt + dt) * kh + dh) * kw
        // + dw, the weight's own flattening.
        ParallelFor(
            k_total, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, n)),
            [&](int64_t k0, int64_t k1) {
              for (int64_t k = k0; k < k1; ++k) {
                const int64_t ci = k / taps, tap = k % taps;
                const int64_t dt = tap / (kh * kw), dh = (tap / kw) % kh, dw = tap % kw;
                const FrameRef<T> frame = input.Frame(b, o * st - pt + dt);
                CT* dst = columns.data() + k * n;
                if (frame.data == nullptr) {
                  std::fill(dst, dst + n, CT(0));
                  continue;
                }
                const T* plane = frame.data + ci * frame.channel_stride;
                // Output columns whose input column iw = ow * sw - pw + dw lies inside [0, w).
                const int64_t ow_lo = std::min(wo, std::max<int64_t>(0, (pw - dw + sw - 1) / sw));
                const int64_t ow_hi = std::max(
                    ow_lo, std::min(wo, w - 1 + pw - dw >= 0 ? (w - 1 + pw - dw) / sw + 1 : 0));
                for (int64_t r = 0; r < rows; ++r) {
                  CT* row = dst + r * wo;
                  const int64_t ih = (r0 + r) * sh - ph + dh;
                  if (ih < 0 || ih >= h) {
                    std::fill(row, row + wo, CT(0));
                    continue;
                  }
                  const T* src = plane + ih * w;
                  std::fill(row, row + ow_lo, CT(0));
                  for (int64_t ow = ow_lo; ow < ow_hi; ++ow) {
                    row[ow] = ConvertTo<CT>(src[ow * sw - pw + dw]);
                  }
                  std::fill(row + ow_hi, row + wo, CT(0));
                }
              }
            });
        MatMulRowMajor<CT>(false, false, cout, n, k_total, w_compute.data(), columns.data(),
                           products.data());
        ParallelFor(cout, 1, [&](int64_t c0, int64_t c1) {
          for (int64_t c = c0; c < c1; ++c) {
            T* dst = po + (b * cout + c) * out_channel + o * out_frame + r0 * wo;
            const CT* src = products.data() + c * n;
            const CT bc = b_compute[c];
            for (int64_t i = 0; i < n; ++i) dst[i] = ConvertTo<T>(src[i] + bc);
          }
        });
      }
    }
  }
}

// Positions per task of the channel RMS norm (their sums of squares live on the stack).
constexpr int64_t kNormBlock = 256;

template <typename T>
void ChannelRmsNormTyped(const Tensor& out, const Tensor& x, const Tensor& gamma, double eps,
                         bool silu) {
  using ST = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t outer = x.size(0), c = x.size(1), inner = x.size(2);
  const T* px = static_cast<const T*>(x.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  const ST* g = static_cast<const ST*>(gamma.raw_data());
  const ST scale = static_cast<ST>(std::sqrt(static_cast<double>(c)));
  const int64_t blocks = (inner + kNormBlock - 1) / kNormBlock;
  ParallelFor(outer * blocks, 1, [&](int64_t t0, int64_t t1) {
    double sums[kNormBlock];
    ST denom[kNormBlock];
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t b = task / blocks, j0 = (task % blocks) * kNormBlock;
      const int64_t len = std::min(kNormBlock, inner - j0);
      const T* xb = px + b * c * inner + j0;
      T* ob = po + b * c * inner + j0;
      std::fill(sums, sums + len, 0.0);
      for (int64_t ch = 0; ch < c; ++ch) {
        const T* row = xb + ch * inner;
        for (int64_t j = 0; j < len; ++j) {
          const double v = ConvertTo<double>(row[j]);
          sums[j] += v * v;
        }
      }
      for (int64_t j = 0; j < len; ++j) {
        denom[j] = static_cast<ST>(std::max(std::sqrt(sums[j]), eps));
      }
      for (int64_t ch = 0; ch < c; ++ch) {
        const T* row = xb + ch * inner;
        T* orow = ob + ch * inner;
        const ST gs = g[ch];
        for (int64_t j = 0; j < len; ++j) {
          // The order of PyTorch's F.normalize(x) * scale * gamma.
          ST y = ConvertTo<ST>(row[j]) / denom[j] * scale * gs;
          if (silu) y = y / (ST(1) + std::exp(-y));
          orow[j] = ConvertTo<T>(y);
        }
      }
    }
  });
}

}  // namespace

void Conv3d(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
            const Tensor& bias, const ops::Conv3dOptions& options) {
  switch (x.dtype()) {
    case DType::kF32:
      return Conv3dTyped<float>(out, x, history, weight, bias, options);
    case DType::kF64:
      return Conv3dTyped<double>(out, x, history, weight, bias, options);
    case DType::kBF16:
      return Conv3dTyped<BF16>(out, x, history, weight, bias, options);
    case DType::kF16:
      return Conv3dTyped<F16>(out, x, history, weight, bias, options);
    default:
      SDPO_FAIL("conv3d: unsupported dtype ", DTypeName(x.dtype()));
  }
}

void ChannelRmsNorm(const Tensor& out, const Tensor& x, const Tensor& gamma, double eps,
                    bool silu) {
  switch (x.dtype()) {
    case DType::kF32:
      return ChannelRmsNormTyped<float>(out, x, gamma, eps, silu);
    case DType::kF64:
      return ChannelRmsNormTyped<double>(out, x, gamma, eps, silu);
    case DType::kBF16:
      return ChannelRmsNormTyped<BF16>(out, x, gamma, eps, silu);
    case DType::kF16:
      return ChannelRmsNormTyped<F16>(out, x, gamma, eps, silu);
    default:
      SDPO_FAIL("channel_rms_norm: unsupported dtype ", DTypeName(x.dtype()));
  }
}

}  // namespace sdpo::cpu
