#include "models/cogvideox/vae.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "models/checkpoint_util.h"
#include "nn/checkpoint_io.h"
#include "tensor/ops.h"

namespace sdpo::cogvideox {

// The state of one encode or decode: each causal conv's cache (the last 2 frames of its padded
// input of the previous piece) and the stage recorder.
struct VaeStream {
  std::vector<Tensor> caches;
  std::map<std::string, std::vector<Tensor>>* recorded = nullptr;
  void Record(const std::string& name, const Tensor& x) const {
    if (recorded != nullptr) (*recorded)[name].push_back(x);
  }
};

namespace {

constexpr double kSpatialNormEps = 1e-6;  // hard-coded in the official spatial and output norms

// True when no other tensor, view or capture refers to t's values, so that they may be
// overwritten. The decoder's activations are GBs at 480 x 720: a norm whose input dies with it
// runs in place (a resnet's input survives only as an identity shortcut, a capture keeps them all).
bool SoleOwner(const Tensor& t) {
  return t.impl_ptr().use_count() == 1 && t.storage().use_count() == 1 && t.is_contiguous();
}

// `weight` [out, in, k...] and `bias` [out] of an nn.Conv3d / nn.Conv2d.
class ConvParams : public nn::Module {
 public:
  ConvParams(int64_t in, int64_t out, Shape kernel) {
    Shape shape = {out, in};
    shape.insert(shape.end(), kernel.begin(), kernel.end());
    weight_ = RegisterParameter("weight", Tensor::Zeros(shape), false);
    bias_ = RegisterParameter("bias", Tensor::Zeros({out}), false);
  }
  std::string TypeName() const override { return "Conv"; }
  // A 1x1x1 conv (conv_shortcut, the spatial norm's conv_y / conv_b): no padding, no cache.
  Tensor Pointwise(const Tensor& x) const { return ops::Conv3d(x, weight_, bias_); }
  // A 2-D kernel on every frame of [B, C, T, H, W]; upsample: on the nearest 2x upsampling of
  // every frame (not materialised on the CPU).
  Tensor PerFrame(const Tensor& x, std::array<int64_t, 3> stride, std::array<int64_t, 6> padding,
                  bool upsample = false) const {
    ops::Conv3dOptions o;
    o.stride = stride;
    o.padding = padding;
    o.upsample_input = upsample;
    return ops::Conv3d(x, ops::Unsqueeze(weight_, 2), bias_, o);
  }
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_, bias_;
};

// `CogVideoXCausalConv3d` with kernel 3 (pad_mode "first"): 2 frames before the piece (copies of
// frame 0 on the first piece, the cache afterwards), zero padding 1 in H and W.
class CausalConv3d : public nn::Module {
 public:
  CausalConv3d(int64_t in, int64_t out, int* slots) : slot_((*slots)++) {
    conv_ = RegisterModule("conv", std::make_unique<ConvParams>(in, out, Shape{3, 3, 3}));
  }
  std::string TypeName() const override { return "CogVideoXCausalConv3d"; }

  Tensor Forward(const Tensor& x, VaeStream& stream) const {
    Tensor& cache = stream.caches[slot_];
    const int64_t t = x.size(2);
    Tensor history = cache;
    if (!history.defined()) {
      Shape two = x.shape();
      two[2] = 2;
      history = ops::Contiguous(ops::Expand(ops::Narrow(x, 2, 0, 1), two));
    }
    ops::Conv3dOptions o;
    o.padding = {0, 0, 1, 1, 1, 1};
    o.history = history;
    Tensor out = ops::Conv3d(x, conv_->weight(), conv_->bias(), o);
    // The last 2 frames of concat(history, x), as new storage (never a view keeping x alive).
    cache = t >= 2 ? ops::Clone(ops::Narrow(x, 2, t - 2, 2))
                   : ops::Concat({ops::Narrow(history, 2, 1, 1), x}, 2);
    return out;
  }

 private:
  int slot_;
  ConvParams* conv_;
};

// `nn.GroupNorm` (affine).
class GroupNormModule : public nn::Module {
 public:
  GroupNormModule(int64_t channels, int64_t groups, double eps) : groups_(groups), eps_(eps) {
    weight_ = RegisterParameter("weight", Tensor::Ones({channels}), false);
    bias_ = RegisterParameter("bias", Tensor::Zeros({channels}), false);
  }
  std::string TypeName() const override { return "GroupNorm"; }
  // In place when x is its caller's alone (see SoleOwner).
  Tensor Forward(Tensor x, bool silu) const {
    if (SoleOwner(x)) return ops::GroupNormInPlace(x, groups_, weight_, bias_, eps_, silu);
    return ops::GroupNorm(x, groups_, weight_, bias_, eps_, silu);
  }

