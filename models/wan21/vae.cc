#include "models/wan21/vae.h"

#include <sys/stat.h>

#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "models/checkpoint_util.h"
#include "models/wan21/vae_names.h"
#include "nn/checkpoint_io.h"
#include "nn/layers.h"
#include "tensor/ops.h"

namespace sdpo::wan21 {

// --- streams ------------------------------------------------------------------------------------

// The state one causal part carries from chunk to chunk.
struct StreamSlot {
  Tensor frames;         // cached input frames (undefined before the first chunk)
  bool started = false;  // the stream's first frame has been seen (temporal resamples)
};

// The state of one encode or decode: a slot per causal part, and the stage recorder.
struct VaeStream {
  std::vector<StreamSlot> slots;
  std::map<std::string, std::vector<Tensor>>* recorded = nullptr;
  void Record(const std::string& name, const Tensor& x) const {
    if (recorded != nullptr) (*recorded)[name].push_back(x);
  }
};

namespace {

constexpr double kNormEps = 1e-12;  // F.normalize's default, on the norm

// cache <- the last n frames of concat(cache, x) along T. A full cache followed by fewer frames
// (one frame a step, as the chunked runs go) is shifted in place, so that no second cache is
// alive at once; otherwise a new tensor (never a view that would keep a whole chunk alive).
void KeepLastFrames(Tensor& cache, const Tensor& x, int64_t n) {
  const int64_t t = x.size(2);
  if (t >= n || !cache.defined()) {
    const int64_t keep = std::min(t, n);
    cache = ops::Clone(ops::Narrow(x, 2, t - keep, keep));
    return;
  }
  // The kept frames [t, n) move to [0, n - t): disjoint ranges when n - t <= t.
  if (cache.size(2) == n && n - t <= t && cache.is_contiguous() && !cache.SharesStorage(x)) {
    ops::CopyInto(ops::Narrow(cache, 2, 0, n - t), ops::Narrow(cache, 2, t, n - t));
    ops::CopyInto(ops::Narrow(cache, 2, n - t, t), x);
    return;
  }
  const int64_t from_history = std::min(n - t, cache.size(2));
  cache = ops::Concat({ops::Narrow(cache, 2, cache.size(2) - from_history, from_history), x}, 2);
}

Tensor ConcatFrames(const Tensor& a, const Tensor& b) {
  if (!a.defined() || a.size(2) == 0) return b;
  if (!b.defined() || b.size(2) == 0) return a;
  return ops::Concat({a, b}, 2);
}

// A [Cout, Cin, kh, kw] 2-D kernel as a [Cout, Cin, 1, kh, kw] 3-D one (per-frame convolution).
Tensor AsFrameKernel(const Tensor& w) { return ops::Unsqueeze(w, 2); }

}  // namespace

// --- modules (official names) ---------------------------------------------------------------

// `CausalConv3d`: zero padding p of H and W on both sides and 2p frames before the clip; in a
// stream the padding frames are the cached last frames of the previous chunks.
class VaeCausalConv3d : public nn::Module {
 public:
  VaeCausalConv3d(int64_t in, int64_t out, std::array<int64_t, 3> kernel,
                  std::array<int64_t, 3> stride, std::array<int64_t, 3> padding, int* slots)
      : stride_(stride),
        padding_(padding),
        slot_(padding[0] > 0 ? (*slots)++ : -1),
        caches_outputs_(slot_ >= 0 && out < in && stride[0] == 1 &&
                        kernel[0] == 2 * padding[0] + 1) {
    weight_ = RegisterParameter("weight", Tensor::Zeros({out, in, kernel[0], kernel[1], kernel[2]}),
                                false);
    bias_ = RegisterParameter("bias", Tensor::Zeros({out}), false);
  }
  std::string TypeName() const override { return "CausalConv3d"; }

  Tensor Forward(const Tensor& x, VaeStream& stream) const {
    ops::Conv3dOptions o;
    o.stride = stride_;
    o.padding = {2 * padding_[0], 0, padding_[1], padding_[1], padding_[2], padding_[2]};
    if (slot_ < 0) return ops::Conv3d(x, weight_, bias_, o);
    StreamSlot& slot = stream.slots[slot_];
    if (caches_outputs_ && (x.dtype() == kF32 || x.dtype() == kF64)) {
      return ForwardCachingSums(x, slot);
    }
    const int64_t cached = 2 * padding_[0];
    if (!slot.frames.defined() && x.size(2) < cached) {
      // The causal zero padding as the cache's first value: the cache then has its final size
      // from the first frame on and is only ever shifted in place (KeepLastFrames).
      slot.frames = Tensor::Zeros({x.size(0), x.size(1), cached, x.size(3), x.size(4)}, x.dtype(),
                                  x.device());
    }
    if (slot.frames.defined()) {
      o.history = slot.frames;
      o.padding[0] = std::max<int64_t>(0, o.padding[0] - slot.frames.size(2));
    }
    Tensor out = ops::Conv3d(x, weight_, bias_, o);
    o.history = Tensor();
    KeepLastFrames(slot.frames, x, cached);
    return out;
  }

