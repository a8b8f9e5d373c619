#include "models/wan21/model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nn/init.h"
#include "nn/modulation.h"

namespace sdpo::wan21 {
namespace {

using Int3 = std::array<int64_t, 3>;

std::string GridStr(const Int3& g) { return absl::StrCat("(", g[0], ", ", g[1], ", ", g[2], ")"); }

void Keep(Capture* capture, const std::string& name, const Tensor& t) {
  if (capture != nullptr) (*capture)[name] = Detach(t);
}

const nn::RMSNorm* FindRmsNorm(const nn::Attention* attn, const char* name) {
  const nn::Module* m = attn->FindModule(name);
  if (m == nullptr) return nullptr;
  auto* rms = dynamic_cast<const nn::RMSNorm*>(m);
  SDPO_CHECK(rms != nullptr, "WanBlock: ", name, " is a ", m->TypeName(), ", expected RMSNorm");
  return rms;
}

// x [B, S, H, hd] rotated by the block context's tables (interleaved pairs).
Tensor ApplyRope(const Tensor& x, const BlockContext& bc) {
  const DType in = x.dtype();
  Tensor h = (bc.rope_f64 && in != kF64) ? cast(x, kF64) : x;
  const Shape shape = h.shape();
  if (bc.rope_per_sample) h = reshape(h, {shape[0] * shape[1], shape[2], shape[3]});
  h = rope(h, bc.rope_cos, bc.rope_sin, ops::RopeLayout::kInterleaved);
  if (bc.rope_per_sample) h = reshape(h, shape);
  return cast(h, in);
}

// softmax(q k^T / sqrt(hd)) v over heads: q [B, Lq, H, hd], k/v [B, Lk, H, hd] -> [B, Lq, H*hd].
Tensor MultiHeadAttention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask) {
  const int64_t b = q.size(0), lq = q.size(1), h = q.size(2), hd = q.size(3);
  Tensor a = attention(permute(q, {0, 2, 1, 3}), permute(k, {0, 2, 1, 3}), permute(v, {0, 2, 1, 3}),
                       mask);  // [B, H, Lq, hd]
  return reshape(permute(a, {0, 2, 1, 3}), {b, lq, h * hd});
}

Tensor PadRows(const Tensor& x, int64_t dim, int64_t rows) {
  const int64_t have = x.size(dim);
  if (have == rows) return x;
  Shape zshape = x.shape();
  zshape[dim] = rows - have;
  return concat({x, Tensor::Zeros(zshape, x.dtype(), x.device())}, dim);
}

}  // namespace

nn::RotaryTables WanRopeTables(const WanConfig& config, Int3 grid, DType dtype) {
  const std::array<int64_t, 3> axes = config.rope_axes();
  return nn::Rope3DTables(grid, {axes[0], axes[1], axes[2]}, 10000.0, dtype);
}

// ----------------------------------------------------------------------------- WanBlock

WanBlock::WanBlock(const WanConfig& c) : config_(c) {
  modulation_ = RegisterParameter(
      "modulation", nn::InitNormal({1, 6, c.dim}, 1.0 / std::sqrt(static_cast<double>(c.dim))));
  nn::AttentionOptions ao;
  ao.dim = c.dim;
  ao.num_heads = c.num_heads;
  ao.qk_norm = c.qk_norm ? nn::QkNorm::kRmsNormAcrossHeads : nn::QkNorm::kNone;
  ao.qk_norm_eps = c.eps;
  self_attn_ = RegisterModule("self_attn", std::make_unique<nn::Attention>(ao));
  if (c.cross_attn_norm) {
    norm3_ = RegisterModule("norm3", std::make_unique<nn::LayerNorm>(c.dim, c.eps, true, true));
  }
  cross_attn_ = RegisterModule("cross_attn", std::make_unique<nn::Attention>(ao));
  ffn_ =
      RegisterModule("ffn", std::make_unique<nn::MLP>(c.dim, c.ffn_dim, c.dim,
                                                      nn::Activation::kGeluTanh, true, "0", "2"));
}

