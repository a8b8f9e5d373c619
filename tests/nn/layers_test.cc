// Every layer's forward against a naive reference, and its gradients against finite
// differences in float64.
#include "nn/layers.h"

#include <cmath>

#include "gtest/gtest.h"
#include "nn/init.h"
#include "nn/modulation.h"
#include "tests/autograd/gradcheck.h"
#include "tests/nn/test_util.h"

namespace sdpo::nn {
namespace {

using sdpo::testing::GradCheck;
using sdpo::testing::GradCheckResult;
using sdpo::testing::RandomLeaf;
using testing::AllClose;
using testing::Flat;
using testing::Randn;
using testing::RandomizeParameters;

// Gradient check of fn over `inputs` and every parameter of m, in f64.
void ExpectModuleGradients(Module& m, const std::vector<Tensor>& inputs,
                           const sdpo::testing::TensorFn& fn) {
  m.CastParameters(kF64);
  m.SetComputeDType(kF64);
  m.SetRequiresGrad(true);
  std::vector<Tensor> all = inputs;
  for (const Tensor& p : m.Parameters()) all.push_back(p);
  GradCheckResult r = GradCheck(fn, all);
  EXPECT_TRUE(r.ok) << r.message;
}

// ----------------------------------------------------------------------------- Linear

std::vector<double> NaiveLinear(const std::vector<double>& x, int64_t rows, const Linear& l) {
  std::vector<double> w = l.weight().ToVector();
  std::vector<double> b =
      l.bias().defined() ? l.bias().ToVector() : std::vector<double>(l.out_features(), 0.0);
  const int64_t in = l.in_features(), out = l.out_features();
  std::vector<double> y(rows * out);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double s = b[o];
      for (int64_t i = 0; i < in; ++i) s += x[r * in + i] * w[o * in + i];
      y[r * out + o] = s;
    }
  }
  return y;
}

TEST(LinearTest, ForwardMatchesNaive) {
  for (bool bias : {true, false}) {
    SetInitSeed(11);
    Linear l(5, 3, bias);
    EXPECT_EQ(l.NamedParameters().size(), bias ? 2u : 1u);
    Tensor x = Randn({2, 4, 5}, 1);
    Tensor y = l.Forward(x);
    EXPECT_EQ(y.shape(), Shape({2, 4, 3}));
    EXPECT_TRUE(AllClose(y.ToVector(), NaiveLinear(x.ToVector(), 8, l), 1e-5, 1e-6));
    // A non-contiguous input and a 1-D input.
    Tensor xt = ops::Transpose(Randn({5, 4}, 2), 0, 1);
    EXPECT_TRUE(AllClose(l.Forward(xt).ToVector(), NaiveLinear(xt.ToVector(), 4, l), 1e-5, 1e-6));
    Tensor v = Randn({5}, 3);
    EXPECT_EQ(l.Forward(v).shape(), Shape({3}));
    EXPECT_TRUE(AllClose(l.Forward(v).ToVector(), NaiveLinear(v.ToVector(), 1, l), 1e-5, 1e-6));
  }
  Linear l(5, 3);
  testing::ExpectErrorContains(
      [&] {
        l.Forward(Tensor::Zeros({2, 4}));
      },
      {"Linear(5 -> 3)", "last dim 5"});
}

TEST(LinearTest, Gradients) {
  for (bool bias : {true, false}) {
    Linear l(4, 3, bias);
    Tensor x = RandomLeaf({2, 3, 4}, 5);
    ExpectModuleGradients(l, {x}, [&](const std::vector<Tensor>& in) { return l.Forward(in[0]); });
  }
}

TEST(LinearTest, Bf16ComputeKeepsF32MasterAndGradients) {
  SetInitSeed(12);
  Linear l(16, 8);
  Tensor x = Randn({4, 16}, 6);
  Tensor ref = l.Forward(x);
  l.SetComputeDType(kBF16);
  Tensor y = l.Forward(x);
  EXPECT_EQ(y.dtype(), kBF16);
  EXPECT_TRUE(AllClose(y.ToVector(), ref.ToVector(), 2e-2, 2e-2));
  Backward(sum(cast(y, kF32)));
  ASSERT_TRUE(l.weight().grad().defined());
  EXPECT_EQ(l.weight().grad().dtype(), kF32);
  EXPECT_EQ(l.weight().dtype(), kF32);
  EXPECT_EQ(l.bias().grad().dtype(), kF32);
  // d sum(y) / d b = number of rows.
  for (double g : l.bias().grad().ToVector()) EXPECT_NEAR(g, 4.0, 1e-6);
}

