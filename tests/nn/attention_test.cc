#include "nn/attention.h"

#include <cmath>

#include "gtest/gtest.h"
#include "nn/init.h"
#include "tests/autograd/gradcheck.h"
#include "tests/nn/test_util.h"

namespace sdpo::nn {
namespace {

using sdpo::testing::GradCheck;
using sdpo::testing::GradCheckResult;
using sdpo::testing::RandomLeaf;
using testing::AllClose;
using testing::Randn;
using testing::RandomizeParameters;

using Vec = std::vector<double>;

Vec NaiveLinear(const Vec& x, int64_t rows, const Linear& l) {
  Vec w = l.weight().ToVector();
  Vec b = l.bias().defined() ? l.bias().ToVector() : Vec(l.out_features(), 0.0);
  const int64_t in = l.in_features(), out = l.out_features();
  Vec y(rows * out);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = b[o];
      for (int64_t i = 0; i < in; ++i) s += x[r * in + i] * w[o * in + i];
      y[r * out + o] = s;
    }
  return y;
}

// Normalises consecutive groups of d values (RMS or LayerNorm), with optional affine.
void NaiveNormInPlace(Vec& x, int64_t d, bool rms, double eps, const Module* norm) {
  Tensor w = norm->FindParameter("weight"), b = norm->FindParameter("bias");
  Vec wv = w.defined() ? w.ToVector() : Vec(), bv = b.defined() ? b.ToVector() : Vec();
  for (size_t r = 0; r < x.size() / d; ++r) {
    double mu = 0, ss = 0;
    if (!rms)
      for (int64_t i = 0; i < d; ++i) mu += x[r * d + i] / d;
    for (int64_t i = 0; i < d; ++i) ss += (x[r * d + i] - mu) * (x[r * d + i] - mu) / d;
    for (int64_t i = 0; i < d; ++i) {
      double v = (x[r * d + i] - mu) / std::sqrt(ss + eps);
      if (!wv.empty()) v *= wv[i];
      if (!bv.empty()) v += bv[i];
      x[r * d + i] = v;
    }
  }
}

// q/k laid out [B, L, H, hd]; rotates tokens [start, start + n) by the tables.
void NaiveRopeInPlace(Vec& x, int64_t b, int64_t l, int64_t h, int64_t hd,
                      const RotaryTables& rope) {
  Vec c = rope.cos.ToVector(), s = rope.sin.ToVector();
  const int64_t n = rope.cos.size(0);
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t t = rope.start; t < rope.start + n; ++t)
      for (int64_t hi = 0; hi < h; ++hi)
        for (int64_t j = 0; j < hd / 2; ++j) {
          double* p = &x[((bi * l + t) * h + hi) * hd];
          double cs = c[(t - rope.start) * hd / 2 + j], sn = s[(t - rope.start) * hd / 2 + j];
          double x0 = p[2 * j], x1 = p[2 * j + 1];
          p[2 * j] = x0 * cs - x1 * sn;
          p[2 * j + 1] = x0 * sn + x1 * cs;
        }
}