 private:
  // The same convolution for Cout < Cin (the heads: 96 -> 3 in the decoder), with a smaller
  // cache: instead of the last kt - 1 input frames, the partial sums that the next kt - 1 output
  // frames still need from the frames already seen (Cout instead of Cin channels each). Output
  // frame s = bias + sum over dt of tap_dt(x[s - (kt - 1) + dt]), tap_dt = the 2-D convolution
  // with the time slice dt of the kernel; zero padding frames add nothing. Forward only, f32/f64
  // (the partial sums are kept in the activations' type).
  Tensor ForwardCachingSums(const Tensor& x, StreamSlot& slot) const {
    const int64_t kt = weight_.size(2), cout = weight_.size(0), pending_frames = kt - 1;
    if (x.size(2) == 0) {
      return Tensor::Empty({x.size(0), cout, 0, x.size(3) + 2 * padding_[1] - weight_.size(3) + 1,
                            x.size(4) + 2 * padding_[2] - weight_.size(4) + 1},
                           x.dtype(), x.device());
    }
    // Every time slice as one kernel: taps[:, dt * Cout + co] = tap_dt(x)[:, co].
    const Tensor w =
        ops::Reshape(ops::Contiguous(ops::Permute(weight_, {2, 0, 1, 3, 4})),
                     {kt * cout, weight_.size(1), 1, weight_.size(3), weight_.size(4)});
    ops::Conv3dOptions o;
    o.padding = {0, 0, padding_[1], padding_[1], padding_[2], padding_[2]};
    const Tensor taps = ops::Conv3d(x, w, Tensor(), o);
    auto tap = [&](int64_t dt, int64_t s) {
      return ops::Narrow(ops::Narrow(taps, 1, dt * cout, cout), 2, s, 1);
    };
    // pending[j]: what output frame s + 1 + j has received so far.
    Tensor pending = slot.frames;
    if (!pending.defined()) {
      pending = Tensor::Zeros({x.size(0), cout, pending_frames, taps.size(3), taps.size(4)},
                              x.dtype(), x.device());
    }
    const Tensor bias = ops::Reshape(ops::Cast(bias_, x.dtype()), {1, cout, 1, 1, 1});
    std::vector<Tensor> outs, next(pending_frames);
    for (int64_t s = 0; s < x.size(2); ++s) {
      outs.push_back(ops::Add(ops::Add(ops::Narrow(pending, 2, 0, 1), tap(kt - 1, s)), bias));
      for (int64_t j = 0; j < pending_frames; ++j) {
        const Tensor t = tap(kt - 2 - j, s);
        next[j] = j + 1 < pending_frames ? ops::Add(ops::Narrow(pending, 2, j + 1, 1), t)
                                         : ops::Contiguous(t);
      }
      pending = ops::Concat(next, 2);
    }
    slot.frames = pending;
    return outs.size() == 1 ? outs[0] : ops::Concat(outs, 2);
  }

  std::array<int64_t, 3> stride_, padding_;
  int slot_;
  bool caches_outputs_;  // Cout < Cin: ForwardCachingSums
  Tensor weight_, bias_;
};

// `RMS_norm` (`gamma` [C, 1, 1, 1], or [C, 1, 1] for images).
class VaeRmsNorm : public nn::Module {
 public:
  VaeRmsNorm(int64_t dim, bool images) {
    gamma_ = RegisterParameter(
        "gamma", Tensor::Ones(images ? Shape{dim, 1, 1} : Shape{dim, 1, 1, 1}), false);
  }
  std::string TypeName() const override { return "RMS_norm"; }
  Tensor Forward(const Tensor& x, bool silu) const {
    return ops::ChannelRmsNorm(x, gamma_, kNormEps, silu);
  }
  // The same values written over x (a contiguous tensor nothing else reads afterwards).
  const Tensor& ForwardInPlace(const Tensor& x, bool silu) const {
    return ops::ChannelRmsNormInPlace(x, gamma_, kNormEps, silu);
  }

 private:
  Tensor gamma_;
};

// An `nn.Conv2d` applied to every frame of [B, C, T, H, W].
class VaeConv2d : public nn::Module {
 public:
  VaeConv2d(int64_t in, int64_t out, int64_t kernel) {
    weight_ = RegisterParameter("weight", Tensor::Zeros({out, in, kernel, kernel}), false);
    bias_ = RegisterParameter("bias", Tensor::Zeros({out}), false);
  }
  std::string TypeName() const override { return "Conv2d"; }
  // upsample: convolve the nearest 2x upsampling of every frame (not materialised on the CPU).
  Tensor Forward(const Tensor& x, std::array<int64_t, 2> stride, std::array<int64_t, 4> padding,
                 bool upsample = false) const {
    ops::Conv3dOptions o;
    o.stride = {1, stride[0], stride[1]};
    o.padding = {0, 0, padding[0], padding[1], padding[2], padding[3]};
    o.upsample_input = upsample;
    return ops::Conv3d(x, AsFrameKernel(weight_), bias_, o);
  }

