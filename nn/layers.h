// Layers of the video DiTs: Linear (with LoRA hooks), LayerNorm, RMSNorm, MLP, the patch
// embedding (Conv3d with kernel == stride) and its inverse, and the sinusoidal timestep
// embedding. Parameter names and layouts follow PyTorch so that checkpoints load by name.
#pragma once

#include <array>
#include <memory>
#include <string>

#include "nn/module.h"

namespace sdpo::nn {

enum class Activation { kGeluTanh, kGelu, kSilu, kIdentity };
Tensor Activate(const Tensor& x, Activation activation);

// The dtype norms are computed in: f64 for f64 inputs, else f32.
DType NormDType(DType input);
// bf16 or f16.
bool LowPrecision(DType dtype);
// The wider of two floating dtypes (f64 > f32 > bf16/f16); for mixed-precision elementwise ops.
DType PromoteDTypes(DType a, DType b);

// y = x W^T + b with W [out, in] and b [out] (PyTorch layout). x [..., in] -> [..., out], in the
// compute dtype.
//
// LoRA: AttachLora adds children `lora_A` (Linear in -> rank, no bias) and `lora_B`
// (Linear rank -> out, no bias, zero-initialised), so their checkpoint names are
// `<path>.lora_A.weight` / `<path>.lora_B.weight` (the PEFT convention). While enabled and not
// merged, y += (alpha / rank) * B(A(x)). nn/lora.h drives this over a model tree.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  std::string TypeName() const override { return "Linear"; }
  Tensor Forward(const Tensor& x) const;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias

  // --- LoRA ---------------------------------------------------------------------------------
  // A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming-uniform), B = 0: the output is unchanged.
  void AttachLora(int64_t rank, double alpha);
  bool has_lora() const { return lora_a_ != nullptr; }
  Linear* lora_A() const { return lora_a_; }
  Linear* lora_B() const { return lora_b_; }
  int64_t lora_rank() const { return lora_rank_; }
  double lora_alpha() const { return lora_alpha_; }
  double lora_scale() const { return lora_alpha_ / static_cast<double>(lora_rank_); }
  // Off: the forward is the base layer's. Switching off while merged is an error.
  void SetLoraEnabled(bool enabled);
  bool lora_enabled() const { return lora_enabled_; }
  // W += scale * B A (and back). While merged the forward skips the adapter branch; a forward
  // that records gradients for trainable adapters while merged is an error.
  void MergeLora();
  void UnmergeLora();
  bool lora_merged() const { return lora_merged_; }

 private:
  void AddLoraDelta(double sign);

  int64_t in_features_, out_features_;
  Tensor weight_, bias_;
  Linear* lora_a_ = nullptr;
  Linear* lora_b_ = nullptr;
  int64_t lora_rank_ = 0;
  double lora_alpha_ = 0;
  bool lora_enabled_ = true;
  bool lora_merged_ = false;
};

// LayerNorm over the last dim (biased variance). With affine: `weight` (ones) and, if bias,
// `bias` (zeros). Computed in f32 (f64 for f64 input); the output has the input's dtype. For
// bf16/f16 input the kernel reads it directly (no f32 copy) with the parameters rounded to the
// input's dtype, and rounds once.
class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, double eps = 1e-5, bool affine = true, bool bias = true);
  std::string TypeName() const override { return "LayerNorm"; }
  Tensor Forward(const Tensor& x) const;
  double eps() const { return eps_; }
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  int64_t dim_;
  double eps_;
  Tensor weight_, bias_;
};

// RMSNorm over the last dim: x * rsqrt(mean(x^2) + eps) * weight. Precision as LayerNorm.
class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, double eps = 1e-6, bool affine = true);
  std::string TypeName() const override { return "RMSNorm"; }
  Tensor Forward(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }

 private:
  int64_t dim_;
  double eps_;
  Tensor weight_;
};

// fc2(act(fc1(x))). The children's names are settings, to match checkpoints:
// Wan `ffn.0`/`ffn.2` ("0", "2"), diffusers `net.0.proj`/`net.2`, `linear_1`/`linear_2`.
class MLP : public Module {
 public:
  MLP(int64_t in_features, int64_t hidden_features, int64_t out_features, Activation activation,
      bool bias = true, const std::string& fc1_name = "0", const std::string& fc2_name = "2");
  std::string TypeName() const override { return "MLP"; }
  Tensor Forward(const Tensor& x) const;
  Linear* fc1() const { return fc1_; }
  Linear* fc2() const { return fc2_; }

 private:
  Activation activation_;
  Linear* fc1_;
  Linear* fc2_;
};

using Int3 = std::array<int64_t, 3>;  // (t, h, w)

// Patch embedding: Conv3d(in_channels -> dim, kernel = stride = patch (pt, ph, pw)), computed
// as a reshape of the input into patches and one matmul. Parameters: `weight`
// [dim, C, pt, ph, pw] (or [dim, C, ph, pw] with conv2d_weight, CogVideoX's per-frame Conv2d,
// which needs pt == 1) and `bias` [dim]. The patch vector is ordered (c, kt, kh, kw) as in
// PyTorch's convolution.
class PatchEmbed : public Module {
 public:
  PatchEmbed(int64_t in_channels, int64_t dim, Int3 patch, bool bias = true,
             bool conv2d_weight = false);
  std::string TypeName() const override { return "PatchEmbed"; }
  // x [B, C, F, H, W] (F, H, W multiples of the patch) -> tokens [B, F'*H'*W', dim] with
  // token index (f * H' + h) * W' + w. `grid` receives (F', H', W').
  Tensor Forward(const Tensor& x, Int3* grid = nullptr) const;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  int64_t in_channels_, dim_;
  Int3 patch_;
  Tensor weight_, bias_;
};

// How an output token packs its pt*ph*pw*C values.
enum class PatchOrder {
  kPatchMajor,    // index ((pt * ph_n + ph) * pw_n + pw) * C + c  (Wan's head)
  kChannelMajor,  // index ((c * pt_n + pt) * ph_n + ph) * pw_n + pw  (CogVideoX's proj_out)
};
enum class VideoLayout { kCFHW, kFCHW };  // Wan latents [B, C, F, H, W]; CogVideoX [B, F, C, H, W]

// The inverse of patchify: u [B, F'*H'*W', pt*ph*pw*C] -> video [B, C, F'pt, H'ph, W'pw] (or
// [B, F, C, H, W] for kFCHW).
Tensor Unpatchify(const Tensor& u, Int3 grid, Int3 patch, int64_t channels, PatchOrder order,
                  VideoLayout layout = VideoLayout::kCFHW);

struct SinusoidalOptions {
  bool cos_first = true;      // [cos | sin] (Wan; diffusers flip_sin_to_cos=True), else [sin | cos]
  double freq_shift = 0;      // diffusers downscale_freq_shift: f_i = P^(-i / (half - shift))
  double max_period = 10000;  // P
  double scale = 1;           // multiplies the angles
  // Arithmetic: kF64 (Wan computes the sinusoid in float64) or kF32 (reproduces diffusers'
  // float32 computation).
  DType compute = kF64;
};

// Timestep embedding: t [N] (any dtype) -> [N, dim] in out_dtype, with half = dim / 2,
// angle_i = scale * t * f_i for i < half. An odd dim gets a zero last column. Not
// differentiable (timesteps are data).
Tensor SinusoidalEmbedding(const Tensor& t, int64_t dim, const SinusoidalOptions& options = {},
                           DType out_dtype = kF32);

}  // namespace sdpo::nn