Vec NaiveAttention(const Attention& a, const Tensor& x, const Tensor& context,
                   const RotaryTables* rope, const Tensor& mask) {
  const AttentionOptions& o = a.options();
  const int64_t b = x.size(0), l = x.size(1), h = o.num_heads, hd = a.head_dim(), d = o.dim;
  const Tensor& kv = context.defined() ? context : x;
  const int64_t lk = kv.size(1);
  Vec q = NaiveLinear(x.ToVector(), b * l, *a.q());
  Vec k = NaiveLinear(kv.ToVector(), b * lk, *a.k());
  Vec v = NaiveLinear(kv.ToVector(), b * lk, *a.v());
  const Module* nq = a.FindModule(o.norm_q_name);
  const Module* nk = a.FindModule(o.norm_k_name);
  switch (o.qk_norm) {
    case QkNorm::kNone:
      break;
    case QkNorm::kRmsNormAcrossHeads:
      NaiveNormInPlace(q, d, true, o.qk_norm_eps, nq);
      NaiveNormInPlace(k, d, true, o.qk_norm_eps, nk);
      break;
    case QkNorm::kRmsNormPerHead:
      NaiveNormInPlace(q, hd, true, o.qk_norm_eps, nq);
      NaiveNormInPlace(k, hd, true, o.qk_norm_eps, nk);
      break;
    case QkNorm::kLayerNormPerHead:
      NaiveNormInPlace(q, hd, false, o.qk_norm_eps, nq);
      NaiveNormInPlace(k, hd, false, o.qk_norm_eps, nk);
      break;
  }
  if (rope != nullptr) {
    NaiveRopeInPlace(q, b, l, h, hd, *rope);
    NaiveRopeInPlace(k, b, lk, h, hd, *rope);
  }
  Vec m = mask.defined() ? ops::Expand(mask, {b, h, l, lk}).ToVector() : Vec(b * h * l * lk, 0);
  Vec att(b * l * d);
  const double scale = o.scale.value_or(1 / std::sqrt(static_cast<double>(hd)));
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t hi = 0; hi < h; ++hi)
      for (int64_t i = 0; i < l; ++i) {
        Vec s(lk);
        double mx = -1e300;
        for (int64_t j = 0; j < lk; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < hd; ++e)
            dot += q[((bi * l + i) * h + hi) * hd + e] * k[((bi * lk + j) * h + hi) * hd + e];
          s[j] = dot * scale + m[((bi * h + hi) * l + i) * lk + j];
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (double& sj : s) z += (sj = std::exp(sj - mx));
        for (int64_t e = 0; e < hd; ++e) {
          double acc = 0;
          for (int64_t j = 0; j < lk; ++j) acc += s[j] / z * v[((bi * lk + j) * h + hi) * hd + e];
          att[(bi * l + i) * d + hi * hd + e] = acc;
        }
      }
  return NaiveLinear(att, b * l, *a.o());
}

TEST(RopeTablesTest, PerAxisFrequenciesAndTokenOrder) {
  // head_dim 8 split (4, 2, 2): pairs 0-1 from t (freqs 1, theta^-0.5), pair 2 from h, 3 from w.
  const double theta = 100;
  RotaryTables r = Rope3DTables(Int3{2, 3, 2}, Int3{4, 2, 2}, theta, kF64);
  ASSERT_EQ(r.cos.shape(), Shape({12, 4}));
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t h = 0; h < 3; ++h)
      for (int64_t w = 0; w < 2; ++w) {
        int64_t tok = (t * 3 + h) * 2 + w;
        double angles[4] = {t * 1.0, t * std::pow(theta, -0.5), h * 1.0, w * 1.0};
        for (int j = 0; j < 4; ++j) {
          EXPECT_NEAR(r.cos.at({tok, j}), std::cos(angles[j]), 1e-15);
          EXPECT_NEAR(r.sin.at({tok, j}), std::sin(angles[j]), 1e-15);
        }
      }
  // Wan2.1: head dim 128, axes (44, 42, 42): the height part starts at pair 22 with freq 1 and
  // its pair j uses 10000^(-2j/42).
  RotaryTables wan = Rope3DTables(Int3{2, 3, 4}, Int3{44, 42, 42});
  ASSERT_EQ(wan.cos.shape(), Shape({24, 64}));
  int64_t tok = (1 * 3 + 2) * 4 + 3;  // t=1, h=2, w=3
  EXPECT_NEAR(wan.sin.at({tok, 21}), std::sin(1 * std::pow(10000.0, -42.0 / 44)), 1e-7);
  EXPECT_NEAR(wan.sin.at({tok, 22}), std::sin(2.0), 1e-7);
  EXPECT_NEAR(wan.sin.at({tok, 23}), std::sin(2 * std::pow(10000.0, -2.0 / 42)), 1e-7);
  EXPECT_NEAR(wan.sin.at({tok, 43}), std::sin(3.0), 1e-7);
  EXPECT_NEAR(wan.cos.at({tok, 63}), std::cos(3 * std::pow(10000.0, -40.0 / 42)), 1e-7);
  // Fractional positions (CogVideoX's resized grids).
  RotaryTables frac = Rope3DTables({0.5}, {0, 1.5}, {2.25}, Int3{2, 2, 2}, 10000, kF64);
  EXPECT_NEAR(frac.sin.at({1, 1}), std::sin(1.5), 1e-15);
  EXPECT_NEAR(frac.sin.at({1, 2}), std::sin(2.25), 1e-15);
}

struct Config {
  const char* name;
  QkNorm norm;
  bool cross;
  bool rope;
  int64_t rope_start;
  bool mask;
};