Tensor WanBlock::QkNorm(const nn::Attention* attn, const char* which, const Tensor& x) const {
  const nn::RMSNorm* norm = FindRmsNorm(attn, which);
  return norm == nullptr ? x : norm->Forward(x);
}

Tensor WanBlock::Forward(const Tensor& x_in, const Tensor& e0, const Tensor& ctx,
                         const BlockContext& bc, Capture* capture,
                         const std::string& prefix) const {
  const int64_t b = x_in.size(0), s = x_in.size(1), d = config_.dim, h = config_.num_heads;
  const int64_t hd = d / h;
  const double eps = config_.eps;
  // modulation [1, 6, D] + e0 [B, 6, D]: shift_sa, scale_sa, gate_sa, shift_ffn, scale_ffn,
  // gate_ffn, each [B, 1, D].
  Tensor m = add(cast(modulation_, e0.dtype()), e0);
  auto chunk = [&](int64_t i) { return narrow(m, 1, i, 1); };

  // --- self-attention
  Tensor y = nn::ModulatedLayerNorm(x_in, chunk(0), chunk(1), eps);
  Keep(capture, prefix + "sa_in", y);
  Tensor q = QkNorm(self_attn_, "norm_q", self_attn_->q()->Forward(y));
  Tensor k = QkNorm(self_attn_, "norm_k", self_attn_->k()->Forward(y));
  Tensor v = self_attn_->v()->Forward(y);
  Keep(capture, prefix + "sa_q", q);
  Keep(capture, prefix + "sa_k", k);
  Keep(capture, prefix + "sa_v", v);
  q = ApplyRope(reshape(q, {b, s, h, hd}), bc);
  k = ApplyRope(reshape(k, {b, s, h, hd}), bc);
  Keep(capture, prefix + "sa_q_rope", q);
  Keep(capture, prefix + "sa_k_rope", k);
  Tensor a = MultiHeadAttention(q, k, reshape(v, {b, s, h, hd}), bc.mask);
  Keep(capture, prefix + "sa_attn", a);
  Tensor sa = self_attn_->o()->Forward(a);
  Keep(capture, prefix + "sa_out", sa);
  Tensor x = nn::GatedResidual(x_in, sa, chunk(2));

  // --- cross-attention: no modulation, no gate, every text slot attended
  y = norm3_ != nullptr ? norm3_->Forward(x) : x;
  Keep(capture, prefix + "ca_in", y);
  const int64_t t = ctx.size(1);
  q = QkNorm(cross_attn_, "norm_q", cross_attn_->q()->Forward(y));
  k = QkNorm(cross_attn_, "norm_k", cross_attn_->k()->Forward(ctx));
  v = cross_attn_->v()->Forward(ctx);
  a = MultiHeadAttention(reshape(q, {b, s, h, hd}), reshape(k, {b, t, h, hd}),
                         reshape(v, {b, t, h, hd}), Tensor());
  Keep(capture, prefix + "ca_attn", a);
  Tensor ca = cross_attn_->o()->Forward(a);
  Keep(capture, prefix + "ca_out", ca);
  x = add(x, cast(ca, x.dtype()));

  // --- feed-forward
  y = nn::ModulatedLayerNorm(x, chunk(3), chunk(4), eps);
  Keep(capture, prefix + "ffn_in", y);
  Tensor f = ffn_->Forward(y);
  Keep(capture, prefix + "ffn_out", f);
  x = nn::GatedResidual(x, f, chunk(5));
  Keep(capture, prefix + "out", x);
  return x;
}

// ----------------------------------------------------------------------------- WanHead

WanHead::WanHead(const WanConfig& c) : eps_(c.eps) {
  modulation_ = RegisterParameter(
      "modulation", nn::InitNormal({1, 2, c.dim}, 1.0 / std::sqrt(static_cast<double>(c.dim))));
  head_ = RegisterModule("head", std::make_unique<nn::Linear>(c.dim, c.patch_out()));
}

