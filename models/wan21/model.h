// The Wan2.1 text-to-video DiT (official `WanModel`, model_type "t2v"), with parameter names
// equal to the official state_dict names, so an official checkpoint loads by lookup
// (models/wan21/checkpoint.h).
//
// The forward reproduces the official float32 forward, including its quirks (see
// shared/fixtures/wan21/README.md): contexts are zero-padded to text_len before the text MLP and
// every text slot is attended; samples of different sizes are zero-padded to seq_len with the
// self-attention keys beyond each sample's length masked; the timestep sinusoid is computed in
// float64 ([cos | sin]); RoPE is 3-D with interleaved pairs, computed in float64 and rounded back;
// blocks are modulated by `modulation + time_projection(silu(e))`, the head by
// `head.modulation + e`.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/diffusion_model.h"
#include "models/wan21/config.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace sdpo::wan21 {

// Named intermediates of one forward, batched and padded: [B, seq_len, ...] per-token tensors
// (rows beyond a sample's token count are padding), [B, ...] per-sample ones. Names follow the
// fixtures: patch_embed, time_sinusoid, e, e0, context_emb, block{j}_{sa_in, sa_q, sa_k, sa_v,
// sa_q_rope, sa_k_rope, sa_attn, sa_out, ca_in, ca_attn, ca_out, ffn_in, ffn_out, out},
// head_out.
using Capture = std::map<std::string, Tensor>;

struct ForwardOptions {
  // Token padding length of the batch (the official `seq_len`); 0: the longest sample's count.
  int64_t seq_len = 0;
  // When set, receives the intermediates (detached). Disables recompute for this forward.
  Capture* capture = nullptr;
};

// What a block needs besides the residual stream (shared by all blocks of one forward).
struct BlockContext {
  Tensor rope_cos, rope_sin;  // [rows, head_dim / 2]: rows = seq_len (shared) or B * seq_len
  bool rope_per_sample = false;
  bool rope_f64 = true;  // rotate f32 inputs in f64, as the official code does
  Tensor mask;           // additive self-attention key mask [B, 1, 1, seq_len], or none
};

// One transformer block: `blocks.i.*` (modulation, self_attn, norm3, cross_attn, ffn).
class WanBlock : public nn::Module {
 public:
  explicit WanBlock(const WanConfig& config);
  std::string TypeName() const override { return "WanAttentionBlock"; }

  // x [B, S, dim] residual stream, e0 [B, 6, dim] (time_projection output), ctx [B, T, dim]
  // (embedded text) -> [B, S, dim]. `prefix` names the captured intermediates.
  Tensor Forward(const Tensor& x, const Tensor& e0, const Tensor& ctx, const BlockContext& bc,
                 Capture* capture = nullptr, const std::string& prefix = "") const;

  nn::Attention* self_attn() const { return self_attn_; }
  nn::Attention* cross_attn() const { return cross_attn_; }
  nn::LayerNorm* norm3() const { return norm3_; }  // null without cross_attn_norm
  nn::MLP* ffn() const { return ffn_; }
  const Tensor& modulation() const { return modulation_; }

 private:
  Tensor QkNorm(const nn::Attention* attn, const char* which, const Tensor& x) const;

  WanConfig config_;
  Tensor modulation_;  // [1, 6, dim]
  nn::Attention* self_attn_;
  nn::LayerNorm* norm3_ = nullptr;
  nn::Attention* cross_attn_;
  nn::MLP* ffn_;
};

// The output head: `head.modulation` [1, 2, dim] and `head.head` (Linear dim -> prod(patch) *
// out_dim).
class WanHead : public nn::Module {
 public:
  explicit WanHead(const WanConfig& config);
  std::string TypeName() const override { return "Head"; }
  // x [B, S, dim], e [B, dim] (time_embedding output) -> [B, S, prod(patch) * out_dim].
  Tensor Forward(const Tensor& x, const Tensor& e) const;
  nn::Linear* head() const { return head_; }

 private:
  double eps_;
  Tensor modulation_;
  nn::Linear* head_;
};

class WanModel : public nn::Module, public models::DiffusionModel {
 public:
  // Parameters are initialised like nn's defaults (use nn::SkipInitGuard before loading a
  // checkpoint to skip the random draws). Throws for configs Validate() rejects.
  explicit WanModel(const WanConfig& config);
  std::string TypeName() const override { return "WanModel"; }
  const WanConfig& config() const { return config_; }

  // --- models::DiffusionModel ---------------------------------------------------------------
  nn::Module& module() override { return *this; }
  const nn::Module& module() const override { return *this; }
  // latents: B tensors [in_dim, F, H, W] of one shape -> [B, out_dim, F, H, W].
  Tensor Forward(const std::vector<Tensor>& latents, const Tensor& timesteps,
                 const std::vector<Tensor>& contexts) override;
  // Any latent sizes (padded batch as in the official forward).
  std::vector<Tensor> ForwardList(const std::vector<Tensor>& latents, const Tensor& timesteps,
                                  const std::vector<Tensor>& contexts) override;
  ScheduleFamily family() const override { return ScheduleFamily::kFlow; }
  void SetRecompute(bool recompute) override { recompute_ = recompute; }
  bool recompute() const override { return recompute_; }

  // The official forward: one output per latent. Latents [in_dim, F_i, H_i, W_i] (F, H, W
  // multiples of patch_size), timesteps [B] (any real or integer dtype; the sinusoid is
  // computed in f64), contexts [Lc_i <= text_len, text_dim]. Inputs are cast to the parameter
  // dtype (f32, or f64 after CastParameters + SetComputeDType); outputs have it.
  std::vector<Tensor> ForwardList(const std::vector<Tensor>& latents, const Tensor& timesteps,
                                  const std::vector<Tensor>& contexts,
                                  const ForwardOptions& options);

  // RoPE of f32 queries/keys computed in f64 (official, default) or in the input dtype.
  void SetRopeF64(bool on) { rope_f64_ = on; }
  bool rope_f64() const { return rope_f64_; }

  nn::PatchEmbed* patch_embedding() const { return patch_embedding_; }
  nn::MLP* text_embedding() const { return text_embedding_; }
  nn::MLP* time_embedding() const { return time_embedding_; }
  nn::Linear* time_projection() const { return time_projection_; }
  WanBlock* block(int64_t i) const { return blocks_->at<WanBlock>(i); }
  int64_t num_blocks() const { return blocks_->size(); }
  WanHead* head() const { return head_; }

 private:
  // The head's output [B, S, patch_out]; fills each sample's token grid and S.
  Tensor RunTransformer(const std::vector<Tensor>& latents, const Tensor& timesteps,
                        const std::vector<Tensor>& contexts, const ForwardOptions& options,
                        std::vector<std::array<int64_t, 3>>* grids, int64_t* seq_len);

  WanConfig config_;
  bool recompute_ = false;
  bool rope_f64_ = true;
  nn::PatchEmbed* patch_embedding_;
  nn::MLP* text_embedding_;
  nn::MLP* time_embedding_;
  nn::Linear* time_projection_;
  nn::ModuleList* blocks_;
  WanHead* head_;
};

// RoPE angle tables of one (F, H, W) token grid, [F*H*W, head_dim / 2] in `dtype`, token index
// (f * H + h) * W + w, pairs split (frame, height, width) as config.rope_axes().
nn::RotaryTables WanRopeTables(const WanConfig& config, std::array<int64_t, 3> grid,
                               DType dtype = kF64);

}  // namespace sdpo::wan21