 private:
  int64_t groups_;
  double eps_;
  Tensor weight_, bias_;
};

// PyTorch's legacy `nearest` source index for each destination index of one axis
// (F.interpolate(size=...)): floor(dst * (float)in / out), clipped; exact shortcuts for equal
// and doubled sizes.
std::vector<int64_t> NearestIndex(int64_t in, int64_t out) {
  std::vector<int64_t> index(out);
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t d = 0; d < out; ++d) {
    if (out == in) {
      index[d] = d;
    } else if (out == 2 * in) {
      index[d] = d >> 1;
    } else {
      index[d] = std::min(static_cast<int64_t>(std::floor(static_cast<float>(d) * scale)), in - 1);
    }
  }
  return index;
}

// n = n * resize(y) + resize(b), then SiLU when asked, with y, b [B, C, t, h, w] resized by
// nearest to n's (T, H, W), one frame of n at a time: besides n only a frame's temporaries exist.
// When H and W repeat each source index r times (the decoder's case), the resize is a broadcast
// view.
void ModulateNearestInPlace(const Tensor& n, const Tensor& y, const Tensor& b, bool silu) {
  const int64_t B = n.size(0), C = n.size(1);
  std::array<int64_t, 3> in = {y.size(2), y.size(3), y.size(4)};
  std::array<int64_t, 3> out = {n.size(2), n.size(3), n.size(4)};
  for (int a = 0; a < 3; ++a) {
    SDPO_CHECK(in[a] >= 1, "CogVideoXSpatialNorm3D: the latent ", y.str(),
               " has no frames or pixels to resize to ", n.str());
  }
  bool repeats = true;
  for (int a = 1; a < 3; ++a) {
    if (out[a] % in[a] != 0) {
      repeats = false;
      continue;
    }
    const std::vector<int64_t> index = NearestIndex(in[a], out[a]);
    for (int64_t d = 0; d < out[a]; ++d) repeats = repeats && index[d] == d / (out[a] / in[a]);
  }
  // The spatial resize of one latent frame [B, C, 1, h, w] to n's frame size.
  auto spatial = [&](const Tensor& t) {
    Tensor r = t;
    for (int a = 1; a < 3; ++a) {
      Tensor idx = ops::To(Tensor::FromVector(NearestIndex(in[a], out[a]), {out[a]}), t.device());
      r = ops::IndexSelect(r, 2 + a, idx);
    }
    return r;
  };
  const std::vector<int64_t> frame_source = NearestIndex(in[0], out[0]);
  for (int64_t d = 0; d < out[0]; ++d) {
    const Tensor nd = ops::Narrow(n, 2, d, 1);
    const Tensor yd = ops::Narrow(y, 2, frame_source[d], 1);
    const Tensor bd = ops::Narrow(b, 2, frame_source[d], 1);
    Tensor r;
    if (repeats) {
      const Shape wide = {B, C, in[1], out[1] / in[1], in[2], out[2] / in[2]};
      const Shape narrow = {B, C, in[1], 1, in[2], 1};
      r = ops::Add(ops::Mul(ops::Reshape(nd, wide), ops::Reshape(yd, narrow)),
                   ops::Reshape(bd, narrow));
      r = ops::View(r, nd.shape());
    } else {
      r = ops::Add(ops::Mul(nd, spatial(yd)), spatial(bd));
    }
    if (silu) r = ops::Unary(ops::UnaryOp::kSilu, r);
    ops::CopyInto(nd, r);
  }
}

// `CogVideoXSpatialNorm3D(f, zq)`: GroupNorm(f) * conv_y(zq') + conv_b(zq'), zq' the latent
// resized to f's frames and size (frame 0 on its own when f has an odd number > 1 of frames).
// conv_y and conv_b are pointwise, so they run on the latent before the resize (the same
// values, computed at latent resolution).
class SpatialNorm3D : public nn::Module {
 public:
  SpatialNorm3D(int64_t channels, int64_t latent, int64_t groups) {
    norm_ = RegisterModule("norm_layer",
                           std::make_unique<GroupNormModule>(channels, groups, kSpatialNormEps));
    conv_y_ = RegisterModuleAt("conv_y.conv",
                               std::make_unique<ConvParams>(latent, channels, Shape{1, 1, 1}));
    conv_b_ = RegisterModuleAt("conv_b.conv",
                               std::make_unique<ConvParams>(latent, channels, Shape{1, 1, 1}));
  }
  std::string TypeName() const override { return "CogVideoXSpatialNorm3D"; }

  // In place over f when f is its caller's alone (see SoleOwner).
  Tensor Forward(Tensor f, const Tensor& zq, bool silu) const {
    const int64_t t = f.size(2), tz = zq.size(2);
    SDPO_CHECK(t <= 1 || t % 2 == 0 || tz >= 2, "CogVideoXSpatialNorm3D: ", t, " frames of ",
               f.str(), " need at least 2 latent frames, got ", zq.str());
    Tensor n = norm_->Forward(std::move(f), false);
    Tensor y = conv_y_->Pointwise(zq), b = conv_b_->Pointwise(zq);
    if (t > 1 && t % 2 == 1) {
      ModulateNearestInPlace(ops::Narrow(n, 2, 0, 1), ops::Narrow(y, 2, 0, 1),
                             ops::Narrow(b, 2, 0, 1), silu);
      ModulateNearestInPlace(ops::Narrow(n, 2, 1, t - 1), ops::Narrow(y, 2, 1, tz - 1),
                             ops::Narrow(b, 2, 1, tz - 1), silu);
    } else {
      ModulateNearestInPlace(n, y, b, silu);
    }
    return n;
  }