 private:
  Tensor weight_, bias_;
};

// An entry of `downsamples` / `middle` / `upsamples`.
class VaeLayer : public nn::Module {
 public:
  virtual Tensor Forward(const Tensor& x, VaeStream& stream) const = 0;
};

// `ResidualBlock`: shortcut(x) + conv(SiLU(RMS(conv(SiLU(RMS(x)))))).
class VaeResidualBlock : public VaeLayer {
 public:
  VaeResidualBlock(int64_t in, int64_t out, int* slots) {
    norm1_ = RegisterModuleAt("residual.0", std::make_unique<VaeRmsNorm>(in, false));
    conv1_ = RegisterModuleAt(
        "residual.2", std::make_unique<VaeCausalConv3d>(in, out, std::array<int64_t, 3>{3, 3, 3},
                                                        std::array<int64_t, 3>{1, 1, 1},
                                                        std::array<int64_t, 3>{1, 1, 1}, slots));
    norm2_ = RegisterModuleAt("residual.3", std::make_unique<VaeRmsNorm>(out, false));
    conv2_ = RegisterModuleAt(
        "residual.6", std::make_unique<VaeCausalConv3d>(out, out, std::array<int64_t, 3>{3, 3, 3},
                                                        std::array<int64_t, 3>{1, 1, 1},
                                                        std::array<int64_t, 3>{1, 1, 1}, slots));
    if (in != out) {
      shortcut_ = RegisterModule(
          "shortcut", std::make_unique<VaeCausalConv3d>(in, out, std::array<int64_t, 3>{1, 1, 1},
                                                        std::array<int64_t, 3>{1, 1, 1},
                                                        std::array<int64_t, 3>{0, 0, 0}, slots));
    }
  }
  std::string TypeName() const override { return "ResidualBlock"; }
  // Forward-only, so the intermediates are normalised and summed in place: at most x and two
  // block-sized tensors are alive at once.
  Tensor Forward(const Tensor& x, VaeStream& stream) const override {
    Tensor y = conv1_->Forward(norm1_->Forward(x, true), stream);
    y = conv2_->Forward(norm2_->ForwardInPlace(y, true), stream);
    return ops::AddInPlace(y, shortcut_ ? shortcut_->Forward(x, stream) : x);
  }

 private:
  VaeRmsNorm* norm1_;
  VaeCausalConv3d* conv1_;
  VaeRmsNorm* norm2_;
  VaeCausalConv3d* conv2_;
  VaeCausalConv3d* shortcut_ = nullptr;
};

// `AttentionBlock`: per frame, one head over the H*W positions, plus the input.
class VaeAttentionBlock : public VaeLayer {
 public:
  explicit VaeAttentionBlock(int64_t dim) : dim_(dim) {
    norm_ = RegisterModule("norm", std::make_unique<VaeRmsNorm>(dim, true));
    to_qkv_ = RegisterModule("to_qkv", std::make_unique<VaeConv2d>(dim, 3 * dim, 1));
    proj_ = RegisterModule("proj", std::make_unique<VaeConv2d>(dim, dim, 1));
  }
  std::string TypeName() const override { return "AttentionBlock"; }
  Tensor Forward(const Tensor& x, VaeStream&) const override {
    const int64_t b = x.size(0), t = x.size(2), h = x.size(3), w = x.size(4);
    Tensor qkv = to_qkv_->Forward(norm_->Forward(x, false), {1, 1}, {0, 0, 0, 0});
    // [B, 3C, T, H, W] -> [B*T, 1, H*W, 3C]: q, k, v are the three C-channel thirds.
    Tensor rows = ops::Reshape(ops::Permute(qkv, {0, 2, 3, 4, 1}), {b * t, 1, h * w, 3 * dim_});
    auto third = [&](int64_t i) { return ops::Contiguous(ops::Narrow(rows, 3, i * dim_, dim_)); };
    Tensor a = ops::Attention(third(0), third(1), third(2), Tensor(), std::nullopt).out;
    a = ops::Contiguous(ops::Permute(ops::View(a, {b, t, h, w, dim_}), {0, 4, 1, 2, 3}));
    return ops::AddInPlace(proj_->Forward(a, {1, 1}, {0, 0, 0, 0}), x);
  }

 private:
  int64_t dim_;
  VaeRmsNorm* norm_;
  VaeConv2d* to_qkv_;
  VaeConv2d* proj_;
};

// `Resample`: the spatial 2x down/upsampling per frame, and for the 3d modes the temporal one.
class VaeResample : public VaeLayer {
 public:
  enum class Mode { kUpsample2d, kUpsample3d, kDownsample2d, kDownsample3d };
  VaeResample(int64_t dim, Mode mode, int* slots) : dim_(dim), mode_(mode) {
    const bool up = mode == Mode::kUpsample2d || mode == Mode::kUpsample3d;
    resample_ =
        RegisterModuleAt("resample.1", std::make_unique<VaeConv2d>(dim, up ? dim / 2 : dim, 3));
    if (mode == Mode::kUpsample3d) {
      time_conv_ = RegisterModule("time_conv", std::make_unique<VaeCausalConv3d>(
                                                   dim, 2 * dim, std::array<int64_t, 3>{3, 1, 1},
                                                   std::array<int64_t, 3>{1, 1, 1},
                                                   std::array<int64_t, 3>{1, 0, 0}, slots));
    } else if (mode == Mode::kDownsample3d) {
      time_conv_ = RegisterModule(
          "time_conv", std::make_unique<VaeCausalConv3d>(dim, dim, std::array<int64_t, 3>{3, 1, 1},
                                                         std::array<int64_t, 3>{2, 1, 1},
                                                         std::array<int64_t, 3>{0, 0, 0}, slots));
    }
    if (time_conv_ != nullptr) slot_ = (*slots)++;
  }
  std::string TypeName() const override { return "Resample"; }
  Mode mode() const { return mode_; }

  Tensor Forward(const Tensor& x, VaeStream& stream) const override {
    switch (mode_) {
      case Mode::kUpsample2d:
        return Upsample(x);
      case Mode::kUpsample3d:
        return Upsample(TemporalUpsample(x, stream));
      case Mode::kDownsample2d:
        return Downsample(x);
      case Mode::kDownsample3d:
        return TemporalDownsample(Downsample(x), stream);
    }
    return x;
  }