// ----------------------------------------------------------------------------- norms

std::vector<double> NaiveNorm(const std::vector<double>& x, int64_t d, bool rms, double eps,
                              const std::vector<double>& w, const std::vector<double>& b) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / d; ++r) {
    double mu = 0, ss = 0;
    for (int64_t i = 0; i < d; ++i) mu += x[r * d + i] / d;
    if (rms) mu = 0;
    for (int64_t i = 0; i < d; ++i) ss += (x[r * d + i] - mu) * (x[r * d + i] - mu) / d;
    for (int64_t i = 0; i < d; ++i) {
      double v = (x[r * d + i] - mu) / std::sqrt(ss + eps);
      if (!w.empty()) v *= w[i];
      if (!b.empty()) v += b[i];
      y[r * d + i] = v;
    }
  }
  return y;
}

TEST(NormTest, LayerNormForwardMatchesNaive) {
  struct Case {
    bool affine, bias;
  };
  for (Case c : {Case{true, true}, Case{true, false}, Case{false, false}}) {
    LayerNorm ln(6, 1e-6, c.affine, c.bias);
    EXPECT_EQ(ln.NamedParameters().size(), static_cast<size_t>(c.affine + c.bias));
    RandomizeParameters(ln, 20);
    Tensor x = ops::AddScalar(Randn({3, 2, 6}, 7), 3.0);
    std::vector<double> w = c.affine ? ln.weight().ToVector() : std::vector<double>();
    std::vector<double> b = c.bias ? ln.bias().ToVector() : std::vector<double>();
    EXPECT_TRUE(AllClose(ln.Forward(x).ToVector(), NaiveNorm(x.ToVector(), 6, false, 1e-6, w, b),
                         1e-5, 1e-5));
    // bf16 input: computed in f32, returned as bf16.
    Tensor xb = ops::Cast(x, kBF16);
    Tensor yb = ln.Forward(xb);
    EXPECT_EQ(yb.dtype(), kBF16);
    EXPECT_TRUE(
        AllClose(yb.ToVector(), NaiveNorm(xb.ToVector(), 6, false, 1e-6, w, b), 1e-2, 1e-2));
  }
}

TEST(NormTest, RmsNormForwardMatchesNaive) {
  for (bool affine : {true, false}) {
    RMSNorm n(5, 1e-6, affine);
    RandomizeParameters(n, 21);
    Tensor x = Randn({4, 5}, 8);
    std::vector<double> w = affine ? n.weight().ToVector() : std::vector<double>();
    EXPECT_TRUE(AllClose(n.Forward(x).ToVector(), NaiveNorm(x.ToVector(), 5, true, 1e-6, w, {}),
                         1e-5, 1e-6));
  }
}

TEST(NormTest, Gradients) {
  for (int kind = 0; kind < 4; ++kind) {
    std::unique_ptr<Module> m;
    if (kind == 0) m = std::make_unique<LayerNorm>(5, 1e-5, true, true);
    if (kind == 1) m = std::make_unique<LayerNorm>(5, 1e-5, false, false);
    if (kind == 2) m = std::make_unique<RMSNorm>(5, 1e-6, true);
    if (kind == 3) m = std::make_unique<RMSNorm>(5, 1e-6, false);
    RandomizeParameters(*m, 30);
    Tensor x = RandomLeaf({3, 5}, 9);
    ExpectModuleGradients(*m, {x}, [&](const std::vector<Tensor>& in) {
      if (auto* ln = dynamic_cast<LayerNorm*>(m.get())) return ln->Forward(in[0]);
      return dynamic_cast<RMSNorm*>(m.get())->Forward(in[0]);
    });
  }
}

// ----------------------------------------------------------------------------- MLP