 private:
  GroupNormModule* norm_;
  ConvParams* conv_y_;
  ConvParams* conv_b_;
};

// `CogVideoXResnetBlock3D`: shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))), the norms
// GroupNorm (encoder) or spatial norms with the piece's latent (decoder, `latent` > 0).
class ResnetBlock3D : public nn::Module {
 public:
  ResnetBlock3D(int64_t in, int64_t out, const CogVideoXVaeConfig& c, int64_t latent, int* slots) {
    const int64_t g = c.norm_num_groups;
    if (latent > 0) {
      snorm1_ = RegisterModule("norm1", std::make_unique<SpatialNorm3D>(in, latent, g));
    } else {
      gnorm1_ = RegisterModule("norm1", std::make_unique<GroupNormModule>(in, g, c.norm_eps));
    }
    conv1_ = RegisterModule("conv1", std::make_unique<CausalConv3d>(in, out, slots));
    if (latent > 0) {
      snorm2_ = RegisterModule("norm2", std::make_unique<SpatialNorm3D>(out, latent, g));
    } else {
      gnorm2_ = RegisterModule("norm2", std::make_unique<GroupNormModule>(out, g, c.norm_eps));
    }
    conv2_ = RegisterModule("conv2", std::make_unique<CausalConv3d>(out, out, slots));
    if (in != out) {
      shortcut_ =
          RegisterModule("conv_shortcut", std::make_unique<ConvParams>(in, out, Shape{1, 1, 1}));
    }
  }
  std::string TypeName() const override { return "CogVideoXResnetBlock3D"; }

  // x is consumed: with a conv shortcut nothing else needs it and norm1 overwrites it.
  Tensor Forward(Tensor x, const Tensor& zq, VaeStream& stream) const {
    const Tensor residual = shortcut_ ? shortcut_->Pointwise(x) : x;
    Tensor h =
        snorm1_ ? snorm1_->Forward(std::move(x), zq, true) : gnorm1_->Forward(std::move(x), true);
    h = conv1_->Forward(h, stream);
    h = snorm2_ ? snorm2_->Forward(std::move(h), zq, true) : gnorm2_->Forward(std::move(h), true);
    h = conv2_->Forward(h, stream);
    ops::AddInPlace(h, residual);  // h is the conv's fresh output
    return h;
  }

 private:
  GroupNormModule* gnorm1_ = nullptr;
  GroupNormModule* gnorm2_ = nullptr;
  SpatialNorm3D* snorm1_ = nullptr;
  SpatialNorm3D* snorm2_ = nullptr;
  CausalConv3d* conv1_;
  CausalConv3d* conv2_;
  ConvParams* shortcut_ = nullptr;
};

// Frames after a temporal 2x down/upsampling of one piece (odd counts keep frame 0 apart).
int64_t DownsampledFrames(int64_t t) { return t <= 1 ? t : (t % 2 == 1 ? 1 + (t - 1) / 2 : t / 2); }
int64_t UpsampledFrames(int64_t t) { return t <= 1 ? t : (t % 2 == 1 ? 2 * t - 1 : 2 * t); }

// (a + b) / 2 of frame pairs (0, 1), (2, 3), ... of x (avg_pool1d(2, 2) along T).
Tensor AveragePairs(const Tensor& x) {
  const int64_t pairs = x.size(2) / 2;
  return ops::MulScalar(
      ops::Add(ops::Slice(x, 2, 0, 2 * pairs, 2), ops::Slice(x, 2, 1, 2 * pairs, 2)), 0.5);
}

// `CogVideoXDownsample3D`: the temporal average (compress_time), then per frame a zero pad of 1
// right and bottom and a 3x3 conv with stride 2.
class Downsample3D : public nn::Module {
 public:
  Downsample3D(int64_t channels, bool compress_time) : compress_time_(compress_time) {
    conv_ = RegisterModule("conv", std::make_unique<ConvParams>(channels, channels, Shape{3, 3}));
  }
  std::string TypeName() const override { return "CogVideoXDownsample3D"; }
  Tensor Forward(Tensor x) const {
    const int64_t t = x.size(2);
    if (compress_time_ && t > 1) {
      x = t % 2 == 1
              ? ops::Concat({ops::Narrow(x, 2, 0, 1), AveragePairs(ops::Narrow(x, 2, 1, t - 1))}, 2)
              : AveragePairs(x);
    }
    return conv_->PerFrame(x, {1, 2, 2}, {0, 0, 0, 1, 0, 1});
  }

 private:
  bool compress_time_;
  ConvParams* conv_;
};

// `CogVideoXUpsample3D`: nearest 2x in H and W (and in time for compress_time: frame 0 of an odd
// piece once, every other frame twice), then a 3x3 conv per frame. A repeated frame gives the
// same conv output, so each source frame is convolved once, one upsampled frame at a time.
class Upsample3D : public nn::Module {
 public:
  Upsample3D(int64_t channels, bool compress_time) : compress_time_(compress_time) {
    conv_ = RegisterModule("conv", std::make_unique<ConvParams>(channels, channels, Shape{3, 3}));
  }
  std::string TypeName() const override { return "CogVideoXUpsample3D"; }
  Tensor Forward(const Tensor& x) const {
    const int64_t t = x.size(2);
    const int64_t t_out = compress_time_ ? UpsampledFrames(t) : t;
    const int64_t c_out = conv_->weight().size(0);
    Tensor out = Tensor::Empty({x.size(0), c_out, t_out, 2 * x.size(3), 2 * x.size(4)}, x.dtype(),
                               x.device());
    for (int64_t s = 0; s < t; ++s) {
      Tensor frame = conv_->PerFrame(ops::Narrow(x, 2, s, 1), {1, 1, 1}, {0, 0, 1, 1, 1, 1},
                                     /*upsample=*/true);
      int64_t first = s, copies = 1;
      if (t_out != t) {
        first = t % 2 == 1 ? (s == 0 ? 0 : 2 * s - 1) : 2 * s;
        copies = t % 2 == 1 && s == 0 ? 1 : 2;
      }
      for (int64_t k = 0; k < copies; ++k) ops::CopyInto(ops::Narrow(out, 2, first + k, 1), frame);
    }
    return out;
  }