  // The parts of Forward, for callers that run frames one at a time between them.
  // Nearest 2x then a 3x3 conv (C -> C/2), the conv reading x upsampled.
  Tensor Upsample(const Tensor& x) const {
    return resample_->Forward(x, {1, 1}, {1, 1, 1, 1}, /*upsample=*/true);
  }
  // Zero pad right and bottom by 1, 3x3 conv stride 2.
  Tensor Downsample(const Tensor& x) const { return resample_->Forward(x, {2, 2}, {0, 1, 0, 1}); }
  // The stream's first frame passes through; every later frame s goes through the causal
  // temporal conv (zero history before the second frame), giving frames 2s and 2s+1 from the
  // two channel halves.
  Tensor TemporalUpsample(const Tensor& x, VaeStream& stream) const {
    StreamSlot& slot = stream.slots[slot_];
    Tensor first, rest = x;
    if (!slot.started) {
      slot.started = true;
      first = ops::Narrow(x, 2, 0, 1);
      rest = ops::Narrow(x, 2, 1, x.size(2) - 1);
    }
    if (rest.size(2) == 0) return first;
    const int64_t b = x.size(0), n = rest.size(2), h = x.size(3), w = x.size(4);
    Tensor y = time_conv_->Forward(ops::Contiguous(rest), stream);  // [B, 2C, n, H, W]
    y = ops::Reshape(ops::Permute(ops::View(y, {b, 2, dim_, n, h, w}), {0, 2, 3, 1, 4, 5}),
                     {b, dim_, 2 * n, h, w});
    return ConcatFrames(first, y);
  }
  // Output: the stream's first frame, then the stride-2 temporal conv over windows (s0, s1, s2),
  // (s2, s3, s4), ...; the frames of the next window carry over to the next chunk.
  Tensor TemporalDownsample(const Tensor& x, VaeStream& stream) const {
    StreamSlot& slot = stream.slots[slot_];
    Tensor first;
    if (!slot.started) {
      slot.started = true;
      first = ops::Narrow(x, 2, 0, 1);
    }
    Tensor frames = ConcatFrames(slot.frames, x);
    const int64_t n = frames.size(2), windows = n >= 3 ? (n - 3) / 2 + 1 : 0;
    Tensor y;
    if (windows > 0) y = time_conv_->Forward(ops::Narrow(frames, 2, 0, 2 * windows + 1), stream);
    slot.frames = ops::Clone(ops::Narrow(frames, 2, 2 * windows, n - 2 * windows));
    if (!y.defined()) return first.defined() ? first : ops::Narrow(x, 2, 0, 0);
    return ConcatFrames(first, y);
  }

 private:
  int64_t dim_;
  Mode mode_;
  VaeConv2d* resample_;
  VaeCausalConv3d* time_conv_ = nullptr;
  int slot_ = -1;
};

namespace {

// Appends a layer to a Sequential-like list, keeping a typed pointer for the forward.
template <typename L>
void Append(nn::ModuleList* list, std::vector<const VaeLayer*>* layers, std::unique_ptr<L> layer) {
  layers->push_back(list->Append(std::move(layer)));
}

// The head's RMS norm + SiLU of the last layer's output y: in place unless y was recorded.
Tensor NormForHead(const VaeRmsNorm& norm, const Tensor& y, const VaeStream& stream) {
  return stream.recorded != nullptr ? norm.Forward(y, true) : norm.ForwardInPlace(y, true);
}

// Runs layers [begin, end) of `layers` (registered as `<name>.0`, `<name>.1`, ...), recording
// each output.
Tensor RunLayers(const std::vector<const VaeLayer*>& layers, size_t begin, size_t end, Tensor x,
                 VaeStream& stream, const std::string& name) {
  for (size_t i = begin; i < end; ++i) {
    x = layers[i]->Forward(x, stream);
    stream.Record(absl::StrCat(name, ".", i), x);
  }
  return x;
}

using FrameSink = std::function<void(const Tensor&)>;

// The frames of x as separate tensors.
std::vector<Tensor> SplitFrames(const Tensor& x) {
  std::vector<Tensor> frames;
  for (int64_t f = 0; f < x.size(2); ++f)
    frames.push_back(ops::Contiguous(ops::Narrow(x, 2, f, 1)));
  return frames;
}

// Runs `part` on every frame of x in turn and joins the outputs in time. Every layer is a causal
// stream, so this equals one call on the whole chunk; it bounds the working set of the
// high-resolution layers by one frame instead of a chunk's four.
Tensor PerFrame(const Tensor& x, const std::function<Tensor(const Tensor&)>& part) {
  if (x.size(2) <= 1) return part(x);
  std::vector<Tensor> outs;
  for (int64_t f = 0; f < x.size(2); ++f) {
    outs.push_back(part(ops::Contiguous(ops::Narrow(x, 2, f, 1))));
  }
  return ops::Concat(outs, 2);
}

}  // namespace

// `Encoder3d` (its output has 2 * z_dim channels: mu and log_var before `WanVAE_.conv1`).
class VaeEncoder : public nn::Module {
 public:
  explicit VaeEncoder(const WanVaeConfig& c) {
    std::vector<int64_t> dims = {c.dim};
    for (int64_t m : c.dim_mult) dims.push_back(c.dim * m);
    double scale = 1.0;
    conv1_ = RegisterModule("conv1", Conv3(3, dims[0]));
    auto* downsamples = RegisterModule("downsamples", std::make_unique<nn::ModuleList>());
    const int64_t levels = static_cast<int64_t>(c.dim_mult.size());
    int64_t out_dim = dims[0];
    for (int64_t i = 0; i < levels; ++i) {
      int64_t in_dim = dims[i];
      out_dim = dims[i + 1];
      for (int64_t r = 0; r < c.num_res_blocks; ++r) {
        Append(downsamples, &downsamples_,
               std::make_unique<VaeResidualBlock>(in_dim, out_dim, &slots_));
        if (HasScale(c, scale)) {
          Append(downsamples, &downsamples_, std::make_unique<VaeAttentionBlock>(out_dim));
        }
        in_dim = out_dim;
      }
      if (i != levels - 1) {
        const auto mode = c.temperal_downsample[i] ? VaeResample::Mode::kDownsample3d
                                                   : VaeResample::Mode::kDownsample2d;
        const bool first_temporal = c.temperal_downsample[i] && first_temporal_ == nullptr;
        if (first_temporal) per_frame_layers_ = downsamples_.size();
        Append(downsamples, &downsamples_, std::make_unique<VaeResample>(out_dim, mode, &slots_));
        if (first_temporal) {
          first_temporal_ = static_cast<const VaeResample*>(downsamples_.back());
        }
        scale /= 2.0;
      }
    }
    per_frame_layers_ = std::min(per_frame_layers_, downsamples_.size());
    auto* middle = RegisterModule("middle", std::make_unique<nn::ModuleList>());
    Append(middle, &middle_, std::make_unique<VaeResidualBlock>(out_dim, out_dim, &slots_));
    Append(middle, &middle_, std::make_unique<VaeAttentionBlock>(out_dim));
    Append(middle, &middle_, std::make_unique<VaeResidualBlock>(out_dim, out_dim, &slots_));
    head_norm_ = RegisterModuleAt("head.0", std::make_unique<VaeRmsNorm>(out_dim, false));
    head_conv_ = RegisterModuleAt("head.2", Conv3(out_dim, 2 * c.z_dim));
  }
  std::string TypeName() const override { return "Encoder3d"; }
  int slots() const { return slots_; }