Tensor WanHead::Forward(const Tensor& x, const Tensor& e) const {
  // head.modulation [1, 2, D] + e [B, 1, D]: (shift, scale), the raw time embedding.
  Tensor m = add(cast(modulation_, e.dtype()), unsqueeze(e, 1));
  Tensor y = nn::ModulatedLayerNorm(x, narrow(m, 1, 0, 1), narrow(m, 1, 1, 1), eps_);
  return head_->Forward(y);
}

// ----------------------------------------------------------------------------- WanModel

WanModel::WanModel(const WanConfig& config) : config_(config) {
  const WanConfig& c = config_;
  c.Validate();
  patch_embedding_ = RegisterModule(
      "patch_embedding",
      std::make_unique<nn::PatchEmbed>(
          c.in_dim, c.dim, nn::Int3{c.patch_size[0], c.patch_size[1], c.patch_size[2]}));
  text_embedding_ = RegisterModule(
      "text_embedding", std::make_unique<nn::MLP>(c.text_dim, c.dim, c.dim,
                                                  nn::Activation::kGeluTanh, true, "0", "2"));
  time_embedding_ = RegisterModule(
      "time_embedding",
      std::make_unique<nn::MLP>(c.freq_dim, c.dim, c.dim, nn::Activation::kSilu, true, "0", "2"));
  time_projection_ =
      RegisterModuleAt("time_projection.1", std::make_unique<nn::Linear>(c.dim, 6 * c.dim));
  blocks_ = RegisterModule("blocks", std::make_unique<nn::ModuleList>());
  for (int64_t i = 0; i < c.num_layers; ++i) blocks_->Append(std::make_unique<WanBlock>(c));
  head_ = RegisterModule("head", std::make_unique<WanHead>(c));
}