 private:
  bool compress_time_;
  ConvParams* conv_;
};

// `CogVideoXDownBlock3D` / `CogVideoXUpBlock3D` / `CogVideoXMidBlock3D`: resnets, then at most
// one resampler.
class VaeBlock : public nn::Module {
 public:
  VaeBlock(const char* type, int64_t resnets, int64_t in, int64_t out, const CogVideoXVaeConfig& c,
           int64_t latent, int* slots)
      : type_(type) {
    auto* list = RegisterModule("resnets", std::make_unique<nn::ModuleList>());
    for (int64_t i = 0; i < resnets; ++i) {
      resnets_.push_back(
          list->Append(std::make_unique<ResnetBlock3D>(i == 0 ? in : out, out, c, latent, slots)));
    }
  }
  std::string TypeName() const override { return type_; }
  void AddDownsampler(int64_t channels, bool compress_time) {
    down_ =
        RegisterModuleAt("downsamplers.0", std::make_unique<Downsample3D>(channels, compress_time));
  }
  void AddUpsampler(int64_t channels, bool compress_time) {
    up_ = RegisterModuleAt("upsamplers.0", std::make_unique<Upsample3D>(channels, compress_time));
  }

  Tensor Forward(Tensor x, const Tensor& zq, VaeStream& stream) const {
    for (const ResnetBlock3D* r : resnets_) x = r->Forward(std::move(x), zq, stream);
    if (down_ != nullptr) x = down_->Forward(x);
    if (up_ != nullptr) x = up_->Forward(x);
    return x;
  }

 private:
  std::string type_;
  std::vector<const ResnetBlock3D*> resnets_;
  Downsample3D* down_ = nullptr;
  Upsample3D* up_ = nullptr;
};

DType OutputDType(DType compute) { return compute == kF64 ? kF64 : kF32; }

// The official pieces of a clip of `frames` frames for batch size `size`: the first piece takes
// the remainder, the others have `size` frames. (start, length) pairs.
std::vector<std::pair<int64_t, int64_t>> FramePieces(int64_t frames, int64_t size) {
  const int64_t n = std::max<int64_t>(frames / size, 1), r = frames % size;
  std::vector<std::pair<int64_t, int64_t>> pieces;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t start = size * i + (i == 0 ? 0 : r);
    const int64_t end = std::min(size * (i + 1) + r, frames);
    if (end > start) pieces.emplace_back(start, end - start);
  }
  return pieces;
}

// Frames after `levels` temporal steps of `per_level`, summed over the official pieces of a clip.
int64_t FramesThroughPieces(int64_t frames, int64_t batch, int64_t levels,
                            int64_t (*per_level)(int64_t)) {
  int64_t total = 0;
  for (const auto& [start, length] : FramePieces(frames, batch)) {
    int64_t t = length;
    for (int64_t l = 0; l < levels; ++l) t = per_level(t);
    total += t;
  }
  return total;
}

void JoinRecorded(std::map<std::string, std::vector<Tensor>>& recorded,
                  std::map<std::string, Tensor>* capture) {
  for (auto& [name, parts] : recorded) {
    (*capture)[name] = parts.size() == 1 ? parts[0] : ops::Concat(parts, 2);
  }
}

}  // namespace

// `CogVideoXEncoder3D` on one piece: its output has 2 * latent_channels channels (the moments).
class VaeEncoder : public nn::Module {
 public:
  explicit VaeEncoder(const CogVideoXVaeConfig& c) {
    const std::vector<int64_t>& bo = c.block_out_channels;
    const int64_t blocks = static_cast<int64_t>(bo.size());
    conv_in_ =
        RegisterModule("conv_in", std::make_unique<CausalConv3d>(c.in_channels, bo[0], &slots_));
    auto* down = RegisterModule("down_blocks", std::make_unique<nn::ModuleList>());
    for (int64_t i = 0; i < blocks; ++i) {
      auto* block = down->Append(
          std::make_unique<VaeBlock>("CogVideoXDownBlock3D", c.layers_per_block,
                                     bo[std::max<int64_t>(i - 1, 0)], bo[i], c, 0, &slots_));
      if (i < blocks - 1) block->AddDownsampler(bo[i], i < c.temporal_levels());
      down_.push_back(block);
    }
    mid_ = RegisterModule(
        "mid_block",
        std::make_unique<VaeBlock>("CogVideoXMidBlock3D", 2, bo.back(), bo.back(), c, 0, &slots_));
    norm_out_ = RegisterModule("norm_out", std::make_unique<GroupNormModule>(
                                               bo.back(), c.norm_num_groups, kSpatialNormEps));
    conv_out_ = RegisterModule(
        "conv_out", std::make_unique<CausalConv3d>(bo.back(), 2 * c.latent_channels, &slots_));
  }
  std::string TypeName() const override { return "CogVideoXEncoder3D"; }
  int slots() const { return slots_; }

