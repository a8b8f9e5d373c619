// CogVideoX 1.0 text-to-video DiT (diffusers `CogVideoXTransformer3DModel`), with parameter names
// equal to the diffusers state_dict names, so a diffusers checkpoint loads by lookup
// (models/cogvideox/checkpoint.h).
//
// The forward reproduces the diffusers float32 forward and its quirks (see
// shared/fixtures/cogvideox/README.md): latents are [B, F, C, H, W] (frames before channels);
// the joint sequence is [text (L rows); video (N rows)], text first, no mask; each block
// modulates text and video separately (shift, scale, gate, enc_shift, enc_scale, enc_gate) with
// one shared LayerNorm; q/k get a per-head affine LayerNorm (eps 1e-6); 2B adds a 3-D sin-cos
// table (temporal | w | h, sin first, spatial positions / 1.875) once after the patch
// embedding; 5B rotates the q/k of video rows only with 3-D RoPE (t | h | w, interleaved pairs)
// whose positions follow the diffusers pipeline's resize-crop grid (Python half-to-even round);
// the timestep sinusoid has dim = inner dim, [cos | sin], computed in float32; the final
// AdaLayerNorm chunks (shift, scale); the output unpatchify is channel-major. Prediction: v.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/cogvideox/config.h"
#include "models/diffusion_model.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace sdpo::cogvideox {

// Named intermediates of one forward (detached), named as the fixtures: t_sinusoid, t_emb,
// text_proj, video_tokens ([B, N, D] patch conv output in token order), pos_embedding (2B),
// patch_embed, block{j}_{norm1_hidden_states, norm1_encoder_hidden_states, norm1_gate,
// norm1_enc_gate, attn1_norm_q, attn1_norm_k, attn1_hidden_states, attn1_encoder_hidden_states,
// norm2_hidden_states, norm2_encoder_hidden_states, norm2_gate, norm2_enc_gate, ff,
// hidden_states, encoder_hidden_states}, norm_final, norm_out, proj_out, out_sample.
using Capture = std::map<std::string, Tensor>;

// How 5B RoPE positions are laid on the latent grid.
enum class RopeGrid {
  kPipeline,  // diffusers CogVideoXPipeline: resize-crop onto the base grid, linspace positions
  kSlice,     // integer positions 0..n-1 (THUDM finetune code, grid_type="slice")
};

struct ForwardOptions {
  Capture* capture = nullptr;  // receives intermediates; disables recompute for this forward
  // 5B: rotary tables to use instead of computing them (cos/sin [N, head_dim / 2]; start is set
  // to the text length by the model).
  const nn::RotaryTables* rope = nullptr;
};

// diffusers CogVideoXLayerNormZero (`norm1`, `norm2`): `linear` (time_embed_dim -> 6D), `norm`.
class LayerNormZero : public nn::Module {
 public:
  LayerNormZero(int64_t conditioning_dim, int64_t dim, double eps);
  std::string TypeName() const override { return "CogVideoXLayerNormZero"; }
  nn::Linear* linear() const { return linear_; }
  nn::LayerNorm* norm() const { return norm_; }

 private:
  nn::Linear* linear_;
  nn::LayerNorm* norm_;
};

// diffusers AdaLayerNorm (`norm_out`, chunk_dim 1): `linear` (time_embed_dim -> 2D), `norm`.
class AdaLayerNorm : public nn::Module {
 public:
  AdaLayerNorm(int64_t conditioning_dim, int64_t dim, double eps);
  std::string TypeName() const override { return "AdaLayerNorm"; }
  // x [B, N, D], emb [B, time_embed_dim] -> LN(x) * (1 + scale) + shift; (shift, scale) order.
  Tensor Forward(const Tensor& x, const Tensor& emb) const;
  nn::Linear* linear() const { return linear_; }
  nn::LayerNorm* norm() const { return norm_; }

 private:
  nn::Linear* linear_;
  nn::LayerNorm* norm_;
};

// `patch_embed`: `proj` (per-frame Conv2d, weight [D, C, p, p]) and `text_proj`.
class CogVideoXPatchEmbed : public nn::Module {
 public:
  explicit CogVideoXPatchEmbed(const CogVideoXConfig& config);
  std::string TypeName() const override { return "CogVideoXPatchEmbed"; }
  nn::PatchEmbed* proj() const { return proj_; }
  nn::Linear* text_proj() const { return text_proj_; }

 private:
  nn::PatchEmbed* proj_;
  nn::Linear* text_proj_;
};

// One `transformer_blocks.i` (norm1, attn1, norm2, ff).
class CogVideoXBlock : public nn::Module {
 public:
  explicit CogVideoXBlock(const CogVideoXConfig& config);
  std::string TypeName() const override { return "CogVideoXBlock"; }