Tensor WanModel::RunTransformer(const std::vector<Tensor>& latents, const Tensor& timesteps,
                                const std::vector<Tensor>& contexts, const ForwardOptions& options,
                                std::vector<Int3>* grids, int64_t* seq_len) {
  const WanConfig& c = config_;
  const int64_t batch = static_cast<int64_t>(latents.size());
  SDPO_CHECK(batch > 0, "WanModel: no latents");
  SDPO_CHECK(static_cast<int64_t>(contexts.size()) == batch, "WanModel: ", batch, " latents but ",
             contexts.size(), " contexts");
  SDPO_CHECK(timesteps.defined() && timesteps.numel() == batch && timesteps.dim() <= 1,
             "WanModel: timesteps must be [", batch, "], got ",
             timesteps.defined() ? timesteps.str() : "undefined");
  const DType pd = patch_embedding_->weight().dtype();
  const Device dev = patch_embedding_->weight().device();

  // --- token grids
  grids->clear();
  std::vector<int64_t> lens;
  bool same = true;
  for (int64_t i = 0; i < batch; ++i) {
    const Tensor& x = latents[i];
    SDPO_CHECK(x.defined() && x.dim() == 4 && x.size(0) == c.in_dim, "WanModel: latent ", i,
               " must be [", c.in_dim, ", F, H, W], got ", x.defined() ? x.str() : "undefined");
    Int3 g;
    for (int a = 0; a < 3; ++a) {
      SDPO_CHECK(x.size(a + 1) > 0 && x.size(a + 1) % c.patch_size[a] == 0, "WanModel: latent ", i,
                 " ", ShapeStr(x.shape()), ": F, H, W must be positive multiples of the patch (",
                 c.patch_size[0], ", ", c.patch_size[1], ", ", c.patch_size[2], ")");
      g[a] = x.size(a + 1) / c.patch_size[a];
    }
    grids->push_back(g);
    lens.push_back(g[0] * g[1] * g[2]);
    same = same && x.shape() == latents[0].shape();
  }
  const int64_t longest = *std::max_element(lens.begin(), lens.end());
  const int64_t s = options.seq_len > 0 ? options.seq_len : longest;
  SDPO_CHECK(s >= longest, "WanModel: seq_len ", s, " is shorter than the longest sample (",
             longest, " tokens)");
  *seq_len = s;
  Capture* cap = options.capture;

  // --- patch embedding, padded to seq_len
  Tensor x;
  if (same) {
    std::vector<Tensor> xs;
    for (const Tensor& l : latents) xs.push_back(to(cast(l, pd), dev));
    Tensor stacked = batch == 1 ? unsqueeze(xs[0], 0) : stack(xs, 0);
    x = PadRows(patch_embedding_->Forward(stacked), 1, s);
  } else {
    std::vector<Tensor> rows;
    for (const Tensor& l : latents) {
      rows.push_back(PadRows(patch_embedding_->Forward(unsqueeze(to(cast(l, pd), dev), 0)), 1, s));
    }
    x = concat(rows, 0);
  }
  Keep(cap, "patch_embed", x);

  // --- time embedding: sinusoid in f64, e = MLP, e0 = projection of silu(e)
  nn::SinusoidalOptions so;
  so.cos_first = true;
  so.compute = kF64;
  Tensor sinusoid = to(
      nn::SinusoidalEmbedding(ops::Reshape(Detach(timesteps), {batch}), c.freq_dim, so, pd), dev);
  Keep(cap, "time_sinusoid", sinusoid);
  Tensor e = time_embedding_->Forward(sinusoid);  // [B, D]
  Tensor e0 = reshape(time_projection_->Forward(silu(e)), {batch, 6, c.dim});
  Keep(cap, "e", e);
  Keep(cap, "e0", e0);

  // --- text: zero-pad every context to text_len BEFORE the MLP
  std::vector<Tensor> ctxs;
  for (int64_t i = 0; i < batch; ++i) {
    const Tensor& t = contexts[i];
    SDPO_CHECK(t.defined() && t.dim() == 2 && t.size(1) == c.text_dim && t.size(0) >= 0,
               "WanModel: context ", i, " must be [L, ", c.text_dim, "], got ",
               t.defined() ? t.str() : "undefined");
    SDPO_CHECK(t.size(0) <= c.text_len, "WanModel: context ", i, " has ", t.size(0),
               " tokens, more than text_len ", c.text_len);
    ctxs.push_back(unsqueeze(PadRows(to(cast(t, pd), dev), 0, c.text_len), 0));
  }
  Tensor ctx = text_embedding_->Forward(batch == 1 ? ctxs[0] : concat(ctxs, 0));  // [B, T, D]
  Keep(cap, "context_emb", ctx);

  // --- RoPE tables (padded rows: identity) and the self-attention key mask
  BlockContext bc;
  bc.rope_f64 = rope_f64_;
  const DType rope_dtype = (rope_f64_ || pd == kF64) ? kF64 : pd;
  const int64_t half = c.head_dim() / 2;
  auto padded_tables = [&](const Int3& g) {
    nn::RotaryTables r = WanRopeTables(c, g, rope_dtype);
    const int64_t n = g[0] * g[1] * g[2];
    if (n == s) return std::make_pair(r.cos, r.sin);
    return std::make_pair(ops::Concat({r.cos, Tensor::Ones({s - n, half}, rope_dtype)}, 0),
                          ops::Concat({r.sin, Tensor::Zeros({s - n, half}, rope_dtype)}, 0));
  };
  bool same_grid = true;
  for (const Int3& g : *grids) same_grid = same_grid && g == (*grids)[0];
  if (same_grid) {
    std::tie(bc.rope_cos, bc.rope_sin) = padded_tables((*grids)[0]);
  } else {
    std::vector<Tensor> cs, ss;
    for (const Int3& g : *grids) {
      auto [cc, sn] = padded_tables(g);
      cs.push_back(cc);
      ss.push_back(sn);
    }
    bc.rope_cos = ops::Concat(cs, 0);
    bc.rope_sin = ops::Concat(ss, 0);
    bc.rope_per_sample = true;
  }
  bc.rope_cos = ops::To(bc.rope_cos, dev);
  bc.rope_sin = ops::To(bc.rope_sin, dev);
  if (std::any_of(lens.begin(), lens.end(), [s](int64_t n) { return n != s; })) {
    std::vector<double> mask(batch * s, 0.0);
    for (int64_t i = 0; i < batch; ++i) {
      for (int64_t j = lens[i]; j < s; ++j) {
        mask[i * s + j] = -std::numeric_limits<double>::infinity();
      }
    }
    bc.mask = ops::To(Tensor::FromVector(mask, {batch, 1, 1, s}, kF32), dev);
  }

  // --- blocks
  const bool recompute = recompute_ && GradEnabled() && cap == nullptr;
  for (int64_t j = 0; j < blocks_->size(); ++j) {
    const WanBlock* blk = block(j);
    if (recompute) {
      auto fn = [blk, bc](const std::vector<Tensor>& in) {
        return blk->Forward(in[0], in[1], in[2], bc);
      };
      x = checkpoint(fn, {x, e0, ctx}, blk->Parameters());
    } else {
      // Alias nodes per block make the gradients of the shared inputs add up in the same order
      // as under recompute (per block first, then over blocks): bitwise-equal gradients.
      x = blk->Forward(view(x, x.shape()), view(e0, e0.shape()), view(ctx, ctx.shape()), bc, cap,
                       absl::StrCat("block", j, "_"));
    }
  }

  // --- head
  Tensor u = head_->Forward(x, e);
  Keep(cap, "head_out", u);
  return u;
}

