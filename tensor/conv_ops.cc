// Convolution, nearest upsampling, padding, the channel RMS norm and the group norm (tensor/ops.h):
// argument checks and output shapes here, the arithmetic in the device kernels (tensor/kernels.h).
#include <cmath>

#include "tensor/kernels.h"
#include "tensor/ops.h"

namespace sdpo::ops {
namespace {

// The output size of one dim; errors name the dim and the sizes.
int64_t ConvOutSize(int64_t in, int64_t pad, int64_t kernel, int64_t stride, const char* dim,
                    const Tensor& x, const Tensor& weight) {
  SDPO_CHECK(in + pad >= kernel, "conv3d: the padded ", dim, " size ", in + pad,
             " is smaller than the kernel's ", kernel, " (input ", x.str(), ", weight ",
             weight.str(), ")");
  return (in + pad - kernel) / stride + 1;
}

}  // namespace

Tensor Conv3d(const Tensor& x, const Tensor& weight, const Tensor& bias,
              const Conv3dOptions& options) {
  SDPO_CHECK(x.dim() == 5 && IsFloating(x.dtype()),
             "conv3d: x must be a floating [B, Cin, T, H, W] tensor, got ", x.str());
  SDPO_CHECK(weight.dim() == 5 && weight.size(1) == x.size(1) && weight.dtype() == x.dtype() &&
                 weight.device() == x.device(),
             "conv3d: weight must be [Cout, ", x.size(1),
             ", kt, kh, kw] of x's dtype and device, "
             "got ",
             weight.str(), " for x ", x.str());
  const int64_t cout = weight.size(0);
  SDPO_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == cout &&
                                 bias.dtype() == x.dtype() && bias.device() == x.device()),
             "conv3d: bias must be [", cout, "] of x's dtype and device, got ", bias.str());
  for (int64_t s : options.stride) {
    SDPO_CHECK(s >= 1, "conv3d: strides must be >= 1, got ", s);
  }
  for (int64_t p : options.padding) {
    SDPO_CHECK(p >= 0, "conv3d: paddings must be >= 0, got ", p);
  }
  if (options.upsample_input) {
    SDPO_CHECK(!options.history.defined() && options.stride[1] == 1 && options.stride[2] == 1,
               "conv3d: an upsampled input takes no history and spatial strides 1, got strides (",
               options.stride[0], ", ", options.stride[1], ", ", options.stride[2], ")");
    if (!x.device().is_cpu()) {  // only the CPU kernel reads the input upsampled
      Conv3dOptions materialised = options;
      materialised.upsample_input = false;
      return Conv3d(UpsampleNearest2x(x), weight, bias, materialised);
    }
  }
  const int64_t up = options.upsample_input ? 2 : 1;
  const Tensor& h = options.history;
  int64_t history_frames = 0;
  if (h.defined()) {
    SDPO_CHECK(h.dim() == 5 && h.size(0) == x.size(0) && h.size(1) == x.size(1) &&
                   h.size(3) == x.size(3) && h.size(4) == x.size(4) && h.dtype() == x.dtype() &&
                   h.device() == x.device(),
               "conv3d: history must be [", x.size(0), ", ", x.size(1), ", Th, ", x.size(3), ", ",
               x.size(4), "] of x's dtype and device, got ", h.str());
    history_frames = h.size(2);
  }
  const auto& p = options.padding;
  const auto& s = options.stride;
  const int64_t to =
      ConvOutSize(history_frames + x.size(2), p[0] + p[1], weight.size(2), s[0], "time", x, weight);
  const int64_t ho =
      ConvOutSize(up * x.size(3), p[2] + p[3], weight.size(3), s[1], "height", x, weight);
  const int64_t wo =
      ConvOutSize(up * x.size(4), p[4] + p[5], weight.size(4), s[2], "width", x, weight);
  Tensor out = Tensor::Empty({x.size(0), cout, to, ho, wo}, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  Conv3dOptions kernel_options = options;
  if (h.defined()) kernel_options.history = Contiguous(h);
  KernelsFor(x.device())
      .Conv3d(out, Contiguous(x), kernel_options.history, Contiguous(weight),
              bias.defined() ? Contiguous(bias) : Tensor(), kernel_options);
  return out;
}

Tensor Conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
              std::array<int64_t, 2> stride, std::array<int64_t, 4> padding) {
  SDPO_CHECK(x.dim() == 4 && weight.dim() == 4,
             "conv2d: x must be [B, Cin, H, W] and weight [Cout, Cin, kh, kw], got ", x.str(),
             " and ", weight.str());
  Conv3dOptions options;
  options.stride = {1, stride[0], stride[1]};
  options.padding = {0, 0, padding[0], padding[1], padding[2], padding[3]};
  return Squeeze(Conv3d(Unsqueeze(x, 2), Unsqueeze(weight, 2), bias, options), 2);
}

Tensor UpsampleNearest2x(const Tensor& x) {
  SDPO_CHECK(x.dim() >= 2, "upsample_nearest_2x: needs at least 2 dims, got ", x.str());
  Shape spread = x.shape();
  const int64_t h = spread[spread.size() - 2], w = spread.back();
  spread.pop_back();
  spread.pop_back();
  Shape out_shape = spread;
  out_shape.push_back(2 * h);
  out_shape.push_back(2 * w);
  spread.insert(spread.end(), {h, 2, w, 2});
  Shape unexpanded = spread;
  unexpanded[unexpanded.size() - 3] = 1;
  unexpanded[unexpanded.size() - 1] = 1;
  // [..., H, 1, W, 1] broadcast to [..., H, 2, W, 2]: one copy, then a free reshape.
  Tensor repeated = Contiguous(Expand(Reshape(x, unexpanded), spread));
  return View(repeated, out_shape);
}

