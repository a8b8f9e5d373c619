#include "nn/layers.h"

#include <cmath>

#include "nn/init.h"

namespace sdpo::nn {

Tensor Activate(const Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::kGeluTanh:
      return gelu_tanh(x);
    case Activation::kGelu:
      return gelu(x);
    case Activation::kSilu:
      return silu(x);
    case Activation::kIdentity:
      return x;
  }
  SDPO_FAIL("unknown activation");
}

DType NormDType(DType input) { return input == kF64 ? kF64 : kF32; }
bool LowPrecision(DType dtype) { return dtype == kBF16 || dtype == kF16; }

DType PromoteDTypes(DType a, DType b) {
  auto rank = [](DType d) { return d == kF64 ? 3 : d == kF32 ? 2 : 1; };
  SDPO_CHECK(IsFloating(a) && IsFloating(b), "PromoteDTypes: needs floating dtypes, got ",
             DTypeName(a), " and ", DTypeName(b));
  if (a == b) return a;
  if (rank(a) == rank(b)) return kF32;  // bf16 with f16
  return rank(a) > rank(b) ? a : b;
}

// ----------------------------------------------------------------------------- Linear

Linear::Linear(int64_t in_features, int64_t out_features, bool bias)
    : in_features_(in_features), out_features_(out_features) {
  SDPO_CHECK(in_features > 0 && out_features > 0, "Linear: bad sizes ", in_features, " -> ",
             out_features);
  // PyTorch's default: kaiming-uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), same for b.
  double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight_ = RegisterParameter("weight", InitUniform({out_features, in_features}, bound));
  if (bias) bias_ = RegisterParameter("bias", InitUniform({out_features}, bound));
}

Tensor Linear::Forward(const Tensor& x) const {
  SDPO_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == in_features_, "Linear(", in_features_,
             " -> ", out_features_, "): input ", x.str(), " must have last dim ", in_features_);
  DType dt = compute_dtype();
  Tensor h = cast(x, dt);
  const bool vector = h.dim() == 1;
  if (vector) h = unsqueeze(h, 0);
  Tensor y = matmul(h, transpose(cast(weight_, dt), 0, 1));
  if (bias_.defined()) y = add(y, cast(bias_, dt));
  if (has_lora() && lora_enabled_) {
    if (lora_merged_) {
      SDPO_CHECK(!(GradEnabled() &&
                   (lora_a_->weight().requires_grad() || lora_b_->weight().requires_grad())),
                 "Linear: the LoRA adapters are merged into the base weight; unmerge them before "
                 "a forward that trains them (or run it under NoGradGuard)");
    } else {
      y = add(y, mul(lora_b_->Forward(lora_a_->Forward(h)), lora_scale()));
    }
  }
  return vector ? squeeze(y, 0) : y;
}

void Linear::AttachLora(int64_t rank, double alpha) {
  SDPO_CHECK(!has_lora(), "Linear: LoRA adapters are already attached");
  SDPO_CHECK(rank > 0, "Linear: LoRA rank must be positive, got ", rank);
  SDPO_CHECK(alpha > 0, "Linear: LoRA alpha must be positive, got ", alpha);
  lora_rank_ = rank;
  lora_alpha_ = alpha;
  lora_a_ = RegisterModule("lora_A", std::make_unique<Linear>(in_features_, rank, false));
  lora_b_ = RegisterModule("lora_B", std::make_unique<Linear>(rank, out_features_, false));
  ops::Fill(lora_b_->weight(), 0.0);
  // Adapters live with the base weights (device and master dtype).
  for (Linear* l : {lora_a_, lora_b_}) {
    const Tensor& w = l->weight();
    if (w.dtype() != weight_.dtype() || w.device() != weight_.device()) {
      ReplaceTensorData(w, ops::To(ops::Cast(w, weight_.dtype()), weight_.device()));
    }
  }
  lora_enabled_ = true;
  lora_merged_ = false;
}

void Linear::SetLoraEnabled(bool enabled) {
  SDPO_CHECK(has_lora(), "Linear: no LoRA adapters attached");
  SDPO_CHECK(!lora_merged_, "Linear: cannot switch LoRA adapters ", enabled ? "on" : "off",
             " while they are merged into the base weight (unmerge first)");
  lora_enabled_ = enabled;
}

void Linear::AddLoraDelta(double sign) {
  NoGradGuard no_grad;
  // delta = scale * B A, formed in f64 and rounded once into W.
  Tensor b = ops::Cast(lora_b_->weight(), kF64);
  Tensor a = ops::Cast(lora_a_->weight(), kF64);
  Tensor delta = ops::MulScalar(ops::Matmul(b, a), sign * lora_scale());
  ops::CopyInto(weight_, ops::Add(ops::Cast(weight_, kF64), delta));
}