std::vector<Tensor> WanModel::ForwardList(const std::vector<Tensor>& latents,
                                          const Tensor& timesteps,
                                          const std::vector<Tensor>& contexts,
                                          const ForwardOptions& options) {
  std::vector<Int3> grids;
  int64_t s = 0;
  Tensor u = RunTransformer(latents, timesteps, contexts, options, &grids, &s);
  const nn::Int3 patch = {config_.patch_size[0], config_.patch_size[1], config_.patch_size[2]};
  const int64_t batch = static_cast<int64_t>(latents.size());
  bool same = true;
  for (const Tensor& l : latents) same = same && l.shape() == latents[0].shape();
  const int64_t n0 = grids[0][0] * grids[0][1] * grids[0][2];
  std::vector<Tensor> out;
  if (same && n0 == s) {
    Tensor v = nn::Unpatchify(u, {grids[0][0], grids[0][1], grids[0][2]}, patch, config_.out_dim,
                              nn::PatchOrder::kPatchMajor);
    for (int64_t i = 0; i < batch; ++i) out.push_back(select(v, 0, i));
    return out;
  }
  for (int64_t i = 0; i < batch; ++i) {
    const Int3& g = grids[i];
    Tensor ui = narrow(narrow(u, 0, i, 1), 1, 0, g[0] * g[1] * g[2]);
    out.push_back(select(
        nn::Unpatchify(ui, {g[0], g[1], g[2]}, patch, config_.out_dim, nn::PatchOrder::kPatchMajor),
        0, 0));
  }
  return out;
}

std::vector<Tensor> WanModel::ForwardList(const std::vector<Tensor>& latents,
                                          const Tensor& timesteps,
                                          const std::vector<Tensor>& contexts) {
  return ForwardList(latents, timesteps, contexts, ForwardOptions());
}

Tensor WanModel::Forward(const std::vector<Tensor>& latents, const Tensor& timesteps,
                         const std::vector<Tensor>& contexts) {
  for (size_t i = 1; i < latents.size(); ++i) {
    SDPO_CHECK(
        latents[i].defined() && latents[0].defined() && latents[i].shape() == latents[0].shape(),
        "WanModel::Forward: latents of different shapes (", ShapeStr(latents[0].shape()), " and ",
        latents[i].defined() ? ShapeStr(latents[i].shape()) : "undefined", " for sample ", i,
        "); use ForwardList for a padded batch");
  }
  std::vector<Int3> grids;
  int64_t s = 0;
  Tensor u = RunTransformer(latents, timesteps, contexts, ForwardOptions(), &grids, &s);
  const Int3& g = grids[0];
  return nn::Unpatchify(u, {g[0], g[1], g[2]},
                        {config_.patch_size[0], config_.patch_size[1], config_.patch_size[2]},
                        config_.out_dim, nn::PatchOrder::kPatchMajor);
}

}  // namespace sdpo::wan21
