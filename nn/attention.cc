#include "nn/attention.h"

#include <cmath>

namespace sdpo::nn {

// ----------------------------------------------------------------------------- rotary tables

RotaryTables Rope3DTables(const std::vector<double>& pos_t, const std::vector<double>& pos_h,
                          const std::vector<double>& pos_w, Int3 axes_dims, double theta,
                          DType dtype) {
  for (int64_t a : axes_dims) {
    SDPO_CHECK(a >= 0 && a % 2 == 0, "Rope3DTables: axis dims must be even, got (", axes_dims[0],
               ", ", axes_dims[1], ", ", axes_dims[2], ")");
  }
  const std::vector<double>* pos[3] = {&pos_t, &pos_h, &pos_w};
  const int64_t half = (axes_dims[0] + axes_dims[1] + axes_dims[2]) / 2;
  SDPO_CHECK(half > 0, "Rope3DTables: empty head dim");
  // Per-axis inverse frequencies theta^(-2j / dim_a), j < dim_a / 2.
  std::vector<double> freqs[3];
  for (int a = 0; a < 3; ++a) {
    for (int64_t j = 0; j < axes_dims[a] / 2; ++j) {
      freqs[a].push_back(
          1.0 / std::pow(theta, static_cast<double>(2 * j) / static_cast<double>(axes_dims[a])));
    }
  }
  const int64_t nt = pos_t.size(), nh = pos_h.size(), nw = pos_w.size();
  const int64_t tokens = nt * nh * nw;
  std::vector<double> c(tokens * half), s(tokens * half);
  for (int64_t it = 0; it < nt; ++it) {
    for (int64_t ih = 0; ih < nh; ++ih) {
      for (int64_t iw = 0; iw < nw; ++iw) {
        const int64_t row = (it * nh + ih) * nw + iw;
        const double p[3] = {(*pos[0])[it], (*pos[1])[ih], (*pos[2])[iw]};
        int64_t col = 0;
        for (int a = 0; a < 3; ++a) {
          for (double f : freqs[a]) {
            double angle = p[a] * f;
            c[row * half + col] = std::cos(angle);
            s[row * half + col] = std::sin(angle);
            ++col;
          }
        }
      }
    }
  }
  RotaryTables r;
  r.cos = Tensor::FromVector(c, {tokens, half}, dtype);
  r.sin = Tensor::FromVector(s, {tokens, half}, dtype);
  return r;
}

RotaryTables Rope3DTables(Int3 grid, Int3 axes_dims, double theta, DType dtype) {
  std::vector<double> pos[3];
  for (int a = 0; a < 3; ++a) {
    SDPO_CHECK(grid[a] > 0, "Rope3DTables: bad grid (", grid[0], ", ", grid[1], ", ", grid[2], ")");
    for (int64_t i = 0; i < grid[a]; ++i) pos[a].push_back(static_cast<double>(i));
  }
  return Rope3DTables(pos[0], pos[1], pos[2], axes_dims, theta, dtype);
}

Tensor ApplyRotary(const Tensor& x, const RotaryTables& rope) {
  SDPO_CHECK(x.dim() == 4, "ApplyRotary: x must be [B, L, H, D], got ", x.str());
  SDPO_CHECK(rope.cos.defined() && rope.sin.defined() && rope.cos.dim() == 2,
             "ApplyRotary: cos/sin tables must be [Lr, D/2]");
  const int64_t l = x.size(1), n = rope.cos.size(0);
  SDPO_CHECK(rope.cos.size(1) * 2 == x.size(3), "ApplyRotary: tables ", rope.cos.str(),
             " do not match head dim ", x.size(3));
  SDPO_CHECK(rope.start >= 0 && rope.start + n <= l, "ApplyRotary: tables for tokens [", rope.start,
             ", ", rope.start + n, ") do not fit a sequence of ", l);
  if (rope.start == 0 && n == l) return sdpo::rope(x, rope.cos, rope.sin, rope.layout);
  std::vector<Tensor> parts;
  if (rope.start > 0) parts.push_back(narrow(x, 1, 0, rope.start));
  parts.push_back(sdpo::rope(narrow(x, 1, rope.start, n), rope.cos, rope.sin, rope.layout));
  if (rope.start + n < l) parts.push_back(narrow(x, 1, rope.start + n, l - rope.start - n));
  return concat(parts, 1);
}

// ----------------------------------------------------------------------------- Attention

AttentionOptions& AttentionOptions::DiffusersNames() {
  q_name = "to_q";
  k_name = "to_k";
  v_name = "to_v";
  o_name = "to_out.0";
  return *this;
}

Attention::Attention(const AttentionOptions& options) : options_(options) {
  const AttentionOptions& o = options_;
  SDPO_CHECK(o.dim > 0 && o.num_heads > 0 && o.dim % o.num_heads == 0, "Attention: dim ", o.dim,
             " must be a positive multiple of num_heads ", o.num_heads);
  const int64_t ctx = o.context_dim > 0 ? o.context_dim : o.dim;
  q_ = RegisterModuleAt(o.q_name, std::make_unique<Linear>(o.dim, o.dim, o.bias));
  k_ = RegisterModuleAt(o.k_name, std::make_unique<Linear>(ctx, o.dim, o.bias));
  v_ = RegisterModuleAt(o.v_name, std::make_unique<Linear>(ctx, o.dim, o.bias));
  o_ = RegisterModuleAt(o.o_name, std::make_unique<Linear>(o.dim, o.dim, o.bias));
  auto make_norm = [&](const std::string& name) -> Module* {
    switch (o.qk_norm) {
      case QkNorm::kNone:
        return nullptr;
      case QkNorm::kRmsNormAcrossHeads:
        return RegisterModuleAt(name, std::make_unique<RMSNorm>(o.dim, o.qk_norm_eps));
      case QkNorm::kRmsNormPerHead:
        return RegisterModuleAt(name, std::make_unique<RMSNorm>(head_dim(), o.qk_norm_eps));
      case QkNorm::kLayerNormPerHead:
        return RegisterModuleAt(name, std::make_unique<LayerNorm>(head_dim(), o.qk_norm_eps));
    }
    return nullptr;
  };
  norm_q_ = make_norm(o.norm_q_name);
  norm_k_ = make_norm(o.norm_k_name);
}

Tensor Attention::NormalizeQk(const Module* norm, const Tensor& x) const {
  if (auto* rms = dynamic_cast<const RMSNorm*>(norm)) return rms->Forward(x);
  if (auto* ln = dynamic_cast<const LayerNorm*>(norm)) return ln->Forward(x);
  SDPO_FAIL("Attention: unknown qk-norm module ", norm->TypeName());
}

Tensor Attention::Forward(const Tensor& x, const Tensor& context, const RotaryTables* rope,
                          const Tensor& mask) const {
  const AttentionOptions& o = options_;
  const int64_t ctx_dim = o.context_dim > 0 ? o.context_dim : o.dim;
  SDPO_CHECK(x.defined() && x.dim() == 3 && x.size(2) == o.dim, "Attention: x ", x.str(),
             " must be [B, L, ", o.dim, "]");
  const bool cross = context.defined();
  const Tensor& kv_in = cross ? context : x;
  SDPO_CHECK(kv_in.dim() == 3 && kv_in.size(0) == x.size(0) && kv_in.size(2) == ctx_dim,
             "Attention: context ", kv_in.str(), " must be [", x.size(0), ", Lk, ", ctx_dim, "]");
  SDPO_CHECK(!(cross && rope != nullptr), "Attention: rotary embedding is for self-attention");
  const int64_t b = x.size(0), l = x.size(1), lk = kv_in.size(1), h = o.num_heads;
  const int64_t hd = head_dim();

  Tensor q = q_->Forward(x), k = k_->Forward(kv_in), v = v_->Forward(kv_in);
  const bool across = o.qk_norm == QkNorm::kRmsNormAcrossHeads;
  if (across) {
    q = NormalizeQk(norm_q_, q);
    k = NormalizeQk(norm_k_, k);
  }
  q = reshape(q, {b, l, h, hd});
  k = reshape(k, {b, lk, h, hd});
  v = reshape(v, {b, lk, h, hd});
  if (o.qk_norm != QkNorm::kNone && !across) {
    q = NormalizeQk(norm_q_, q);
    k = NormalizeQk(norm_k_, k);
  }
  if (rope != nullptr) {
    q = ApplyRotary(q, *rope);
    k = ApplyRotary(k, *rope);
  }
  Tensor a = attention(permute(q, {0, 2, 1, 3}), permute(k, {0, 2, 1, 3}), permute(v, {0, 2, 1, 3}),
                       mask, o.scale);  // [B, H, L, hd]
  a = reshape(permute(a, {0, 2, 1, 3}), {b, l, o.dim});
  return o_->Forward(a);
}

}  // namespace sdpo::nn