  Tensor Forward(const Tensor& x, VaeStream& stream) const {
    Tensor h = conv_in_->Forward(x, stream);
    stream.Record("act.encoder.conv_in", h);
    for (size_t i = 0; i < down_.size(); ++i) {
      h = down_[i]->Forward(std::move(h), Tensor(), stream);
      stream.Record(absl::StrCat("act.encoder.down_blocks.", i), h);
    }
    h = mid_->Forward(std::move(h), Tensor(), stream);
    stream.Record("act.encoder.mid_block", h);
    h = norm_out_->Forward(std::move(h), false);  // the official norm, then its own SiLU
    stream.Record("act.encoder.norm_out", h);
    h = conv_out_->Forward(ops::Unary(ops::UnaryOp::kSilu, h), stream);
    stream.Record("act.encoder.conv_out", h);
    return h;
  }

 private:
  int slots_ = 0;
  CausalConv3d* conv_in_;
  std::vector<const VaeBlock*> down_;
  VaeBlock* mid_;
  GroupNormModule* norm_out_;
  CausalConv3d* conv_out_;
};

// `CogVideoXDecoder3D` on one piece, with that piece's latent as the spatial norms' zq.
class VaeDecoder : public nn::Module {
 public:
  explicit VaeDecoder(const CogVideoXVaeConfig& c) {
    std::vector<int64_t> rb(c.block_out_channels.rbegin(), c.block_out_channels.rend());
    const int64_t blocks = static_cast<int64_t>(rb.size()), z = c.latent_channels;
    conv_in_ = RegisterModule("conv_in", std::make_unique<CausalConv3d>(z, rb[0], &slots_));
    mid_ = RegisterModule("mid_block", std::make_unique<VaeBlock>("CogVideoXMidBlock3D", 2, rb[0],
                                                                  rb[0], c, z, &slots_));
    auto* up = RegisterModule("up_blocks", std::make_unique<nn::ModuleList>());
    for (int64_t i = 0; i < blocks; ++i) {
      auto* block = up->Append(
          std::make_unique<VaeBlock>("CogVideoXUpBlock3D", c.layers_per_block + 1,
                                     rb[std::max<int64_t>(i - 1, 0)], rb[i], c, z, &slots_));
      if (i < blocks - 1) block->AddUpsampler(rb[i], i < c.temporal_levels());
      up_.push_back(block);
    }
    norm_out_ = RegisterModule("norm_out",
                               std::make_unique<SpatialNorm3D>(rb.back(), z, c.norm_num_groups));
    conv_out_ = RegisterModule("conv_out",
                               std::make_unique<CausalConv3d>(rb.back(), c.out_channels, &slots_));
  }
  std::string TypeName() const override { return "CogVideoXDecoder3D"; }
  int slots() const { return slots_; }

  Tensor Forward(const Tensor& z, VaeStream& stream) const {
    Tensor h = conv_in_->Forward(z, stream);
    stream.Record("act.decoder.conv_in", h);
    h = mid_->Forward(std::move(h), z, stream);
    stream.Record("act.decoder.mid_block", h);
    for (size_t i = 0; i < up_.size(); ++i) {
      h = up_[i]->Forward(std::move(h), z, stream);
      stream.Record(absl::StrCat("act.decoder.up_blocks.", i), h);
    }
    const bool capture = stream.recorded != nullptr;  // keep the norm's output apart from SiLU's
    h = norm_out_->Forward(std::move(h), z, !capture);
    stream.Record("act.decoder.norm_out", h);
    if (capture) h = ops::Unary(ops::UnaryOp::kSilu, h);
    h = conv_out_->Forward(h, stream);
    stream.Record("act.decoder.conv_out", h);
    return h;
  }

 private:
  int slots_ = 0;
  CausalConv3d* conv_in_;
  VaeBlock* mid_;
  std::vector<const VaeBlock*> up_;
  SpatialNorm3D* norm_out_;
  CausalConv3d* conv_out_;
};

// --- one tile through the VAE, and the tiles --------------------------------------------------