  // The layers before the first temporal downsample (the full and half resolutions) and that
  // downsample's spatial half run one frame at a time.
  Tensor Forward(const Tensor& x, VaeStream& stream) const {
    Tensor y = PerFrame(x, [&](const Tensor& frame) {
      Tensor out = conv1_->Forward(frame, stream);
      stream.Record("act.encoder.conv1", out);
      out = RunLayers(downsamples_, 0, per_frame_layers_, out, stream, "act.encoder.downsamples");
      return first_temporal_ != nullptr ? first_temporal_->Downsample(out) : out;
    });
    size_t next = per_frame_layers_;
    if (first_temporal_ != nullptr) {
      y = first_temporal_->TemporalDownsample(y, stream);
      stream.Record(absl::StrCat("act.encoder.downsamples.", next++), y);
    }
    y = RunLayers(downsamples_, next, downsamples_.size(), y, stream, "act.encoder.downsamples");
    y = RunLayers(middle_, 0, middle_.size(), y, stream, "act.encoder.middle");
    y = head_conv_->Forward(NormForHead(*head_norm_, y, stream), stream);
    stream.Record("act.encoder.head.2", y);
    return y;
  }

  static bool HasScale(const WanVaeConfig& c, double scale) {
    for (double s : c.attn_scales) {
      if (s == scale) return true;
    }
    return false;
  }
  std::unique_ptr<VaeCausalConv3d> Conv3(int64_t in, int64_t out) {
    return std::make_unique<VaeCausalConv3d>(in, out, std::array<int64_t, 3>{3, 3, 3},
                                             std::array<int64_t, 3>{1, 1, 1},
                                             std::array<int64_t, 3>{1, 1, 1}, &slots_);
  }