void Linear::MergeLora() {
  SDPO_CHECK(has_lora(), "Linear: no LoRA adapters attached");
  SDPO_CHECK(!lora_merged_, "Linear: LoRA adapters are already merged");
  SDPO_CHECK(lora_enabled_, "Linear: cannot merge disabled LoRA adapters");
  AddLoraDelta(+1);
  lora_merged_ = true;
}

void Linear::UnmergeLora() {
  SDPO_CHECK(has_lora(), "Linear: no LoRA adapters attached");
  SDPO_CHECK(lora_merged_, "Linear: LoRA adapters are not merged");
  AddLoraDelta(-1);
  lora_merged_ = false;
}

// ----------------------------------------------------------------------------- norms

LayerNorm::LayerNorm(int64_t dim, double eps, bool affine, bool bias) : dim_(dim), eps_(eps) {
  SDPO_CHECK(dim > 0, "LayerNorm: bad dim ", dim);
  if (affine) {
    weight_ = RegisterParameter("weight", Tensor::Ones({dim}, kF32));
    if (bias) bias_ = RegisterParameter("bias", Tensor::Zeros({dim}, kF32));
  }
}

Tensor LayerNorm::Forward(const Tensor& x) const {
  SDPO_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == dim_, "LayerNorm(", dim_, "): input ",
             x.str(), " must have last dim ", dim_);
  // bf16/f16 inputs are normalised by the kernel in f32 and rounded once (the parameters in x's
  // dtype); no f32 copy of the activations.
  DType nd = LowPrecision(x.dtype()) ? x.dtype() : NormDType(x.dtype());
  Tensor w = weight_.defined() ? cast(weight_, nd) : Tensor();
  Tensor b = bias_.defined() ? cast(bias_, nd) : Tensor();
  return cast(layer_norm(cast(x, nd), w, b, eps_), x.dtype());
}

RMSNorm::RMSNorm(int64_t dim, double eps, bool affine) : dim_(dim), eps_(eps) {
  SDPO_CHECK(dim > 0, "RMSNorm: bad dim ", dim);
  if (affine) weight_ = RegisterParameter("weight", Tensor::Ones({dim}, kF32));
}

Tensor RMSNorm::Forward(const Tensor& x) const {
  SDPO_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == dim_, "RMSNorm(", dim_, "): input ",
             x.str(), " must have last dim ", dim_);
  DType nd = LowPrecision(x.dtype()) ? x.dtype() : NormDType(x.dtype());  // as LayerNorm
  Tensor w = weight_.defined() ? cast(weight_, nd) : Tensor();
  return cast(rms_norm(cast(x, nd), w, eps_), x.dtype());
}

// ----------------------------------------------------------------------------- MLP

MLP::MLP(int64_t in_features, int64_t hidden_features, int64_t out_features, Activation activation,
         bool bias, const std::string& fc1_name, const std::string& fc2_name)
    : activation_(activation) {
  fc1_ = RegisterModuleAt(fc1_name, std::make_unique<Linear>(in_features, hidden_features, bias));
  fc2_ = RegisterModuleAt(fc2_name, std::make_unique<Linear>(hidden_features, out_features, bias));
}

Tensor MLP::Forward(const Tensor& x) const {
  return fc2_->Forward(Activate(fc1_->Forward(x), activation_));
}

// ----------------------------------------------------------------------------- patches

PatchEmbed::PatchEmbed(int64_t in_channels, int64_t dim, Int3 patch, bool bias, bool conv2d_weight)
    : in_channels_(in_channels), dim_(dim), patch_(patch) {
  SDPO_CHECK(in_channels > 0 && dim > 0 && patch[0] > 0 && patch[1] > 0 && patch[2] > 0,
             "PatchEmbed: bad sizes in ", in_channels, ", dim ", dim, ", patch (", patch[0], ", ",
             patch[1], ", ", patch[2], ")");
  SDPO_CHECK(!conv2d_weight || patch[0] == 1,
             "PatchEmbed: a Conv2d weight needs a temporal patch of 1, got ", patch[0]);
  int64_t fan_in = in_channels * patch[0] * patch[1] * patch[2];
  double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));  // PyTorch's Conv default
  Shape shape = conv2d_weight ? Shape{dim, in_channels, patch[1], patch[2]}
                              : Shape{dim, in_channels, patch[0], patch[1], patch[2]};
  weight_ = RegisterParameter("weight", InitUniform(shape, bound));
  if (bias) bias_ = RegisterParameter("bias", InitUniform({dim}, bound));
}