namespace {

// x [B, C, T, H, W] through the encoder piece by piece (the official frame pieces when `batched`),
// every causal conv's cache carried from piece to piece: the moments, in the output dtype.
Tensor RunEncoder(const VaeEncoder& encoder, const CogVideoXVaeConfig& c, const Tensor& x,
                  bool batched, std::map<std::string, std::vector<Tensor>>* recorded) {
  const int64_t batch = batched ? c.encode_frame_batch : x.size(2);
  VaeStream stream;
  stream.caches.resize(encoder.slots());
  stream.recorded = recorded;
  std::vector<Tensor> outs;
  for (const auto& [start, length] : FramePieces(x.size(2), batch)) {
    outs.push_back(encoder.Forward(ops::Contiguous(ops::Narrow(x, 2, start, length)), stream));
  }
  stream.caches.clear();
  return ops::Cast(outs.size() == 1 ? outs[0] : ops::Concat(outs, 2), OutputDType(x.dtype()));
}

// z [B, latent_channels, Tl, h, w] through the decoder piece by piece, each piece written into
// the output as it comes (the output dtype) so that only one piece's activations live at a time.
Tensor RunDecoder(const VaeDecoder& decoder, const CogVideoXVaeConfig& c, const Tensor& z,
                  bool batched, std::map<std::string, std::vector<Tensor>>* recorded) {
  const int64_t frames = z.size(2), f = c.spatial_factor();
  const int64_t batch = batched ? c.decode_latent_batch : frames;
  const int64_t total = FramesThroughPieces(frames, batch, c.temporal_levels(), UpsampledFrames);
  Tensor out = Tensor::Empty({z.size(0), c.out_channels, total, f * z.size(3), f * z.size(4)},
                             OutputDType(z.dtype()), z.device());
  VaeStream stream;
  stream.caches.resize(decoder.slots());
  stream.recorded = recorded;
  int64_t written = 0;
  for (const auto& [start, length] : FramePieces(frames, batch)) {
    Tensor part = decoder.Forward(ops::Contiguous(ops::Narrow(z, 2, start, length)), stream);
    SDPO_CHECK(part.size(2) + written <= total && part.size(3) == out.size(3) &&
                   part.size(4) == out.size(4),
               "AutoencoderKLCogVideoX decode: a piece of ", part.str(),
               " does not fit the output ", out.str(), " at frame ", written);
    ops::CopyInto(ops::Narrow(out, 2, written, part.size(2)), part);
    written += part.size(2);
  }
  SDPO_CHECK(written == total, "AutoencoderKLCogVideoX decode: produced ", written,
             " frames, expected ", total);
  return out;
}

// One spatial axis of a tiling: the input is cut every `stride` into tiles of `size` (the last
// ones cut at the edge); each tile's output is blended over `blend` with its predecessor's and
// keeps its first `keep`; the joined axis is `out` long. Input and output units differ by the
// spatial factor (video pixels vs latent cells).
struct TileAxis {
  int64_t size, stride, blend, keep, out, count;
};

// The axis of `extent` input units for tiles of min / stride video pixels (diffusers'
// tiled_encode: latent blend and keep; tiled_decode: latent tiles, video blend and keep).
TileAxis Tiles(int64_t extent, int64_t min, int64_t stride, int64_t f, bool decode) {
  TileAxis a;
  a.size = decode ? min / f : min;
  a.stride = decode ? stride / f : stride;
  a.blend = decode ? min - stride : (min - stride) / f;
  a.keep = decode ? stride : stride / f;
  a.out = decode ? extent * f : extent / f;
  a.count = (extent + a.stride - 1) / a.stride;
  return a;
}

// diffusers' blend_v / blend_h: b's first rows (columns) along `dim` become a linear ramp from
// a's last ones to b's own, over min(a's, b's, extent) of them. In place in b.
void BlendEdge(const Tensor& a, const Tensor& b, int64_t dim, int64_t extent) {
  const int64_t e = std::min({a.size(dim), b.size(dim), extent});
  for (int64_t y = 0; y < e; ++y) {
    const double w = static_cast<double>(y) / e;
    const Tensor by = ops::Narrow(b, dim, y, 1);
    ops::CopyInto(by, ops::Add(ops::MulScalar(ops::Narrow(a, dim, a.size(dim) - e + y, 1), 1 - w),
                               ops::MulScalar(by, w)));
  }
}

// diffusers' tiled_encode / tiled_decode around `run` (one tile through the VAE). A tile is
// blended with the tile above and the tile to its left after both were blended themselves
// (row-major order), so tiles are taken in that order and written out as soon as they are final:
// only the previous row of tile outputs is kept.
Tensor RunTiled(const Tensor& x, const TileAxis& rows, const TileAxis& cols,
                const std::function<Tensor(const Tensor&)>& run) {
  Tensor out;
  std::vector<Tensor> above, current;
  for (int64_t r = 0; r < rows.count; ++r) {
    const int64_t i = r * rows.stride, h = std::min(rows.size, x.size(3) - i);
    for (int64_t c = 0; c < cols.count; ++c) {
      const int64_t j = c * cols.stride, w = std::min(cols.size, x.size(4) - j);
      Tensor tile =
          ops::Contiguous(run(ops::Contiguous(ops::Narrow(ops::Narrow(x, 3, i, h), 4, j, w))));
      if (!out.defined()) {
        out = Tensor::Empty({tile.size(0), tile.size(1), tile.size(2), rows.out, cols.out},
                            tile.dtype(), tile.device());
      }
      if (r > 0) BlendEdge(above[c], tile, 3, rows.blend);
      if (c > 0) BlendEdge(current[c - 1], tile, 4, cols.blend);
      const int64_t oi = r * rows.keep, oj = c * cols.keep;
      const int64_t kh = std::min({rows.keep, tile.size(3), rows.out - oi});
      const int64_t kw = std::min({cols.keep, tile.size(4), cols.out - oj});
      if (kh > 0 && kw > 0) {
        ops::CopyInto(ops::Narrow(ops::Narrow(out, 3, oi, kh), 4, oj, kw),
                      ops::Narrow(ops::Narrow(tile, 3, 0, kh), 4, 0, kw));
      }
      current.push_back(std::move(tile));
    }
    above = std::move(current);
    current.clear();
  }
  return out;
}

void CheckTilingWithoutCapture(const VaeRunOptions& options, const char* what) {
  SDPO_CHECK(options.capture == nullptr, "AutoencoderKLCogVideoX ", what,
             ": stage capture (the parity fixtures' stages) is not available with tiling");
}

}  // namespace

