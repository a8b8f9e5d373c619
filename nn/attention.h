// Multi-head attention (self and cross) with optional query/key normalisation and 3-D rotary
// position embedding, as in Wan2.1 and CogVideoX.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace sdpo::nn {

// Rotation angles for RoPE: cos/sin [Lr, head_dim / 2], applied to tokens [start, start + Lr)
// of the query and key sequences (CogVideoX rotates only the video tokens that follow the
// text).
struct RotaryTables {
  Tensor cos, sin;
  int64_t start = 0;
  ops::RopeLayout layout = ops::RopeLayout::kInterleaved;  // Wan and CogVideoX pair (2j, 2j+1)
};

// 3-D RoPE over a (t, h, w) grid of positions, token index (it * H + ih) * W + iw. The head dim
// is split into consecutive per-axis parts of axes_dims (each even, summing to head_dim), and
// pair j of axis a rotates by pos_a * theta^(-2j / axes_dims[a]) (each axis uses its own dim).
// Wan2.1: head_dim 128, axes (44, 42, 42); CogVideoX-5B: head_dim 64, axes (16, 24, 24).
// Angles are computed in f64 and stored in `dtype`.
RotaryTables Rope3DTables(const std::vector<double>& pos_t, const std::vector<double>& pos_h,
                          const std::vector<double>& pos_w, Int3 axes_dims, double theta = 10000,
                          DType dtype = kF32);
// Integer positions 0..n-1 on each axis of `grid`.
RotaryTables Rope3DTables(Int3 grid, Int3 axes_dims, double theta = 10000, DType dtype = kF32);

enum class QkNorm {
  kNone,
  kRmsNormAcrossHeads,  // RMSNorm over the full width, before the head split (Wan: norm_q [dim])
  kRmsNormPerHead,      // RMSNorm over each head (weight [head_dim])
  kLayerNormPerHead,    // affine LayerNorm over each head (CogVideoX: norm_q [head_dim] + bias)
};

struct AttentionOptions {
  int64_t dim = 0;  // model width = num_heads * head_dim
  int64_t num_heads = 0;
  int64_t context_dim = 0;  // width of the cross-attention context (0: dim)
  bool bias = true;         // bias on q, k, v and o
  QkNorm qk_norm = QkNorm::kNone;
  double qk_norm_eps = 1e-6;
  std::optional<double> scale;  // softmax scale; default 1/sqrt(head_dim)
  // Child names (checkpoint keys). Wan: q, k, v, o; diffusers: to_q, to_k, to_v, to_out.0.
  std::string q_name = "q", k_name = "k", v_name = "v", o_name = "o";
  std::string norm_q_name = "norm_q", norm_k_name = "norm_k";

  // The diffusers naming (to_q, to_k, to_v, to_out.0).
  AttentionOptions& DiffusersNames();
};

class Attention : public Module {
 public:
  explicit Attention(const AttentionOptions& options);
  std::string TypeName() const override { return "Attention"; }

  // x [B, L, dim] -> [B, L, dim]. `context` [B, Lk, context_dim] makes it cross-attention
  // (keys and values from the context); undefined: self-attention. `rope` rotates queries and
  // keys after the qk-norm (self-attention only). `mask`: additive, broadcastable to
  // [B, H, L, Lk].
  Tensor Forward(const Tensor& x, const Tensor& context = Tensor(),
                 const RotaryTables* rope = nullptr, const Tensor& mask = Tensor()) const;

  const AttentionOptions& options() const { return options_; }
  int64_t head_dim() const { return options_.dim / options_.num_heads; }
  Linear* q() const { return q_; }
  Linear* k() const { return k_; }
  Linear* v() const { return v_; }
  Linear* o() const { return o_; }

 private:
  Tensor NormalizeQk(const Module* norm, const Tensor& x) const;  // x [B, L, H, hd]

  AttentionOptions options_;
  Linear *q_, *k_, *v_, *o_;
  Module* norm_q_ = nullptr;
  Module* norm_k_ = nullptr;
};

// Applies rotary tables to x [B, L, H, D] (tokens [start, start + Lr) only).
Tensor ApplyRotary(const Tensor& x, const RotaryTables& rope);

}  // namespace sdpo::nn