Tensor PatchEmbed::Forward(const Tensor& x, Int3* grid) const {
  const auto [pt, ph, pw] = patch_;
  SDPO_CHECK(x.defined() && x.dim() == 5 && x.size(1) == in_channels_ && x.size(2) % pt == 0 &&
                 x.size(3) % ph == 0 && x.size(4) % pw == 0,
             "PatchEmbed: input ", x.str(), " must be [B, ", in_channels_,
             ", F, H, W] with F, H, W multiples of (", pt, ", ", ph, ", ", pw, ")");
  const int64_t b = x.size(0), c = in_channels_;
  const int64_t f = x.size(2) / pt, h = x.size(3) / ph, w = x.size(4) / pw;
  if (grid != nullptr) *grid = {f, h, w};
  DType dt = compute_dtype();
  Tensor p = reshape(cast(x, dt), {b, c, f, pt, h, ph, w, pw});
  p = permute(p, {0, 2, 4, 6, 1, 3, 5, 7});  // [B, F', H', W', C, pt, ph, pw]
  p = reshape(p, {b, f * h * w, c * pt * ph * pw});
  Tensor wm = reshape(cast(weight_, dt), {dim_, c * pt * ph * pw});
  Tensor y = matmul(p, transpose(wm, 0, 1));
  if (bias_.defined()) y = add(y, cast(bias_, dt));
  return y;
}

Tensor Unpatchify(const Tensor& u, Int3 grid, Int3 patch, int64_t channels, PatchOrder order,
                  VideoLayout layout) {
  const auto [f, h, w] = grid;
  const auto [pt, ph, pw] = patch;
  SDPO_CHECK(
      u.defined() && u.dim() == 3 && u.size(1) == f * h * w && u.size(2) == pt * ph * pw * channels,
      "Unpatchify: input ", u.str(), " must be [B, ", f * h * w, ", ", pt * ph * pw * channels,
      "] for grid (", f, ", ", h, ", ", w, "), patch (", pt, ", ", ph, ", ", pw, ") and ", channels,
      " channels");
  const int64_t b = u.size(0);
  std::vector<int64_t> dims;
  Tensor v;
  if (order == PatchOrder::kPatchMajor) {
    v = reshape(u, {b, f, h, w, pt, ph, pw, channels});  // C at 7, pt/ph/pw at 4/5/6
    dims = layout == VideoLayout::kCFHW ? std::vector<int64_t>{0, 7, 1, 4, 2, 5, 3, 6}
                                        : std::vector<int64_t>{0, 1, 4, 7, 2, 5, 3, 6};
  } else {
    v = reshape(u, {b, f, h, w, channels, pt, ph, pw});  // C at 4, pt/ph/pw at 5/6/7
    dims = layout == VideoLayout::kCFHW ? std::vector<int64_t>{0, 4, 1, 5, 2, 6, 3, 7}
                                        : std::vector<int64_t>{0, 1, 5, 4, 2, 6, 3, 7};
  }
  v = permute(v, dims);
  return layout == VideoLayout::kCFHW ? reshape(v, {b, channels, f * pt, h * ph, w * pw})
                                      : reshape(v, {b, f * pt, channels, h * ph, w * pw});
}

// ----------------------------------------------------------------------------- timesteps

Tensor SinusoidalEmbedding(const Tensor& t, int64_t dim, const SinusoidalOptions& options,
                           DType out_dtype) {
  SDPO_CHECK(t.defined() && t.dim() == 1, "SinusoidalEmbedding: timesteps must be [N], got ",
             t.str());
  SDPO_CHECK(dim >= 2, "SinusoidalEmbedding: dim must be at least 2, got ", dim);
  SDPO_CHECK(options.compute == kF64 || options.compute == kF32,
             "SinusoidalEmbedding: compute dtype must be f64 or f32");
  const int64_t half = dim / 2;
  SDPO_CHECK(half - options.freq_shift > 0, "SinusoidalEmbedding: freq_shift ", options.freq_shift,
             " must be below half the dim (", half, ")");
  std::vector<double> ts = t.ToVector();
  const int64_t n = static_cast<int64_t>(ts.size());
  std::vector<double> out(n * dim, 0.0);
  const int64_t sin_col = options.cos_first ? half : 0;
  const int64_t cos_col = options.cos_first ? 0 : half;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t i = 0; i < half; ++i) {
      double s, c;
      if (options.compute == kF64) {
        double freq =
            std::pow(options.max_period,
                     -static_cast<double>(i) / (static_cast<double>(half) - options.freq_shift));
        double angle = options.scale * ts[r] * freq;
        s = std::sin(angle);
        c = std::cos(angle);
      } else {
        // diffusers: exponent = -log(P) * arange(half) / (half - shift) in float32, then
        // exp, times t, times scale, sin and cos, all float32.
        float e = static_cast<float>(-std::log(options.max_period)) * static_cast<float>(i);
        e = e / static_cast<float>(static_cast<double>(half) - options.freq_shift);
        float angle = static_cast<float>(ts[r]) * std::exp(e);
        angle = static_cast<float>(options.scale) * angle;
        s = std::sin(angle);
        c = std::cos(angle);
      }
      out[r * dim + sin_col + i] = s;
      out[r * dim + cos_col + i] = c;
    }
  }
  return Tensor::FromVector(out, {n, dim}, out_dtype, t.device());
}

}  // namespace sdpo::nn