std::string VaeTiling::str() const {
  return absl::StrCat(min_height, "x", min_width, ":", stride_height, "x", stride_width);
}

std::optional<VaeTiling> ParseVaeTiling(const std::string& spec, const std::string& name,
                                        int64_t spatial_factor) {
  if (spec == "off" || spec.empty()) return std::nullopt;
  VaeTiling t;
  if (spec == "on") return t;
  const auto pair = [&](const std::string& s, int64_t* a, int64_t* b) {
    const size_t x = s.find('x');
    return x != std::string::npos && absl::SimpleAtoi(s.substr(0, x), a) &&
           absl::SimpleAtoi(s.substr(x + 1), b);
  };
  const size_t colon = spec.find(':');
  SDPO_CHECK(colon != std::string::npos &&
                 pair(spec.substr(0, colon), &t.min_height, &t.min_width) &&
                 pair(spec.substr(colon + 1), &t.stride_height, &t.stride_width),
             name, "=", spec,
             ": expected off, on, or TILE_HxTILE_W:STRIDE_HxSTRIDE_W in video pixels "
             "(e.g. 256x256:192x192)");
  for (const auto& [min, stride, axis] : {std::tuple{t.min_height, t.stride_height, "height"},
                                          std::tuple{t.min_width, t.stride_width, "width"}}) {
    SDPO_CHECK(min > 0 && stride > 0 && stride <= min && min % spatial_factor == 0 &&
                   stride % spatial_factor == 0,
               name, "=", spec, ": the tile ", axis, " ", min, " and its stride ", stride,
               " must be positive multiples of ", spatial_factor, " with stride <= tile");
  }
  return t;
}

// --- CogVideoXVae -------------------------------------------------------------------------------

CogVideoXVae::CogVideoXVae(const CogVideoXVaeConfig& config) : config_(config) {
  config_.Validate();
  encoder_ = RegisterModule("encoder", std::make_unique<VaeEncoder>(config_));
  decoder_ = RegisterModule("decoder", std::make_unique<VaeDecoder>(config_));
}

CogVideoXVae::~CogVideoXVae() = default;

int64_t CogVideoXVae::LatentFrames(int64_t video_frames) const {
  SDPO_CHECK(video_frames >= 1, "AutoencoderKLCogVideoX: a video needs at least 1 frame, got ",
             video_frames);
  return FramesThroughPieces(video_frames, config_.encode_frame_batch, config_.temporal_levels(),
                             DownsampledFrames);
}

int64_t CogVideoXVae::VideoFrames(int64_t latent_frames) const {
  SDPO_CHECK(latent_frames >= 1, "AutoencoderKLCogVideoX: a latent needs at least 1 frame, got ",
             latent_frames);
  return FramesThroughPieces(latent_frames, config_.decode_latent_batch, config_.temporal_levels(),
                             UpsampledFrames);
}

VaeEncoding CogVideoXVae::Encode(const Tensor& video, const VaeRunOptions& options) const {
  NoGradGuard no_grad;
  const Tensor weight = encoder_->FindParameter("conv_in.conv.weight");
  const DType dtype = weight.dtype();
  SDPO_CHECK(video.dim() == 5 && video.size(1) == config_.in_channels,
             "AutoencoderKLCogVideoX encode: the video must be [B, ", config_.in_channels,
             ", T, H, W], got ", video.str());
  const int64_t f = config_.spatial_factor();
  SDPO_CHECK(video.size(2) >= 1 && video.size(3) >= f && video.size(4) >= f,
             "AutoencoderKLCogVideoX encode: the video ", video.str(),
             " needs at least 1 frame and ", f, "x", f, " pixels");
  const Tensor x = ops::To(ops::Cast(video, dtype), weight.device());
  std::map<std::string, std::vector<Tensor>> recorded;
  auto run = [&](const Tensor& tile) {
    return RunEncoder(*encoder_, config_, tile, options.batched,
                      options.capture != nullptr ? &recorded : nullptr);
  };
  Tensor moments;
  const std::optional<VaeTiling>& tiling = options.tiling;
  if (tiling && (x.size(3) > tiling->min_height || x.size(4) > tiling->min_width)) {
    CheckTilingWithoutCapture(options, "encode");
    SDPO_CHECK(x.size(3) % f == 0 && x.size(4) % f == 0, "AutoencoderKLCogVideoX tiled encode: ",
               "the video's height and width must be multiples of ", f, ", got ", video.str());
    moments = RunTiled(x, Tiles(x.size(3), tiling->min_height, tiling->stride_height, f, false),
                       Tiles(x.size(4), tiling->min_width, tiling->stride_width, f, false), run);
  } else {
    moments = run(x);
  }
  const int64_t z = config_.latent_channels;
  VaeEncoding e;
  e.mean = ops::Contiguous(ops::Narrow(moments, 1, 0, z));
  e.logvar = ops::Contiguous(ops::Clamp(ops::Narrow(moments, 1, z, z), -30.0, 20.0));
  e.latents = ops::MulScalar(e.mean, config_.scaling_factor);
  if (options.capture != nullptr) {
    JoinRecorded(recorded, options.capture);
    (*options.capture)["moments"] = moments;
    (*options.capture)["mean"] = e.mean;
    (*options.capture)["logvar"] = e.logvar;
    (*options.capture)["latents"] = e.latents;
  }
  return e;
}