TEST(MlpTest, ForwardMatchesNaiveAndGradients) {
  for (Activation act : {Activation::kGeluTanh, Activation::kSilu, Activation::kGelu}) {
    SetInitSeed(13);
    MLP mlp(4, 6, 3, act);
    Tensor x = Randn({2, 4}, 10);
    std::vector<double> h = NaiveLinear(x.ToVector(), 2, *mlp.fc1());
    for (double& v : h) {
      if (act == Activation::kGeluTanh) {
        v = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
      } else if (act == Activation::kSilu) {
        v = v / (1 + std::exp(-v));
      } else {
        v = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
      }
    }
    EXPECT_TRUE(AllClose(mlp.Forward(x).ToVector(), NaiveLinear(h, 2, *mlp.fc2()), 1e-5, 1e-6));
    Tensor xl = RandomLeaf({2, 4}, 11);
    ExpectModuleGradients(mlp, {xl},
                          [&](const std::vector<Tensor>& in) { return mlp.Forward(in[0]); });
  }
}

// ----------------------------------------------------------------------------- patches

TEST(PatchEmbedTest, MatchesNaiveConv3d) {
  struct Case {
    Int3 patch;
    bool conv2d;
  };
  for (Case c : {Case{{1, 2, 2}, false}, Case{{2, 2, 3}, false}, Case{{1, 2, 2}, true}}) {
    const auto [pt, ph, pw] = c.patch;
    const int64_t b = 2, ch = 3, dim = 5, f = 2 * pt, h = 2 * ph, w = 3 * pw;
    SetInitSeed(14);
    PatchEmbed pe(ch, dim, c.patch, true, c.conv2d);
    EXPECT_EQ(pe.weight().shape(),
              c.conv2d ? Shape({dim, ch, ph, pw}) : Shape({dim, ch, pt, ph, pw}));
    Shape xs = {b, ch, f, h, w};
    Tensor x = Randn(xs, 12);
    Int3 grid;
    Tensor y = pe.Forward(x, &grid);
    EXPECT_EQ(grid, (Int3{2, 2, 3}));
    ASSERT_EQ(y.shape(), Shape({b, 12, dim}));
    std::vector<double> xv = x.ToVector(), wv = pe.weight().ToVector(), bv = pe.bias().ToVector();
    std::vector<double> want(y.numel());
    for (int64_t n = 0; n < b; ++n)
      for (int64_t tf = 0; tf < 2; ++tf)
        for (int64_t th = 0; th < 2; ++th)
          for (int64_t tw = 0; tw < 3; ++tw)
            for (int64_t o = 0; o < dim; ++o) {
              double s = bv[o];
              for (int64_t ci = 0; ci < ch; ++ci)
                for (int64_t kt = 0; kt < pt; ++kt)
                  for (int64_t kh = 0; kh < ph; ++kh)
                    for (int64_t kw = 0; kw < pw; ++kw) {
                      // PyTorch Conv3d weight [out, in, kt, kh, kw] (Conv2d: no kt).
                      int64_t wi = (((o * ch + ci) * pt + kt) * ph + kh) * pw + kw;
                      s += wv[wi] * xv[Flat(xs, {n, ci, tf * pt + kt, th * ph + kh, tw * pw + kw})];
                    }
              int64_t token = (tf * 2 + th) * 3 + tw;
              want[(n * 12 + token) * dim + o] = s;
            }
    EXPECT_TRUE(AllClose(y.ToVector(), want, 1e-5, 1e-5));
  }
}

TEST(PatchEmbedTest, Gradients) {
  PatchEmbed pe(2, 3, {2, 1, 2});
  Tensor x = RandomLeaf({1, 2, 2, 3, 4}, 13);
  ExpectModuleGradients(pe, {x}, [&](const std::vector<Tensor>& in) { return pe.Forward(in[0]); });
}