std::vector<Config> Configs() {
  return {{"plain", QkNorm::kNone, false, false, 0, false},
          {"wan_self", QkNorm::kRmsNormAcrossHeads, false, true, 0, false},
          {"wan_cross", QkNorm::kRmsNormAcrossHeads, true, false, 0, false},
          {"cogvideox_joint", QkNorm::kLayerNormPerHead, false, true, 2, false},
          {"rms_per_head_masked", QkNorm::kRmsNormPerHead, false, false, 0, true}};
}

std::unique_ptr<Attention> Make(const Config& c) {
  AttentionOptions o;
  o.dim = 12;
  o.num_heads = 2;
  o.qk_norm = c.norm;
  if (c.cross) o.context_dim = 6;
  auto a = std::make_unique<Attention>(o);
  RandomizeParameters(*a, 40);
  return a;
}

// Rotary tables for 4 tokens on a (2, 1, 2) grid, head dim 6 split (2, 2, 2).
RotaryTables Tables(const Config& c, DType dtype) {
  RotaryTables r = Rope3DTables(Int3{2, 1, 2}, Int3{2, 2, 2}, 10000, dtype);
  r.start = c.rope_start;
  return r;
}

TEST(AttentionTest, ForwardMatchesNaive) {
  for (const Config& c : Configs()) {
    SCOPED_TRACE(c.name);
    auto a = Make(c);
    const int64_t l = c.rope ? c.rope_start + 4 : 5;
    Tensor x = Randn({2, l, 12}, 41);
    Tensor ctx = c.cross ? Randn({2, 3, 6}, 42) : Tensor();
    RotaryTables r = Tables(c, kF32);
    Tensor mask = c.mask ? ops::MulScalar(Randn({1, 1, l, l}, 43), 2.0) : Tensor();
    Tensor y = a->Forward(x, ctx, c.rope ? &r : nullptr, mask);
    ASSERT_EQ(y.shape(), x.shape());
    EXPECT_TRUE(AllClose(y.ToVector(), NaiveAttention(*a, x, ctx, c.rope ? &r : nullptr, mask),
                         1e-4, 1e-5));
  }
}

TEST(AttentionTest, Gradients) {
  for (const Config& c : Configs()) {
    SCOPED_TRACE(c.name);
    auto a = Make(c);
    const int64_t l = c.rope ? c.rope_start + 4 : 3;
    std::vector<Tensor> inputs = {RandomLeaf({1, l, 12}, 44)};
    if (c.cross) inputs.push_back(RandomLeaf({1, 2, 6}, 45));
    RotaryTables r = Tables(c, kF64);
    Tensor mask = c.mask ? Randn({1, 1, l, l}, 46, kF64) : Tensor();
    a->CastParameters(kF64);
    a->SetComputeDType(kF64);
    std::vector<Tensor> all = inputs;
    for (const Tensor& p : a->Parameters()) all.push_back(p);
    GradCheckResult res = GradCheck(
        [&](const std::vector<Tensor>& in) {
          return a->Forward(in[0], c.cross ? in[1] : Tensor(), c.rope ? &r : nullptr, mask);
        },
        all);
    EXPECT_TRUE(res.ok) << res.message;
  }
}

TEST(AttentionTest, Errors) {
  Config c = Configs()[2];  // cross
  auto a = Make(c);
  RotaryTables r = Tables(c, kF32);
  testing::ExpectErrorContains(
      [&] {
        a->Forward(Randn({1, 4, 12}, 1), Randn({1, 3, 12}, 2));
      },
      {"context", "[1, Lk, 6]"});
  testing::ExpectErrorContains(
      [&] {
        a->Forward(Randn({1, 4, 12}, 1), Randn({1, 3, 6}, 2), &r);
      },
      {"self-attention"});
  auto s = Make(Configs()[1]);
  r.start = 1;
  testing::ExpectErrorContains(
      [&] {
        s->Forward(Randn({1, 4, 12}, 1), Tensor(), &r);
      },
      {"tokens [1, 5)", "sequence of 4"});
  AttentionOptions bad;
  bad.dim = 6;
  bad.num_heads = 4;
  testing::ExpectErrorContains([&] { Attention x(bad); }, {"multiple of num_heads"});
}

}  // namespace
}  // namespace sdpo::nn