Tensor CogVideoXVae::Decode(const Tensor& latents, const VaeRunOptions& options) const {
  const DType out_dtype = OutputDType(encoder_->FindParameter("conv_in.conv.weight").dtype());
  // The pipelines' `1 / scaling_factor * latents`: a multiplication by the reciprocal.
  return DecodeUnscaled(ops::MulScalar(ops::Cast(latents, out_dtype), 1.0 / config_.scaling_factor),
                        options);
}

Tensor CogVideoXVae::DecodeUnscaled(const Tensor& z_in, const VaeRunOptions& options) const {
  NoGradGuard no_grad;
  const Tensor weight = decoder_->FindParameter("conv_in.conv.weight");
  SDPO_CHECK(z_in.dim() == 5 && z_in.size(1) == config_.latent_channels && z_in.size(2) >= 1 &&
                 z_in.size(3) >= 1 && z_in.size(4) >= 1,
             "AutoencoderKLCogVideoX decode: the latent must be [B, ", config_.latent_channels,
             ", T >= 1, h, w], got ", z_in.str());
  const Tensor z = ops::To(ops::Cast(z_in, weight.dtype()), weight.device());
  const int64_t f = config_.spatial_factor();
  std::map<std::string, std::vector<Tensor>> recorded;
  auto run = [&](const Tensor& tile) {
    return RunDecoder(*decoder_, config_, tile, options.batched,
                      options.capture != nullptr ? &recorded : nullptr);
  };
  Tensor out;
  const std::optional<VaeTiling>& tiling = options.tiling;
  if (tiling && (z.size(3) > tiling->min_height / f || z.size(4) > tiling->min_width / f)) {
    CheckTilingWithoutCapture(options, "decode");
    out = RunTiled(z, Tiles(z.size(3), tiling->min_height, tiling->stride_height, f, true),
                   Tiles(z.size(4), tiling->min_width, tiling->stride_width, f, true), run);
  } else {
    out = run(z);
  }
  if (options.capture != nullptr) {
    JoinRecorded(recorded, options.capture);
    (*options.capture)["video"] = out;
  }
  return out;
}

// --- loading ------------------------------------------------------------------------------------

CogVideoXVaeConfig ResolveVaeConfig(const std::string& weights_path, std::string* source) {
  const std::string dir = ckpt::IsFile(weights_path) ? ckpt::DirName(weights_path) : weights_path;
  const std::string candidate = dir + "/config.json";
  if (ckpt::IsFile(candidate)) {
    if (source != nullptr) *source = candidate;
    return CogVideoXVaeConfig::FromFile(candidate);
  }
  if (source != nullptr) *source = "CogVideoX-2B defaults (no config.json next to the weights)";
  return CogVideoXVaeConfig::CogVideoX2B();
}

void LoadVaeWeights(CogVideoXVae& vae, const nn::TensorSource& source) {
  vae.LoadStateDict(source, /*strict=*/true);
}

namespace {

// The two conv_in weights fix the channel counts at both ends: a config that disagrees with the
// file fails here, naming the key and both shapes, before the model is allocated.
void CheckConvInShapes(const CogVideoXVaeConfig& c, const nn::TensorSource& source,
                       const std::string& config_source) {
  const std::vector<std::pair<std::string, Shape>> expected = {
      {"encoder.conv_in.conv.weight", {c.block_out_channels[0], c.in_channels, 3, 3, 3}},
      {"decoder.conv_in.conv.weight", {c.block_out_channels.back(), c.latent_channels, 3, 3, 3}},
  };
  const std::vector<std::string> keys = source.Keys();
  for (const auto& [key, shape] : expected) {
    SDPO_CHECK(std::find(keys.begin(), keys.end(), key) != keys.end(), source.Describe(),
               ": missing key '", key, "' of an AutoencoderKLCogVideoX (expected shape ",
               ShapeStr(shape), ")");
    const Shape found = source.KeyShape(key);
    SDPO_CHECK(found == shape, source.Describe(), ": '", key, "' has shape ", ShapeStr(found),
               ", the config (", config_source, ") expects ", ShapeStr(shape));
  }
}

}  // namespace

std::unique_ptr<CogVideoXVae> LoadVae(const std::string& path, Device device, DType dtype,
                                      const std::optional<CogVideoXVaeConfig>& config,
                                      VaeLoadReport* report) {
  SDPO_CHECK(IsFloating(dtype), "AutoencoderKLCogVideoX: the compute dtype must be floating, got ",
             DTypeName(dtype));
  std::string config_source = "given";
  const CogVideoXVaeConfig c = config ? *config : ResolveVaeConfig(path, &config_source);
  std::unique_ptr<nn::CheckpointSource> source = nn::OpenTensorSource(path);
  CheckConvInShapes(c, *source, config_source);
  auto vae = std::make_unique<CogVideoXVae>(c);
  LoadVaeWeights(*vae, *source);
  if (dtype != kF32) vae->CastParameters(dtype);
  if (device != Device::CPU()) vae->ToDevice(device);
  if (report != nullptr) {
    report->path = source->Describe();
    report->config_source = config_source;
    report->tensors = static_cast<int64_t>(vae->NamedParameters().size());
    report->values = vae->NumParameters();
  }
  return vae;
}

}  // namespace sdpo::cogvideox