TEST(UnpatchifyTest, MatchesIndexFormulas) {
  const Int3 grid = {2, 3, 2}, patch = {2, 2, 3};
  const int64_t b = 2, c = 3, p = 2 * 2 * 3, l = 12;
  Tensor u = Randn({b, l, p * c}, 14);
  std::vector<double> uv = u.ToVector();
  for (PatchOrder order : {PatchOrder::kPatchMajor, PatchOrder::kChannelMajor}) {
    for (VideoLayout layout : {VideoLayout::kCFHW, VideoLayout::kFCHW}) {
      Tensor out = Unpatchify(u, grid, patch, c, order, layout);
      Shape os = layout == VideoLayout::kCFHW ? Shape{b, c, 4, 6, 6} : Shape{b, 4, c, 6, 6};
      ASSERT_EQ(out.shape(), os);
      std::vector<double> ov = out.ToVector();
      for (int64_t n = 0; n < b; ++n)
        for (int64_t f = 0; f < 2; ++f)
          for (int64_t h = 0; h < 3; ++h)
            for (int64_t w = 0; w < 2; ++w)
              for (int64_t qt = 0; qt < 2; ++qt)
                for (int64_t qh = 0; qh < 2; ++qh)
                  for (int64_t qw = 0; qw < 3; ++qw)
                    for (int64_t ci = 0; ci < c; ++ci) {
                      int64_t tok = (f * 3 + h) * 2 + w;
                      // Wan: ((pt*ph + qh)*pw + qw)*C + c; CogVideoX: c*P + (qt*ph + qh)*pw + qw.
                      int64_t e = order == PatchOrder::kPatchMajor
                                      ? ((qt * 2 + qh) * 3 + qw) * c + ci
                                      : ((ci * 2 + qt) * 2 + qh) * 3 + qw;
                      double want = uv[(n * l + tok) * p * c + e];
                      int64_t ft = f * 2 + qt, hh = h * 2 + qh, ww = w * 3 + qw;
                      int64_t idx = layout == VideoLayout::kCFHW ? Flat(os, {n, ci, ft, hh, ww})
                                                                 : Flat(os, {n, ft, ci, hh, ww});
                      ASSERT_EQ(ov[idx], want);
                    }
    }
  }
}

TEST(UnpatchifyTest, InvertsPatchEmbedWithChannelMajorOrder) {
  // A patch embedding whose weight is the identity on (c, kt, kh, kw) packs tokens in
  // channel-major order, so the channel-major unpatchify recovers the input exactly.
  const Int3 patch = {1, 2, 2};
  const int64_t c = 2, k = c * 4;
  PatchEmbed pe(c, k, patch, false);
  ops::CopyInto(pe.weight(), ops::Reshape(Tensor::FromVector(
                                              [&] {
                                                std::vector<double> eye(k * k, 0.0);
                                                for (int64_t i = 0; i < k; ++i) eye[i * k + i] = 1;
                                                return eye;
                                              }(),
                                              {k, k}),
                                          pe.weight().shape()));
  Tensor x = Randn({1, c, 3, 4, 6}, 15);
  Int3 grid;
  Tensor tokens = pe.Forward(x, &grid);
  Tensor back = Unpatchify(tokens, grid, patch, c, PatchOrder::kChannelMajor);
  EXPECT_TRUE(AllClose(back, x, 0, 1e-6));
}

TEST(UnpatchifyTest, Gradients) {
  Tensor u = RandomLeaf({1, 4, 8}, 16);
  GradCheckResult r = GradCheck(
      [](const std::vector<Tensor>& in) {
        return Unpatchify(in[0], {1, 2, 2}, {1, 2, 2}, 2, PatchOrder::kPatchMajor);
      },
      {u});
  EXPECT_TRUE(r.ok) << r.message;
}

// ----------------------------------------------------------------------------- timesteps

TEST(SinusoidalTest, WanTestVector) {
  // models.md 2.3: t = 999, dim 256, cos first, computed in float64.
  Tensor e =
      SinusoidalEmbedding(Tensor::FromVector(std::vector<double>{999}, {1}, kF64), 256, {}, kF64);
  ASSERT_EQ(e.shape(), Shape({1, 256}));
  EXPECT_NEAR(e.at({0, 0}), 0.99965, 1e-5);
  EXPECT_NEAR(e.at({0, 1}), 0.963782, 1e-6);
  EXPECT_NEAR(e.at({0, 2}), -0.398992, 1e-6);
  EXPECT_NEAR(e.at({0, 128}), -0.026461, 1e-6);
  EXPECT_NEAR(e.at({0, 129}), -0.26669, 1e-5);
  EXPECT_NEAR(e.at({0, 130}), -0.916955, 1e-6);
}