 private:
  int slots_ = 0;
  // The number of downsamples_ before the first temporal downsample (all of them without one),
  // and that downsample.
  size_t per_frame_layers_ = std::numeric_limits<size_t>::max();
  const VaeResample* first_temporal_ = nullptr;
  VaeCausalConv3d* conv1_;
  std::vector<const VaeLayer*> downsamples_, middle_;
  VaeRmsNorm* head_norm_;
  VaeCausalConv3d* head_conv_;
};

// `Decoder3d`.
class VaeDecoder : public nn::Module {
 public:
  explicit VaeDecoder(const WanVaeConfig& c) {
    const int64_t levels = static_cast<int64_t>(c.dim_mult.size());
    std::vector<int64_t> dims = {c.dim * c.dim_mult.back()};
    for (int64_t i = levels - 1; i >= 0; --i) dims.push_back(c.dim * c.dim_mult[i]);
    double scale = 1.0 / std::pow(2.0, static_cast<double>(levels - 2));
    conv1_ = RegisterModule("conv1", Conv3(c.z_dim, dims[0]));
    auto* middle = RegisterModule("middle", std::make_unique<nn::ModuleList>());
    Append(middle, &middle_, std::make_unique<VaeResidualBlock>(dims[0], dims[0], &slots_));
    Append(middle, &middle_, std::make_unique<VaeAttentionBlock>(dims[0]));
    Append(middle, &middle_, std::make_unique<VaeResidualBlock>(dims[0], dims[0], &slots_));
    auto* upsamples = RegisterModule("upsamples", std::make_unique<nn::ModuleList>());
    int64_t out_dim = dims[0];
    for (int64_t i = 0; i < levels; ++i) {
      int64_t in_dim = dims[i];
      out_dim = dims[i + 1];
      if (i == 1 || i == 2 || i == 3) in_dim /= 2;  // the official rule: after an upsample
      for (int64_t r = 0; r < c.num_res_blocks + 1; ++r) {
        Append(upsamples, &upsamples_,
               std::make_unique<VaeResidualBlock>(in_dim, out_dim, &slots_));
        if (VaeEncoder::HasScale(c, scale)) {
          Append(upsamples, &upsamples_, std::make_unique<VaeAttentionBlock>(out_dim));
        }
        in_dim = out_dim;
      }
      if (i != levels - 1) {
        // The official decoder reads temperal_downsample reversed.
        const bool temporal = c.temperal_downsample[c.temperal_downsample.size() - 1 - i];
        const auto mode =
            temporal ? VaeResample::Mode::kUpsample3d : VaeResample::Mode::kUpsample2d;
        Append(upsamples, &upsamples_, std::make_unique<VaeResample>(out_dim, mode, &slots_));
        temporal_upsamples_.resize(upsamples_.size());
        if (temporal) {
          temporal_upsamples_.back() = static_cast<const VaeResample*>(upsamples_.back());
        }
        scale *= 2.0;
      }
    }
    temporal_upsamples_.resize(upsamples_.size());
    head_norm_ = RegisterModuleAt("head.0", std::make_unique<VaeRmsNorm>(out_dim, false));
    head_conv_ = RegisterModuleAt("head.2", Conv3(out_dim, 3));
  }
  std::string TypeName() const override { return "Decoder3d"; }
  int slots() const { return slots_; }

  // Decodes a chunk, handing the output frames to `emit` in order. The frames a temporal upsample
  // makes go through the rest of the decoder one at a time (depth first), so that besides the
  // streams' state only one frame per level waits; every layer is a causal stream, so this
  // equals one pass over the chunk.
  void Forward(const Tensor& x, VaeStream& stream, const FrameSink& emit) const {
    Tensor y = conv1_->Forward(x, stream);
    stream.Record("act.decoder.conv1", y);
    y = RunLayers(middle_, 0, middle_.size(), y, stream, "act.decoder.middle");
    RunUpsamples(0, std::move(y), stream, emit);
  }

 private:
  std::unique_ptr<VaeCausalConv3d> Conv3(int64_t in, int64_t out) {
    return std::make_unique<VaeCausalConv3d>(in, out, std::array<int64_t, 3>{3, 3, 3},
                                             std::array<int64_t, 3>{1, 1, 1},
                                             std::array<int64_t, 3>{1, 1, 1}, &slots_);
  }

  // upsamples_[i..] and the head on x.
  void RunUpsamples(size_t i, Tensor x, VaeStream& stream, const FrameSink& emit) const {
    for (; i < upsamples_.size(); ++i) {
      const VaeResample* temporal = temporal_upsamples_[i];
      if (temporal == nullptr) {
        x = upsamples_[i]->Forward(x, stream);
        stream.Record(absl::StrCat("act.decoder.upsamples.", i), x);
        continue;
      }
      std::vector<Tensor> frames = SplitFrames(temporal->TemporalUpsample(x, stream));
      x = Tensor();
      for (Tensor& frame : frames) {
        Tensor y = temporal->Upsample(frame);
        frame = Tensor();
        stream.Record(absl::StrCat("act.decoder.upsamples.", i), y);
        RunUpsamples(i + 1, std::move(y), stream, emit);
      }
      return;
    }
    x = head_conv_->Forward(NormForHead(*head_norm_, x, stream), stream);
    stream.Record("act.decoder.head.2", x);
    emit(x);
  }

