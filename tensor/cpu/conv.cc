// 3-D convolution on OpenBLAS: one GEMM per kernel tap over a zero-padded band of input rows
// (spatial stride 1, Conv3dTaps), or im2col + GEMM tiled per output frame and band of output rows
// (spatial stride 2, Conv3dIm2col); no kt*kh*kw-fold copy of a whole clip or frame either way.
// bf16/f16 compute in f32. Also the channel RMS norm of the video VAE.
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

// Spatial stride 2 (the encoder's downsampling convs): im2col + GEMM, tiled per output frame
// and band of output rows so that the column buffer stays under kColumnElements.
template <typename T>
void Conv3dIm2col(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
                  const Tensor& bias, const ops::Conv3dOptions& opt) {
  using CT = typename ComputeType<T>::type;
  const int64_t batch = x.size(0), h = x.size(3), w = x.size(4);
  const int64_t cout = weight.size(0), kt = weight.size(2), kh = weight.size(3),
                kw = weight.size(4);
  const int64_t to = out.size(2), ho = out.size(3), wo = out.size(4);
  const int64_t st = opt.stride[0], sh = opt.stride[1], sw = opt.stride[2];
  const int64_t pt = opt.padding[0], ph = opt.padding[2], pw = opt.padding[4];
  const int64_t taps = kt * kh * kw, k_total = x.size(1) * taps;
  const int64_t out_frame = ho * wo, out_channel = to * out_frame;

  const std::vector<CT> w_compute = AsCompute<CT, T>(weight);
  const std::vector<CT> b_compute =
      bias.defined() ? AsCompute<CT, T>(bias) : std::vector<CT>(cout, CT(0));
  T* po = static_cast<T*>(out.raw_data());
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

// Output columns per tile of Conv3dTaps: products of a few thousand columns keep OpenBLAS near
// its peak while a tile's accumulator and input band stay within a few MiB.
constexpr int64_t kTileColumns = 4096;

// Spatial stride 1: one GEMM per tap (dt, dh, dw) with K = Cin, accumulated into the tile's
// output, instead of a kt*kh*kw-fold im2col copy. A tile is a band of output rows of one output
// frame; for each input frame it reads, the band's input rows are copied once into a zero-padded
// buffer `band` [Cin, rows + kh - 1, padded width], and the tap (dh, dw) is then the same buffer
// shifted by dh rows and dw columns: the product runs over rows x padded width columns, of which
// the last kw - 1 of each row are discarded. The copy also reads the input 2x upsampled
// (opt.upsample_input) and converts bf16/f16 to f32. Taps 1x1 in space without padding read
// the input frame directly (no copy) when no conversion is needed. Tiles are spread over the
// pool, each running its products on its own thread.
template <typename T>
void Conv3dTaps(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
                const Tensor& bias, const ops::Conv3dOptions& opt) {
  using CT = typename ComputeType<T>::type;
  const int64_t batch = x.size(0), cin = x.size(1), h = x.size(3), w = x.size(4);
  const int64_t cout = weight.size(0), kt = weight.size(2), kh = weight.size(3),
                kw = weight.size(4);
  const int64_t to = out.size(2), ho = out.size(3), wo = out.size(4);
  const int64_t st = opt.stride[0], pt = opt.padding[0], ph = opt.padding[2], pw = opt.padding[4];
  const bool up = opt.upsample_input;
  const int64_t hi = up ? 2 * h : h, wi = up ? 2 * w : w;  // the input as the conv sees it
  const int64_t taps = kt * kh * kw;
  const bool direct = std::is_same_v<T, CT> && kh == 1 && kw == 1 && !up && ph == 0 && pw == 0 &&
                      opt.padding[3] == 0 && opt.padding[5] == 0;
  const int64_t width = direct ? w : wo + kw - 1;  // columns per row of a product
  const int64_t out_frame = ho * wo, out_channel = to * out_frame;

  // tap_weights[tap][co][ci]: each tap's [Cout, Cin] matrix, in the compute type.
  std::vector<CT> tap_weights(cout * cin * taps);
  const T* pw_in = static_cast<const T*>(weight.raw_data());
  for (int64_t co = 0; co < cout; ++co) {
    for (int64_t ci = 0; ci < cin; ++ci) {
      for (int64_t tap = 0; tap < taps; ++tap) {
        tap_weights[(tap * cout + co) * cin + ci] =
            ConvertTo<CT>(pw_in[(co * cin + ci) * taps + tap]);
      }
    }
  }
  const std::vector<CT> b_compute =
      bias.defined() ? AsCompute<CT, T>(bias) : std::vector<CT>(cout, CT(0));

  // Row bands: about kTileColumns columns each, balanced, and at least one tile per thread.
  int64_t row_tiles = (ho + std::max<int64_t>(1, kTileColumns / width) - 1) /
                      std::max<int64_t>(1, kTileColumns / width);
  const int64_t frames_out = batch * to;
  if (frames_out * row_tiles < NumThreads()) {
    row_tiles = std::min(ho, (NumThreads() + frames_out - 1) / frames_out);
  }
  const int64_t tile_rows = (ho + row_tiles - 1) / row_tiles;
  row_tiles = (ho + tile_rows - 1) / tile_rows;
  const int64_t band_rows = tile_rows + kh - 1, band_channel = band_rows * width;

  const ConvInput<T> input(x, history);
  T* po = static_cast<T*>(out.raw_data());
  ParallelFor(frames_out * row_tiles, 1, [&](int64_t t0, int64_t t1) {
    // The last kw - 1 slack values: the shifted view of the last row runs past the band.
    std::vector<CT> band(direct ? 0 : cin * band_channel + kw);
    std::vector<CT> acc(cout * tile_rows * width);
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t b = tile / (to * row_tiles), o = (tile / row_tiles) % to;
      const int64_t r0 = (tile % row_tiles) * tile_rows, rows = std::min(tile_rows, ho - r0);
      const int64_t n = rows * width;
      for (int64_t c = 0; c < cout; ++c) std::fill_n(acc.data() + c * n, n, b_compute[c]);
      for (int64_t dt = 0; dt < kt; ++dt) {
        const FrameRef<T> frame = input.Frame(b, o * st - pt + dt);
        if (frame.data == nullptr) continue;  // a zero-padded frame adds nothing
        const CT* tap_w = tap_weights.data() + dt * kh * kw * cout * cin;
        if constexpr (std::is_same_v<T, CT>) {
          if (direct) {
            GemmOnCallingThread<CT>(cout, n, cin, tap_w, cin, frame.data + r0 * w,
                                    frame.channel_stride, CT(1), acc.data(), n);
            continue;
          }
        }
        // band[ci, br, j] = input(ci, ih = r0 + br - ph, iw = j - pw), zero outside.
        for (int64_t ci = 0; ci < cin; ++ci) {
          const T* plane = frame.data + ci * frame.channel_stride;
          for (int64_t br = 0; br < rows + kh - 1; ++br) {
            CT* dst = band.data() + ci * band_channel + br * width;
            const int64_t ih = r0 + br - ph;
            if (ih < 0 || ih >= hi) {
              std::fill_n(dst, width, CT(0));
              continue;
            }
            const T* src = plane + (up ? ih / 2 : ih) * w;
            const int64_t lo = std::min(width, pw), hi_col = std::min(width, pw + wi);
            std::fill(dst, dst + lo, CT(0));
            if (up) {
              for (int64_t j = lo; j < hi_col; ++j) dst[j] = ConvertTo<CT>(src[(j - pw) / 2]);
            } else {
              for (int64_t j = lo; j < hi_col; ++j) dst[j] = ConvertTo<CT>(src[j - pw]);
            }
            std::fill(dst + hi_col, dst + width, CT(0));
          }
        }
        for (int64_t dh = 0; dh < kh; ++dh) {
          for (int64_t dw = 0; dw < kw; ++dw) {
            GemmOnCallingThread<CT>(cout, n, cin, tap_w + (dh * kw + dw) * cout * cin, cin,
                                    band.data() + dh * width + dw, band_channel, CT(1), acc.data(),
                                    n);
          }
        }
      }
      for (int64_t c = 0; c < cout; ++c) {
        T* dst = po + (b * cout + c) * out_channel + o * out_frame + r0 * wo;
        const CT* src = acc.data() + c * n;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t j = 0; j < wo; ++j) dst[r * wo + j] = ConvertTo<T>(src[r * width + j]);
        }
      }
    }
  });
}

template <typename T>
void Conv3dTyped(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
                 const Tensor& bias, const ops::Conv3dOptions& opt) {
  if (opt.stride[1] == 1 && opt.stride[2] == 1) {
    Conv3dTaps<T>(out, x, history, weight, bias, opt);
  } else {
    SDPO_CHECK(!opt.upsample_input, "conv3d: an upsampled input needs spatial stride 1");
    Conv3dIm2col<T>(out, x, history, weight, bias, opt);
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