TEST(SinusoidalTest, OrdersShiftScaleAndF32Arithmetic) {
  Tensor t = Tensor::FromVector(std::vector<double>{0, 3, 500.5}, {3}, kF32);
  const int64_t dim = 9, half = 4;  // odd: zero last column
  for (bool cos_first : {true, false}) {
    for (double shift : {0.0, 1.0}) {
      SinusoidalOptions o;
      o.cos_first = cos_first;
      o.freq_shift = shift;
      o.max_period = 100;
      o.scale = 2;
      Tensor e = SinusoidalEmbedding(t, dim, o, kF64);
      ASSERT_EQ(e.shape(), Shape({3, dim}));
      std::vector<double> tv = t.ToVector();
      for (int64_t r = 0; r < 3; ++r) {
        for (int64_t i = 0; i < half; ++i) {
          double angle = 2 * tv[r] * std::exp(-std::log(100.0) * i / (half - shift));
          double first = cos_first ? std::cos(angle) : std::sin(angle);
          double second = cos_first ? std::sin(angle) : std::cos(angle);
          EXPECT_NEAR(e.at({r, i}), first, 1e-12);
          EXPECT_NEAR(e.at({r, half + i}), second, 1e-12);
        }
        EXPECT_EQ(e.at({r, dim - 1}), 0);
      }
      // float32 arithmetic (diffusers) stays within float error of the float64 result.
      o.compute = kF32;
      Tensor e32 = SinusoidalEmbedding(t, dim, o, kF32);
      EXPECT_EQ(e32.dtype(), kF32);
      EXPECT_TRUE(AllClose(e32.ToVector(), e.ToVector(), 0, 5e-4));
    }
  }
}

// ----------------------------------------------------------------------------- modulation

TEST(ModulationTest, ForwardMatchesNaive) {
  Tensor x = Randn({2, 3, 4}, 17), shift = Randn({2, 1, 4}, 18), scale = Randn({2, 1, 4}, 19);
  Tensor gate = Randn({4}, 20), y = Randn({2, 3, 4}, 21);
  std::vector<double> xv = x.ToVector(), sh = shift.ToVector(), sc = scale.ToVector();
  std::vector<double> gv = gate.ToVector(), yv = y.ToVector();
  std::vector<double> mod(24), res(24), mln(24);
  std::vector<double> normed = NaiveNorm(xv, 4, false, 1e-6, {}, {});
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t l = 0; l < 3; ++l)
      for (int64_t d = 0; d < 4; ++d) {
        int64_t i = (n * 3 + l) * 4 + d, s = n * 4 + d;
        mod[i] = xv[i] * (1 + sc[s]) + sh[s];
        mln[i] = normed[i] * (1 + sc[s]) + sh[s];
        res[i] = xv[i] + yv[i] * gv[d];
      }
  EXPECT_TRUE(AllClose(Modulate(x, shift, scale).ToVector(), mod, 1e-6, 1e-6));
  EXPECT_TRUE(AllClose(GatedResidual(x, y, gate).ToVector(), res, 1e-6, 1e-6));
  EXPECT_TRUE(AllClose(ModulatedLayerNorm(x, shift, scale, 1e-6).ToVector(), mln, 1e-5, 1e-5));
  // Mixed precision: a bf16 branch on an f32 stream gives f32.
  Tensor mixed = GatedResidual(x, ops::Cast(y, kBF16), gate);
  EXPECT_EQ(mixed.dtype(), kF32);
  EXPECT_EQ(ModulatedLayerNorm(ops::Cast(x, kBF16), shift, scale, 1e-6).dtype(), kF32);
}

TEST(ModulationTest, Gradients) {
  std::vector<Tensor> in = {RandomLeaf({2, 3, 4}, 22), RandomLeaf({2, 1, 4}, 23),
                            RandomLeaf({2, 1, 4}, 24), RandomLeaf({4}, 25), RandomLeaf({4}, 26)};
  GradCheckResult r = GradCheck(
      [](const std::vector<Tensor>& t) {
        Tensor a = ModulatedLayerNorm(t[0], t[1], t[2], 1e-6, t[3], t[4]);
        return GatedResidual(t[0], Modulate(a, t[2], t[1]), t[3]);
      },
      in);
  EXPECT_TRUE(r.ok) << r.message;
}

}  // namespace
}  // namespace sdpo::nn