  int slots_ = 0;
  VaeCausalConv3d* conv1_;
  std::vector<const VaeLayer*> middle_, upsamples_;
  std::vector<const VaeResample*> temporal_upsamples_;  // per upsamples_ entry: null, or itself
  VaeRmsNorm* head_norm_;
  VaeCausalConv3d* head_conv_;
};

// --- WanVae -------------------------------------------------------------------------------------

namespace {

// A pointwise `CausalConv3d(c, c, 1)` (no stream state).
std::unique_ptr<VaeCausalConv3d> Pointwise(int64_t channels) {
  int unused = 0;
  return std::make_unique<VaeCausalConv3d>(channels, channels, std::array<int64_t, 3>{1, 1, 1},
                                           std::array<int64_t, 3>{1, 1, 1},
                                           std::array<int64_t, 3>{0, 0, 0}, &unused);
}

DType OutputDType(DType compute) { return compute == kF64 ? kF64 : kF32; }

// Joins the recorded chunks of every stage into `capture`.
void JoinRecorded(std::map<std::string, std::vector<Tensor>>& recorded,
                  std::map<std::string, Tensor>* capture) {
  for (auto& [name, parts] : recorded) (*capture)[name] = ops::Concat(parts, 2);
}

Tensor ScaleVector(const Tensor& v, int64_t z, const char* what, DType dtype, Device device) {
  SDPO_CHECK(v.numel() == z, "WanVAE_: the scale's ", what, " must have ", z,
             " values (z_dim), got ", v.str());
  return ops::To(ops::Cast(ops::Reshape(v, {1, z, 1, 1, 1}), dtype), device);
}

}  // namespace

WanVae::WanVae(const WanVaeConfig& config) : config_(config) {
  config_.Validate();
  encoder_ = RegisterModule("encoder", std::make_unique<VaeEncoder>(config_));
  conv1_ = RegisterModule("conv1", Pointwise(2 * config_.z_dim));
  conv2_ = RegisterModule("conv2", Pointwise(config_.z_dim));
  decoder_ = RegisterModule("decoder", std::make_unique<VaeDecoder>(config_));
}

WanVae::~WanVae() = default;

int64_t WanVae::LatentFrames(int64_t video_frames) const {
  SDPO_CHECK(video_frames >= 1, "WanVAE_: a video needs at least 1 frame, got ", video_frames);
  return 1 + (video_frames - 1) / config_.temporal_factor();
}

int64_t WanVae::VideoFrames(int64_t latent_frames) const {
  SDPO_CHECK(latent_frames >= 1, "WanVAE_: a latent needs at least 1 frame, got ", latent_frames);
  return 1 + (latent_frames - 1) * config_.temporal_factor();
}

VaeScale WanVae::ResolveScale(const VaeScale& scale, DType dtype, Device device) const {
  const int64_t z = config_.z_dim;
  VaeScale s;
  if (scale.mean.defined() || scale.inv_std.defined()) {
    SDPO_CHECK(scale.mean.defined() && scale.inv_std.defined(),
               "WanVAE_: give both scale vectors (mean and inv_std) or neither");
    s.mean = ScaleVector(scale.mean, z, "mean", dtype, device);
    s.inv_std = ScaleVector(scale.inv_std, z, "inv_std", dtype, device);
    return s;
  }
  SDPO_CHECK(z == static_cast<int64_t>(kWanVaeLatentMean.size()), "WanVAE_: z_dim ", z,
             " has no official latent statistics (they have 16 channels): pass a scale");
  std::vector<double> mean(kWanVaeLatentMean.begin(), kWanVaeLatentMean.end()), inv(z);
  for (int64_t i = 0; i < z; ++i) {  // 1.0 / std of a float32 tensor, as WanVAE builds it
    inv[i] = static_cast<float>(1.0f / static_cast<float>(kWanVaeLatentStd[i]));
    mean[i] = static_cast<float>(mean[i]);
  }
  s.mean = ScaleVector(Tensor::FromVector(mean, {z}, kF64), z, "mean", dtype, device);
  s.inv_std = ScaleVector(Tensor::FromVector(inv, {z}, kF64), z, "inv_std", dtype, device);
  return s;
}

VaeEncoding WanVae::Encode(const Tensor& x_in, const VaeScale& scale,
                           const VaeRunOptions& options) const {
  NoGradGuard no_grad;
  const Tensor weight = conv1_->FindParameter("weight");
  const DType dtype = weight.dtype();
  const Device device = weight.device();
  SDPO_CHECK(x_in.dim() == 5 && x_in.size(1) == 3,
             "WanVAE_ encode: the video must be [B, 3, T, H, W], got ", x_in.str());
  Tensor x = ops::To(ops::Cast(x_in, dtype), device);
  const int64_t step = config_.temporal_factor();
  const int64_t frames = VideoFrames(LatentFrames(x.size(2)));  // 1 + 4k; the rest is dropped

  std::map<std::string, std::vector<Tensor>> recorded;
  VaeStream stream;
  stream.slots.resize(encoder_->slots());
  if (options.capture != nullptr) stream.recorded = &recorded;
  std::vector<Tensor> outs;
  if (options.chunked) {
    outs.push_back(encoder_->Forward(ops::Narrow(x, 2, 0, 1), stream));
    for (int64_t start = 1; start < frames; start += step) {
      outs.push_back(encoder_->Forward(ops::Narrow(x, 2, start, step), stream));
    }
  } else {
    outs.push_back(encoder_->Forward(ops::Narrow(x, 2, 0, frames), stream));
  }
  x = Tensor();
  Tensor h = outs.size() == 1 ? outs[0] : ops::Concat(outs, 2);
  outs.clear();
  VaeStream no_stream;
  Tensor y = conv1_->Forward(h, no_stream);
  const int64_t z = config_.z_dim;
  const DType out_dtype = OutputDType(dtype);
  VaeEncoding e;
  e.mu_raw = ops::Cast(ops::Narrow(y, 1, 0, z), out_dtype);
  e.log_var = ops::Cast(ops::Narrow(y, 1, z, z), out_dtype);
  const VaeScale s = ResolveScale(scale, out_dtype, device);
  e.mu = ops::Mul(ops::Sub(e.mu_raw, s.mean), s.inv_std);
  e.mu_raw = ops::Contiguous(e.mu_raw);
  e.log_var = ops::Contiguous(e.log_var);
  if (options.capture != nullptr) {
    JoinRecorded(recorded, options.capture);
    (*options.capture)["mu_raw"] = e.mu_raw;
    (*options.capture)["log_var"] = e.log_var;
    (*options.capture)["mu"] = e.mu;
  }
  return e;
}

Tensor WanVae::DecodeRaw(const Tensor& z_in, const VaeScale& scale,
                         const VaeRunOptions& options) const {
  NoGradGuard no_grad;
  const Tensor weight = conv2_->FindParameter("weight");
  const DType dtype = weight.dtype();
  const Device device = weight.device();
  const DType out_dtype = OutputDType(dtype);
  SDPO_CHECK(z_in.dim() == 5 && z_in.size(1) == config_.z_dim,
             "WanVAE_ decode: the latent must be [B, ", config_.z_dim, ", T, h, w], got ",
             z_in.str());
  const VaeScale s = ResolveScale(scale, out_dtype, device);
  Tensor z = ops::Add(ops::Div(ops::To(ops::Cast(z_in, out_dtype), device), s.inv_std), s.mean);
  if (options.capture != nullptr) (*options.capture)["z_unscaled"] = z;
  VaeStream no_stream;
  Tensor x = conv2_->Forward(ops::Cast(z, dtype), no_stream);
  z = Tensor();
  if (options.capture != nullptr) (*options.capture)["act.conv2"] = x;

  std::map<std::string, std::vector<Tensor>> recorded;
  VaeStream stream;
  stream.slots.resize(decoder_->slots());
  if (options.capture != nullptr) stream.recorded = &recorded;
  const int64_t latent_frames = x.size(2);
  const int64_t f = config_.spatial_factor();
  Tensor out = Tensor::Empty(
      {x.size(0), 3, VideoFrames(latent_frames), f * x.size(3), f * x.size(4)}, out_dtype, device);
  int64_t written = 0;
  auto emit = [&](const Tensor& part) {
    SDPO_CHECK(part.size(2) + written <= out.size(2) && part.size(3) == out.size(3) &&
                   part.size(4) == out.size(4),
               "WanVAE_ decode: a chunk of ", part.str(), " does not fit the output ", out.str(),
               " at frame ", written);
    ops::CopyInto(ops::Narrow(out, 2, written, part.size(2)), part);
    written += part.size(2);
  };
  if (options.chunked) {
    for (int64_t i = 0; i < latent_frames; ++i) {
      decoder_->Forward(ops::Contiguous(ops::Narrow(x, 2, i, 1)), stream, emit);
    }
  } else {
    decoder_->Forward(x, stream, emit);
  }
  SDPO_CHECK(written == out.size(2), "WanVAE_ decode: produced ", written, " frames, expected ",
             out.size(2));
  if (options.capture != nullptr) JoinRecorded(recorded, options.capture);
  return out;
}

Tensor WanVae::Decode(const Tensor& z, const VaeScale& scale, const VaeRunOptions& options) const {
  Tensor video = DecodeRaw(z, scale, options);
  ops::ClampInPlace(video, -1.0, 1.0);
  return video;
}

// --- loading ------------------------------------------------------------------------------------

WanVaeConfig ResolveVaeConfig(const std::string& weights_path, std::string* source) {
  const std::string dir = ckpt::IsFile(weights_path) ? ckpt::DirName(weights_path) : weights_path;
  const std::string candidate = dir + "/vae_config.json";
  if (ckpt::IsFile(candidate)) {
    if (source != nullptr) *source = candidate;
    return WanVaeConfig::FromFile(candidate);
  }
  if (source != nullptr) *source = "official (dim 96, no vae_config.json next to the weights)";
  return WanVaeConfig();
}

namespace {

// A source with diffusers `AutoencoderKLWan` names seen under the official names (vae_names.h);
// names outside the table keep their spelling, so they are reported as unexpected.
class OfficialNamesSource final : public nn::TensorSource {
 public:
  explicit OfficialNamesSource(const nn::TensorSource& base) : base_(base) {
    for (const std::string& key : base.Keys()) {
      const std::optional<std::string> official = VaeDiffusersToOfficial(key);
      to_base_[official ? *official : key] = key;
    }
  }
  std::vector<std::string> Keys() const override {
    std::vector<std::string> keys;
    for (const auto& [official, key] : to_base_) keys.push_back(official);
    return keys;
  }
  Shape KeyShape(const std::string& key) const override { return base_.KeyShape(to_base_.at(key)); }
  void CopyTo(const std::string& key, const Tensor& dst) const override {
    base_.CopyTo(to_base_.at(key), dst);
  }
  std::string Describe() const override { return base_.Describe() + " (diffusers names)"; }