  // x [B, L + N, D] = [text; video] streams, emb [B, time_embed_dim] -> the updated [text; video].
  // `rope` (5B) rotates rows [rope->start, ...) of q and k after the qk-norm.
  Tensor Forward(const Tensor& x, const Tensor& emb, int64_t text_len, const nn::RotaryTables* rope,
                 Capture* capture = nullptr, const std::string& prefix = "") const;

  LayerNormZero* norm1() const { return norm1_; }
  nn::Attention* attn1() const { return attn1_; }
  LayerNormZero* norm2() const { return norm2_; }
  nn::MLP* ff() const { return ff_; }

 private:
  CogVideoXConfig config_;
  LayerNormZero* norm1_;
  nn::Attention* attn1_;
  LayerNormZero* norm2_;
  nn::MLP* ff_;
};

class CogVideoXModel : public nn::Module, public models::DiffusionModel {
 public:
  // Parameters initialised like nn's defaults (nn::SkipInitGuard skips the draws before a load).
  explicit CogVideoXModel(const CogVideoXConfig& config);
  std::string TypeName() const override { return "CogVideoXTransformer3DModel"; }
  const CogVideoXConfig& config() const { return config_; }

  // The diffusers forward: hidden_states [B, F, C, H, W], encoder_hidden_states
  // [B, L, text_embed_dim] (2B: L must be max_text_seq_length), timesteps [B] (any dtype) ->
  // v-prediction [B, F, out_channels, H, W] in the parameter dtype. Differentiable.
  Tensor ForwardBatch(const Tensor& hidden_states, const Tensor& encoder_hidden_states,
                      const Tensor& timesteps, const ForwardOptions& options = {});

  // --- models::DiffusionModel ---------------------------------------------------------------
  nn::Module& module() override { return *this; }
  const nn::Module& module() const override { return *this; }
  // latents: B tensors [F, C, H, W] (diffusers layout) of one shape -> [B, F, C, H, W].
  // contexts [L_i, text_embed_dim] are zero-padded at the end to max_text_seq_length (2B:
  // longer is an error; 5B: padded to the longest).
  Tensor Forward(const std::vector<Tensor>& latents, const Tensor& timesteps,
                 const std::vector<Tensor>& contexts) override;
  ScheduleFamily family() const override { return ScheduleFamily::kDdpm; }
  void SetRecompute(bool recompute) override { recompute_ = recompute; }
  bool recompute() const override { return recompute_; }

  void SetRopeGrid(RopeGrid grid) { rope_grid_ = grid; }  // (part of the table cache key)
  RopeGrid rope_grid() const { return rope_grid_; }

  CogVideoXPatchEmbed* patch_embed() const { return patch_embed_; }
  nn::MLP* time_embedding() const { return time_embedding_; }
  CogVideoXBlock* block(int64_t i) const { return blocks_->at<CogVideoXBlock>(i); }
  int64_t num_blocks() const { return blocks_->size(); }
  nn::LayerNorm* norm_final() const { return norm_final_; }
  AdaLayerNorm* norm_out() const { return norm_out_; }
  nn::Linear* proj_out() const { return proj_out_; }

 private:
  CogVideoXConfig config_;
  bool recompute_ = false;
  RopeGrid rope_grid_ = RopeGrid::kPipeline;
  // Position / rotary tables by grid, dtype and device (constants; rebuilt after a dtype or
  // device change because those are part of the key).
  std::map<std::string, Tensor> table_cache_;
  CogVideoXPatchEmbed* patch_embed_;
  nn::MLP* time_embedding_;
  nn::ModuleList* blocks_;
  nn::LayerNorm* norm_final_;
  AdaLayerNorm* norm_out_;
  nn::Linear* proj_out_;
};

// 2B: the table added to the patch-embed output, [1, text_len + F*h*w, D] in `dtype` (first
// text_len rows zero). Row (f, i, j) = [E(D/4, f / s_t) | E(3D/8, j / s_s) | E(3D/8, i / s_s)],
// E = [sin | cos]; positions rounded to float32 unless dtype is f64 (diffusers' float32 grid).
Tensor SinCosPositionTable(const CogVideoXConfig& config, int64_t frames, int64_t h, int64_t w,
                           int64_t text_len, DType dtype = kF32);

// 5B: per-axis RoPE positions (t, h, w) of a latent token grid (frames, h, w).
std::array<std::vector<double>, 3> RopePositions(const CogVideoXConfig& config, int64_t frames,
                                                 int64_t h, int64_t w, RopeGrid grid,
                                                 bool float32 = true);
// 5B: rotary tables [F*h*w, head_dim / 2] of a latent token grid, start = text_len.
nn::RotaryTables RopeTables(const CogVideoXConfig& config, int64_t frames, int64_t h, int64_t w,
                            int64_t text_len, RopeGrid grid = RopeGrid::kPipeline,
                            DType dtype = kF32);

}  // namespace sdpo::cogvideox