Tensor Pad(const Tensor& x, const std::vector<std::array<int64_t, 2>>& pads, double value) {
  const int64_t n = static_cast<int64_t>(pads.size());
  SDPO_CHECK(n <= x.dim(), "pad: ", n, " padded dims for ", x.str());
  Shape shape = x.shape();
  for (int64_t i = 0; i < n; ++i) {
    SDPO_CHECK(pads[i][0] >= 0 && pads[i][1] >= 0, "pad: negative padding (", pads[i][0], ", ",
               pads[i][1], ") for ", x.str());
    shape[x.dim() - n + i] += pads[i][0] + pads[i][1];
  }
  Tensor out = Tensor::Full(shape, value, x.dtype(), x.device());
  Tensor inner = out;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t d = x.dim() - n + i;
    inner = Narrow(inner, d, pads[i][0], x.size(d));
  }
  if (x.numel() > 0) CopyInto(inner, x);
  return out;
}

namespace {

// out = ChannelRmsNorm(x) for a contiguous out of x's shape (out may be x on the CPU, whose
// kernel reads every channel of a position before writing it).
void ChannelRmsNormInto(const Tensor& out, const Tensor& x, const Tensor& gamma, double eps,
                        bool silu) {
  SDPO_CHECK(x.dim() >= 2 && IsFloating(x.dtype()),
             "channel_rms_norm: x must be a floating [B, C, ...] tensor, got ", x.str());
  const int64_t c = x.size(1);
  SDPO_CHECK(gamma.defined() && gamma.numel() == c && gamma.device() == x.device(),
             "channel_rms_norm: gamma must hold ", c, " values on x's device, got ",
             gamma.defined() ? gamma.str() : "undefined", " for x ", x.str());
  SDPO_CHECK(eps > 0, "channel_rms_norm: eps must be > 0, got ", eps);
  if (x.numel() == 0) return;
  const DType stat = x.dtype() == kF64 ? kF64 : kF32;
  const int64_t outer = x.size(0), inner = x.numel() / (outer * c);
  KernelsFor(x.device())
      .ChannelRmsNorm(View(out, {outer, c, inner}), View(Contiguous(x), {outer, c, inner}),
                      Contiguous(Reshape(Cast(gamma, stat), {c})), eps, silu);
}

}  // namespace

Tensor ChannelRmsNorm(const Tensor& x, const Tensor& gamma, double eps, bool silu) {
  Tensor out = Tensor::Empty(x.shape(), x.dtype(), x.device());
  ChannelRmsNormInto(out, x, gamma, eps, silu);
  return out;
}

const Tensor& ChannelRmsNormInPlace(const Tensor& x, const Tensor& gamma, double eps, bool silu) {
  SDPO_CHECK(x.is_contiguous(), "channel_rms_norm (in place): x must be contiguous, got ", x.str());
  if (x.device().is_cpu()) {
    ChannelRmsNormInto(x, x, gamma, eps, silu);
  } else {  // other devices' kernels are not known to allow out == x
    CopyInto(x, ChannelRmsNorm(x, gamma, eps, silu));
  }
  return x;
}

namespace {

// Checks GroupNorm's arguments and runs the kernel into `out` (which may be x on the CPU).
void GroupNormInto(const Tensor& out, const Tensor& x, int64_t groups, const Tensor& weight,
                   const Tensor& bias, double eps, bool silu) {
  SDPO_CHECK(x.dim() >= 2 && IsFloating(x.dtype()),
             "group_norm: x must be a floating [B, C, ...] tensor, got ", x.str());
  const int64_t c = x.size(1);
  SDPO_CHECK(groups >= 1 && c % groups == 0, "group_norm: ", groups, " groups do not divide the ",
             c, " channels of ", x.str());
  SDPO_CHECK(eps > 0, "group_norm: eps must be > 0, got ", eps);
  const DType stat = x.dtype() == kF64 ? kF64 : kF32;
  auto affine = [&](const Tensor& p, const char* what) {
    if (!p.defined()) return Tensor();
    SDPO_CHECK(p.numel() == c && p.device() == x.device() && IsFloating(p.dtype()),
               "group_norm: ", what, " must hold ", c, " floating values on x's device, got ",
               p.str(), " for x ", x.str());
    return Contiguous(Reshape(Cast(p, stat), {c}));
  };
  const Tensor w = affine(weight, "weight"), b = affine(bias, "bias");
  if (x.numel() == 0) return;
  const int64_t batch = x.size(0), inner = x.numel() / (batch * c);
  KernelsFor(x.device())
      .GroupNorm(View(out, {batch, c, inner}), View(Contiguous(x), {batch, c, inner}), w, b, groups,
                 eps, silu);
}

}  // namespace

Tensor GroupNorm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                 double eps, bool silu) {
  Tensor out = Tensor::Empty(x.shape(), x.dtype(), x.device());
  GroupNormInto(out, x, groups, weight, bias, eps, silu);
  return out;
}

const Tensor& GroupNormInPlace(const Tensor& x, int64_t groups, const Tensor& weight,
                               const Tensor& bias, double eps, bool silu) {
  SDPO_CHECK(x.is_contiguous(), "group_norm (in place): x must be contiguous, got ", x.str());
  // The CPU and CUDA kernels take every statistic before they write (Kernels::GroupNorm).
  if (x.device().is_cpu() || x.device().is_cuda()) {
    GroupNormInto(x, x, groups, weight, bias, eps, silu);
  } else {  // other devices' kernels are not known to allow out == x
    CopyInto(x, GroupNorm(x, groups, weight, bias, eps, silu));
  }
  return x;
}

}  // namespace sdpo::ops