 private:
  const nn::TensorSource& base_;
  std::map<std::string, std::string> to_base_;
};

// Diffusers checkpoints have names the official layout lacks (quant_conv, conv_in, ...).
bool HasDiffusersNames(const nn::TensorSource& source) {
  for (const std::string& key : source.Keys()) {
    const std::optional<std::string> official = VaeDiffusersToOfficial(key);
    if (official && *official != key) return true;
  }
  return false;
}

}  // namespace

void LoadVaeWeights(WanVae& vae, const nn::TensorSource& source) {
  if (HasDiffusersNames(source)) {
    vae.LoadStateDict(OfficialNamesSource(source), /*strict=*/true);
  } else {
    vae.LoadStateDict(source, /*strict=*/true);
  }
}

std::unique_ptr<WanVae> LoadVae(const std::string& weights_path,
                                const std::optional<WanVaeConfig>& config, VaeLoadReport* report) {
  std::string config_source = "given";
  const WanVaeConfig c = config ? *config : ResolveVaeConfig(weights_path, &config_source);
  std::unique_ptr<nn::CheckpointSource> source = nn::OpenTensorSource(weights_path);
  auto vae = std::make_unique<WanVae>(c);
  LoadVaeWeights(*vae, *source);
  if (report != nullptr) {
    report->path = source->Describe();
    report->config_source = config_source;
    report->tensors = static_cast<int64_t>(vae->NamedParameters().size());
    report->values = vae->NumParameters();
  }
  return vae;
}

}  // namespace sdpo::wan21
