#include "models/cogvideox/model.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nn/modulation.h"

namespace sdpo::cogvideox {
namespace {

void Keep(Capture* capture, const std::string& name, const Tensor& t) {
  if (capture != nullptr) (*capture)[name] = Detach(t);
}

// Python's round() on a float: nearest, ties to even.
int64_t PyRound(double x) {
  const int saved = std::fegetround();
  std::fesetround(FE_TONEAREST);
  const double r = std::nearbyint(x);
  std::fesetround(saved);
  return static_cast<int64_t>(r);
}

// torch.linspace(start, stop, n) values, optionally rounded to float32.
std::vector<double> Linspace(double start, double stop, int64_t n, bool float32) {
  std::vector<double> v(n);
  if (n == 1) {
    v[0] = start;
  } else {
    const double step = (stop - start) / static_cast<double>(n - 1);
    for (int64_t i = 0; i < n; ++i) {
      // torch fills the second half backwards from stop.
      v[i] = i < n / 2 ? start + step * static_cast<double>(i)
                       : stop - step * static_cast<double>(n - 1 - i);
    }
  }
  if (float32) {
    for (double& x : v) x = static_cast<double>(static_cast<float>(x));
  }
  return v;
}

// E(d, p) = [sin(p w_k) for k < d/2] ++ [cos(p w_k)], w_k = 10000^(-k / (d/2)), for each p.
std::vector<std::vector<double>> SinCos1D(int64_t d, const std::vector<double>& ps) {
  const int64_t half = d / 2;
  std::vector<double> omega(half);
  for (int64_t k = 0; k < half; ++k) {
    omega[k] = 1.0 / std::pow(10000.0, static_cast<double>(k) / (static_cast<double>(d) / 2.0));
  }
  std::vector<std::vector<double>> out;
  for (double p : ps) {
    std::vector<double> e(d);
    for (int64_t k = 0; k < half; ++k) {
      e[k] = std::sin(p * omega[k]);
      e[half + k] = std::cos(p * omega[k]);
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

// ----------------------------------------------------------------------------- positions

Tensor SinCosPositionTable(const CogVideoXConfig& c, int64_t frames, int64_t h, int64_t w,
                           int64_t text_len, DType dtype) {
  const int64_t d = c.inner_dim(), dt = d / 4, ds = 3 * d / 8;
  const bool f32 = dtype != kF64;
  auto pos = [f32](int64_t i, double scale) {
    if (f32) return static_cast<double>(static_cast<float>(i) / static_cast<float>(scale));
    return static_cast<double>(i) / scale;
  };
  std::vector<double> pt, ph, pw;
  for (int64_t f = 0; f < frames; ++f) pt.push_back(pos(f, c.temporal_interpolation_scale));
  for (int64_t i = 0; i < h; ++i) ph.push_back(pos(i, c.spatial_interpolation_scale));
  for (int64_t j = 0; j < w; ++j) pw.push_back(pos(j, c.spatial_interpolation_scale));
  const auto et = SinCos1D(dt, pt), eh = SinCos1D(ds, ph), ew = SinCos1D(ds, pw);
  const int64_t n = frames * h * w;
  std::vector<double> table((text_len + n) * d, 0.0);
  for (int64_t f = 0; f < frames; ++f) {
    for (int64_t i = 0; i < h; ++i) {
      for (int64_t j = 0; j < w; ++j) {
        double* row = &table[(text_len + (f * h + i) * w + j) * d];
        std::copy(et[f].begin(), et[f].end(), row);
        std::copy(ew[j].begin(), ew[j].end(), row + dt);
        std::copy(eh[i].begin(), eh[i].end(), row + dt + ds);
      }
    }
  }
  return Tensor::FromVector(table, {1, text_len + n, d}, dtype);
}

std::array<std::vector<double>, 3> RopePositions(const CogVideoXConfig& c, int64_t frames,
                                                 int64_t gh, int64_t gw, RopeGrid grid,
                                                 bool float32) {
  std::array<std::vector<double>, 3> p;
  if (grid == RopeGrid::kSlice) {
    const int64_t n[3] = {frames, gh, gw};
    for (int a = 0; a < 3; ++a) {
      for (int64_t i = 0; i < n[a]; ++i) p[a].push_back(static_cast<double>(i));
    }
    return p;
  }
  // diffusers get_resize_crop_region_for_grid((gh, gw), base_w, base_h).
  const int64_t bw = c.sample_width / c.patch_size, bh = c.sample_height / c.patch_size;
  const double r = static_cast<double>(gh) / static_cast<double>(gw);
  int64_t rh, rw;
  if (r > static_cast<double>(bh) / static_cast<double>(bw)) {
    rh = bh;
    rw = PyRound(static_cast<double>(bh) / static_cast<double>(gh) * static_cast<double>(gw));
  } else {
    rw = bw;
    rh = PyRound(static_cast<double>(bw) / static_cast<double>(gw) * static_cast<double>(gh));
  }
  const int64_t top = PyRound(static_cast<double>(bh - rh) / 2.0);
  const int64_t left = PyRound(static_cast<double>(bw - rw) / 2.0);
  auto stop = [](int64_t end, int64_t g) {
    return static_cast<double>(end) * static_cast<double>(g - 1) / static_cast<double>(g);
  };
  p[0] = Linspace(0, stop(frames, frames), frames, float32);
  p[1] = Linspace(static_cast<double>(top), stop(top + rh, gh), gh, float32);
  p[2] = Linspace(static_cast<double>(left), stop(left + rw, gw), gw, float32);
  return p;
}

nn::RotaryTables RopeTables(const CogVideoXConfig& c, int64_t frames, int64_t h, int64_t w,
                            int64_t text_len, RopeGrid grid, DType dtype) {
  auto p = RopePositions(c, frames, h, w, grid, dtype != kF64);
  const auto a = c.rope_axes();
  nn::RotaryTables r = nn::Rope3DTables(p[0], p[1], p[2], {a[0], a[1], a[2]}, 10000.0, dtype);
  r.start = text_len;
  r.layout = ops::RopeLayout::kInterleaved;
  return r;
}

// ----------------------------------------------------------------------------- modules

LayerNormZero::LayerNormZero(int64_t conditioning_dim, int64_t dim, double eps) {
  linear_ = RegisterModule("linear", std::make_unique<nn::Linear>(conditioning_dim, 6 * dim));
  norm_ = RegisterModule("norm", std::make_unique<nn::LayerNorm>(dim, eps, true, true));
}

AdaLayerNorm::AdaLayerNorm(int64_t conditioning_dim, int64_t dim, double eps) {
  linear_ = RegisterModule("linear", std::make_unique<nn::Linear>(conditioning_dim, 2 * dim));
  norm_ = RegisterModule("norm", std::make_unique<nn::LayerNorm>(dim, eps, true, true));
}

Tensor AdaLayerNorm::Forward(const Tensor& x, const Tensor& emb) const {
  const int64_t d = norm_->weight().size(0);
  Tensor m = unsqueeze(linear_->Forward(silu(emb)), 1);  // [B, 1, 2D]: shift, scale
  return nn::ModulatedLayerNorm(x, narrow(m, 2, 0, d), narrow(m, 2, d, d), norm_->eps(),
                                norm_->weight(), norm_->bias());
}

CogVideoXPatchEmbed::CogVideoXPatchEmbed(const CogVideoXConfig& c) {
  proj_ = RegisterModule("proj", std::make_unique<nn::PatchEmbed>(
                                     c.in_channels, c.inner_dim(),
                                     nn::Int3{1, c.patch_size, c.patch_size}, c.patch_bias,
                                     /*conv2d_weight=*/true));
  text_proj_ =
      RegisterModule("text_proj", std::make_unique<nn::Linear>(c.text_embed_dim, c.inner_dim()));
}

CogVideoXBlock::CogVideoXBlock(const CogVideoXConfig& c) : config_(c) {
  const int64_t d = c.inner_dim();
  norm1_ =
      RegisterModule("norm1", std::make_unique<LayerNormZero>(c.time_embed_dim, d, c.norm_eps));
  nn::AttentionOptions ao;
  ao.dim = d;
  ao.num_heads = c.num_attention_heads;
  ao.bias = c.attention_bias;
  ao.qk_norm = nn::QkNorm::kLayerNormPerHead;
  ao.qk_norm_eps = 1e-6;
  ao.DiffusersNames();
  attn1_ = RegisterModule("attn1", std::make_unique<nn::Attention>(ao));
  norm2_ =
      RegisterModule("norm2", std::make_unique<LayerNormZero>(c.time_embed_dim, d, c.norm_eps));
  ff_ = RegisterModule("ff", std::make_unique<nn::MLP>(d, c.ffn_dim(), d, nn::Activation::kGeluTanh,
                                                       true, "net.0.proj", "net.2"));
}

Tensor CogVideoXBlock::Forward(const Tensor& x, const Tensor& emb, int64_t text_len,
                               const nn::RotaryTables* rope, Capture* cap,
                               const std::string& prefix) const {
  const int64_t b = x.size(0), s = x.size(1), d = config_.inner_dim();
  const int64_t heads = config_.num_attention_heads, hd = config_.attention_head_dim;
  const int64_t l = text_len, n = s - text_len;
  Tensor e = narrow(x, 1, 0, l);
  Tensor h = narrow(x, 1, l, n);
  Tensor semb = silu(emb);

  // Modulated norms of both streams: chunks shift, scale, gate, enc_shift, enc_scale, enc_gate.
  auto modulate = [&](const LayerNormZero* nz, const std::string& tag, Tensor* nh, Tensor* ne,
                      Tensor* gate, Tensor* enc_gate) {
    Tensor m = unsqueeze(nz->linear()->Forward(semb), 1);  // [B, 1, 6D]
    auto chunk = [&](int64_t i) { return narrow(m, 2, i * d, d); };
    const nn::LayerNorm* ln = nz->norm();
    *nh = nn::ModulatedLayerNorm(h, chunk(0), chunk(1), ln->eps(), ln->weight(), ln->bias());
    *ne = nn::ModulatedLayerNorm(e, chunk(3), chunk(4), ln->eps(), ln->weight(), ln->bias());
    *gate = chunk(2);
    *enc_gate = chunk(5);
    Keep(cap, prefix + tag + "_hidden_states", *nh);
    Keep(cap, prefix + tag + "_encoder_hidden_states", *ne);
    Keep(cap, prefix + tag + "_gate", *gate);
    Keep(cap, prefix + tag + "_enc_gate", *enc_gate);
  };

  // --- attention over [text; video]
  Tensor nh, ne, gate, enc_gate;
  modulate(norm1_, "norm1", &nh, &ne, &gate, &enc_gate);
  Tensor z = concat({ne, nh}, 1);
  const nn::Attention* at = attn1_;
  auto* norm_q = dynamic_cast<const nn::LayerNorm*>(at->FindModule("norm_q"));
  auto* norm_k = dynamic_cast<const nn::LayerNorm*>(at->FindModule("norm_k"));
  SDPO_CHECK(norm_q != nullptr && norm_k != nullptr, "CogVideoXBlock: attn1 lacks norm_q/norm_k");
  Tensor q = norm_q->Forward(reshape(at->q()->Forward(z), {b, s, heads, hd}));
  Tensor k = norm_k->Forward(reshape(at->k()->Forward(z), {b, s, heads, hd}));
  Tensor v = reshape(at->v()->Forward(z), {b, s, heads, hd});
  if (cap != nullptr) {
    Keep(cap, prefix + "attn1_norm_q", permute(q, {0, 2, 1, 3}));
    Keep(cap, prefix + "attn1_norm_k", permute(k, {0, 2, 1, 3}));
  }
  if (rope != nullptr) {
    nn::RotaryTables r = *rope;
    r.start = l;
    if (r.cos.dtype() != q.dtype()) {
      r.cos = cast(r.cos, q.dtype());
      r.sin = cast(r.sin, q.dtype());
    }
    q = nn::ApplyRotary(q, r);
    k = nn::ApplyRotary(k, r);
  }
  Tensor a = attention(permute(q, {0, 2, 1, 3}), permute(k, {0, 2, 1, 3}), permute(v, {0, 2, 1, 3}),
                       Tensor());  // [B, H, S, hd]
  a = at->o()->Forward(reshape(permute(a, {0, 2, 1, 3}), {b, s, d}));
  Tensor a_h = narrow(a, 1, l, n), a_e = narrow(a, 1, 0, l);
  Keep(cap, prefix + "attn1_hidden_states", a_h);
  Keep(cap, prefix + "attn1_encoder_hidden_states", a_e);
  h = nn::GatedResidual(h, a_h, gate);
  e = nn::GatedResidual(e, a_e, enc_gate);

  // --- feed-forward over [text; video]
  modulate(norm2_, "norm2", &nh, &ne, &gate, &enc_gate);
  Tensor f = ff_->Forward(concat({ne, nh}, 1));
  Keep(cap, prefix + "ff", f);
  h = nn::GatedResidual(h, narrow(f, 1, l, n), gate);
  e = nn::GatedResidual(e, narrow(f, 1, 0, l), enc_gate);
  Keep(cap, prefix + "hidden_states", h);
  Keep(cap, prefix + "encoder_hidden_states", e);
  return concat({e, h}, 1);
}

// ----------------------------------------------------------------------------- model

CogVideoXModel::CogVideoXModel(const CogVideoXConfig& config) : config_(config) {
  const CogVideoXConfig& c = config_;
  c.Validate();
  const int64_t d = c.inner_dim();
  patch_embed_ = RegisterModule("patch_embed", std::make_unique<CogVideoXPatchEmbed>(c));
  time_embedding_ = RegisterModule(
      "time_embedding",
      std::make_unique<nn::MLP>(d, c.time_embed_dim, c.time_embed_dim, nn::Activation::kSilu, true,
                                "linear_1", "linear_2"));
  blocks_ = RegisterModule("transformer_blocks", std::make_unique<nn::ModuleList>());
  for (int64_t i = 0; i < c.num_layers; ++i) blocks_->Append(std::make_unique<CogVideoXBlock>(c));
  norm_final_ =
      RegisterModule("norm_final", std::make_unique<nn::LayerNorm>(d, c.norm_eps, true, true));
  norm_out_ =
      RegisterModule("norm_out", std::make_unique<AdaLayerNorm>(c.time_embed_dim, d, c.norm_eps));
  proj_out_ = RegisterModule("proj_out", std::make_unique<nn::Linear>(d, c.patch_out()));
}

Tensor CogVideoXModel::ForwardBatch(const Tensor& hidden_states,
                                    const Tensor& encoder_hidden_states, const Tensor& timesteps,
                                    const ForwardOptions& options) {
  const CogVideoXConfig& c = config_;
  const int64_t p = c.patch_size, d = c.inner_dim();
  SDPO_CHECK(
      hidden_states.defined() && hidden_states.dim() == 5 && hidden_states.size(2) == c.in_channels,
      "CogVideoXModel: hidden_states must be [B, F, ", c.in_channels, ", H, W], got ",
      hidden_states.defined() ? hidden_states.str() : "undefined");
  const int64_t b = hidden_states.size(0), frames = hidden_states.size(1);
  const int64_t hh = hidden_states.size(3), ww = hidden_states.size(4);
  SDPO_CHECK(b > 0 && frames > 0 && hh > 0 && ww > 0 && hh % p == 0 && ww % p == 0,
             "CogVideoXModel: hidden_states ", hidden_states.str(),
             ": H and W must be positive multiples of patch_size ", p);
  SDPO_CHECK(
      encoder_hidden_states.defined() && encoder_hidden_states.dim() == 3 &&
          encoder_hidden_states.size(0) == b && encoder_hidden_states.size(2) == c.text_embed_dim,
      "CogVideoXModel: encoder_hidden_states must be [", b, ", L, ", c.text_embed_dim, "], got ",
      encoder_hidden_states.defined() ? encoder_hidden_states.str() : "undefined");
  const int64_t l = encoder_hidden_states.size(1);
  SDPO_CHECK(c.use_rotary_positional_embeddings || l == c.max_text_seq_length,
             "CogVideoXModel: the sin-cos position table needs exactly max_text_seq_length = ",
             c.max_text_seq_length, " text tokens, got ", l);
  SDPO_CHECK(timesteps.defined() && timesteps.numel() == b && timesteps.dim() <= 1,
             "CogVideoXModel: timesteps must be [", b, "], got ",
             timesteps.defined() ? timesteps.str() : "undefined");
  const DType pd = proj_out_->weight().dtype();
  const Device dev = proj_out_->weight().device();
  Capture* cap = options.capture;
  const int64_t gh = hh / p, gw = ww / p, n = frames * gh * gw;

  // --- time embedding: sinusoid of dim D, [cos | sin], float32 arithmetic (f64 for f64 models)
  nn::SinusoidalOptions so;
  so.cos_first = c.flip_sin_to_cos;
  so.freq_shift = c.freq_shift;
  so.compute = pd == kF64 ? kF64 : kF32;
  Tensor sinusoid =
      to(nn::SinusoidalEmbedding(ops::Reshape(Detach(timesteps), {b}), d, so, pd), dev);
  Keep(cap, "t_sinusoid", sinusoid);
  Tensor emb = time_embedding_->Forward(sinusoid);
  Keep(cap, "t_emb", emb);

  // --- patch embedding: per-frame conv, tokens f*(h*w) + i*w + j; text first
  Tensor x = to(cast(hidden_states, pd), dev);
  Tensor vid = patch_embed_->proj()->Forward(permute(x, {0, 2, 1, 3, 4}));  // [B, N, D]
  Keep(cap, "video_tokens", vid);
  Tensor txt = patch_embed_->text_proj()->Forward(to(cast(encoder_hidden_states, pd), dev));
  Keep(cap, "text_proj", txt);
  Tensor joint = concat({txt, vid}, 1);
  if (!c.use_rotary_positional_embeddings) {
    const std::string key =
        absl::StrCat("pos:", frames, ",", gh, ",", gw, ",", l, ",", DTypeName(pd), ",", dev.str());
    auto it = table_cache_.find(key);
    if (it == table_cache_.end()) {
      if (table_cache_.size() > 16) table_cache_.clear();
      it = table_cache_.emplace(key, to(SinCosPositionTable(c, frames, gh, gw, l, pd), dev)).first;
    }
    const Tensor& table = it->second;
    Keep(cap, "pos_embedding", table);
    joint = add(joint, table);
  }
  Keep(cap, "patch_embed", joint);

  // --- rotary tables (5B)
  nn::RotaryTables rope;
  const nn::RotaryTables* rope_ptr = nullptr;
  if (c.use_rotary_positional_embeddings) {
    if (options.rope != nullptr) {
      rope = *options.rope;
      SDPO_CHECK(rope.cos.defined() && rope.cos.dim() == 2 && rope.cos.size(0) == n &&
                     rope.cos.size(1) == c.attention_head_dim / 2,
                 "CogVideoXModel: rope tables must be [", n, ", ", c.attention_head_dim / 2,
                 "], got ", rope.cos.defined() ? rope.cos.str() : "undefined");
      rope.start = l;
    } else {
      const std::string key =
          absl::StrCat("rope:", frames, ",", gh, ",", gw, ",", static_cast<int>(rope_grid_), ",",
                       DTypeName(pd), ",", dev.str());
      auto it = table_cache_.find(key + "cos");
      if (it == table_cache_.end()) {
        if (table_cache_.size() > 16) table_cache_.clear();
        nn::RotaryTables r = RopeTables(c, frames, gh, gw, l, rope_grid_, pd);
        table_cache_[key + "cos"] = to(r.cos, dev);
        table_cache_[key + "sin"] = to(r.sin, dev);
      }
      rope.cos = table_cache_.at(key + "cos");
      rope.sin = table_cache_.at(key + "sin");
      rope.start = l;
      rope.layout = ops::RopeLayout::kInterleaved;
    }
    rope.cos = to(cast(rope.cos, pd), dev);
    rope.sin = to(cast(rope.sin, pd), dev);
    rope_ptr = &rope;
  }

  // --- blocks
  const bool recompute = recompute_ && GradEnabled() && cap == nullptr;
  for (int64_t j = 0; j < blocks_->size(); ++j) {
    const CogVideoXBlock* blk = block(j);
    if (recompute) {
      auto fn = [blk, l, rope, rope_ptr](const std::vector<Tensor>& in) {
        return blk->Forward(in[0], in[1], l, rope_ptr != nullptr ? &rope : nullptr);
      };
      joint = checkpoint(fn, {joint, emb}, blk->Parameters());
    } else {
      // Alias nodes per block: gradients of the shared inputs add up in the same order as under
      // recompute (bitwise-equal gradients).
      joint = blk->Forward(view(joint, joint.shape()), view(emb, emb.shape()), l, rope_ptr, cap,
                           absl::StrCat("block", j, "_"));
    }
  }

  // --- head: video rows only
  Tensor hv = norm_final_->Forward(narrow(joint, 1, l, n));
  Keep(cap, "norm_final", hv);
  hv = norm_out_->Forward(hv, emb);
  Keep(cap, "norm_out", hv);
  Tensor u = proj_out_->Forward(hv);
  Keep(cap, "proj_out", u);
  Tensor out = nn::Unpatchify(u, {frames, gh, gw}, {1, p, p}, c.out_channels,
                              nn::PatchOrder::kChannelMajor, nn::VideoLayout::kFCHW);
  Keep(cap, "out_sample", out);
  return out;
}

Tensor CogVideoXModel::Forward(const std::vector<Tensor>& latents, const Tensor& timesteps,
                               const std::vector<Tensor>& contexts) {
  const CogVideoXConfig& c = config_;
  const int64_t b = static_cast<int64_t>(latents.size());
  SDPO_CHECK(b > 0, "CogVideoXModel::Forward: no latents");
  SDPO_CHECK(static_cast<int64_t>(contexts.size()) == b, "CogVideoXModel::Forward: ", b,
             " latents but ", contexts.size(), " contexts");
  int64_t l = c.max_text_seq_length;
  for (int64_t i = 0; i < b; ++i) {
    SDPO_CHECK(
        latents[i].defined() && latents[i].dim() == 4 && latents[i].shape() == latents[0].shape(),
        "CogVideoXModel::Forward: latent ", i,
        " must be [F, C, H, W] of the shape of "
        "latent 0 (",
        latents[0].defined() ? latents[0].str() : "undefined", "), got ",
        latents[i].defined() ? latents[i].str() : "undefined");
    const Tensor& t = contexts[i];
    SDPO_CHECK(t.defined() && t.dim() == 2 && t.size(1) == c.text_embed_dim,
               "CogVideoXModel::Forward: context ", i, " must be [L, ", c.text_embed_dim, "], got ",
               t.defined() ? t.str() : "undefined");
    SDPO_CHECK(c.use_rotary_positional_embeddings || t.size(0) <= c.max_text_seq_length,
               "CogVideoXModel::Forward: context ", i, " has ", t.size(0),
               " tokens, more than max_text_seq_length ", c.max_text_seq_length);
    l = std::max(l, t.size(0));
  }
  std::vector<Tensor> xs, cs;
  for (int64_t i = 0; i < b; ++i) {
    xs.push_back(unsqueeze(latents[i], 0));
    Tensor t = contexts[i];
    if (t.size(0) < l) {
      t = concat({t, Tensor::Zeros({l - t.size(0), c.text_embed_dim}, t.dtype(), t.device())}, 0);
    }
    cs.push_back(unsqueeze(t, 0));
  }
  Tensor x = b == 1 ? xs[0] : concat(xs, 0);
  Tensor ctx = b == 1 ? cs[0] : concat(cs, 0);
  return ForwardBatch(x, ctx, timesteps);
}

}  // namespace sdpo::cogvideox
