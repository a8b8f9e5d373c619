#include "models/schedules.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tensor/error.h"

namespace sdpo {
namespace {

// ---------------------------------------------------------------------------------------------
// Flow matching.

TEST(FlowScheduleTest, ShiftAndInverse) {
  EXPECT_DOUBLE_EQ(FlowShiftSigma(0.5, 5.0), 2.5 / 3.0);  // 5 * 0.5 / (1 + 4 * 0.5)
  EXPECT_EQ(FlowShiftSigma(1.0, 5.0), 1.0);
  EXPECT_EQ(FlowShiftSigma(0.0, 5.0), 0.0);
  EXPECT_EQ(FlowShiftSigma(0.3, 1.0), 0.3);
  for (double s : {0.001, 0.1, 0.37, 0.9, 0.999}) {
    for (double k : {1.0, 3.0, 5.0, 12.0}) {
      EXPECT_NEAR(FlowUnshiftSigma(FlowShiftSigma(s, k), k), s, 1e-15);
    }
  }
}

TEST(FlowScheduleTest, TrainingGrid) {
  const NoiseSchedule s = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  ASSERT_EQ(s.num_steps(), 1000);
  EXPECT_EQ(s.family(), ScheduleFamily::kFlow);
  // Index 999 is pure noise; DiffSynth's index 1 (sigma_r 0.999) is our index 998.
  EXPECT_EQ(s.At(999).sigma, 1.0);
  EXPECT_EQ(s.At(999).alpha, 0.0);
  EXPECT_EQ(s.At(999).timestep, 1000.0);
  EXPECT_NEAR(s.At(998).sigma, 4.995 / 4.996, 1e-15);  // 0.9998
  EXPECT_NEAR(s.At(0).sigma, 0.005 / 1.004, 1e-15);    // shift_5(0.001)
  for (int i : {0, 17, 500, 998}) {
    const TimePoint tp = s.At(i);
    EXPECT_NEAR(tp.sigma, FlowShiftSigma((i + 1) / 1000.0, 5.0), 1e-15);
    EXPECT_EQ(tp.alpha, 1.0 - tp.sigma);
    EXPECT_EQ(tp.timestep, 1000.0 * tp.sigma);
    EXPECT_EQ(tp.index, i);
    EXPECT_LT(tp.sigma_prev, tp.sigma);
    EXPECT_NEAR(tp.Snr(), (1 - tp.sigma) * (1 - tp.sigma) / (tp.sigma * tp.sigma), 1e-9 * tp.Snr());
  }
  // Previous point: one unshifted step less noise; before index 0, clean data.
  EXPECT_NEAR(s.At(500).sigma_prev, FlowShiftSigma(0.5, 5.0), 1e-15);
  EXPECT_TRUE(s.At(0).PrevIsClean());
  EXPECT_TRUE(std::isinf(s.At(0).SnrPrev()));
  EXPECT_FALSE(s.At(1).PrevIsClean());
  EXPECT_EQ(s.At(999).Snr(), 0.0);
  EXPECT_THROW(s.At(1000), Error);
  EXPECT_THROW(s.At(-1), Error);
  EXPECT_THROW(s.alphas_cumprod(), Error);
}

TEST(FlowScheduleTest, OffGridSigmaAndStride) {
  FlowScheduleConfig c;
  c.prev_stride = 20;  // e.g. a 50-step inference grid
  const NoiseSchedule s = NoiseSchedule::Flow(c);
  const TimePoint tp = s.AtFlowSigma(0.9);
  EXPECT_EQ(tp.index, -1);
  EXPECT_DOUBLE_EQ(tp.timestep, 900.0);
  EXPECT_NEAR(tp.sigma_prev, FlowShiftSigma(FlowUnshiftSigma(0.9, 5.0) - 0.02, 5.0), 1e-15);
  EXPECT_TRUE(s.AtFlowSigma(0.05).PrevIsClean());  // unshifted 0.0104 - 0.02 < 0
  EXPECT_THROW(s.AtFlowSigma(0.0), Error);
  EXPECT_THROW(s.AtFlowSigma(1.5), Error);
  EXPECT_THROW(NoiseSchedule::Ddpm(DdpmScheduleConfig{}).AtFlowSigma(0.5), Error);
}

// Test vectors of research models.md 2.6 and fixtures/wan21/README.md (official scheduler).
TEST(FlowScheduleTest, WanInferenceGrids) {
  const std::vector<double> s50 = WanUniPcSigmas(50, 5.0);
  ASSERT_EQ(s50.size(), 51u);
  const double head[] = {0.9998, 0.995732, 0.99153, 0.987187, 0.982696};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(s50[i], head[i], 1e-6) << i;
  EXPECT_NEAR(s50[47], 0.24174, 1e-5);
  EXPECT_NEAR(s50[48], 0.172265, 1e-6);
  EXPECT_NEAR(s50[49], 0.092507, 1e-6);
  EXPECT_EQ(s50[50], 0.0);
  const std::vector<int64_t> t50 = WanUniPcTimesteps(50, 5.0);
  EXPECT_EQ(t50[0], 999);
  EXPECT_EQ(t50[1], 995);
  EXPECT_EQ(t50[2], 991);
  EXPECT_EQ(t50[3], 987);
  EXPECT_EQ(t50[4], 982);
  EXPECT_EQ(t50[47], 241);
  EXPECT_EQ(t50[48], 172);
  EXPECT_EQ(t50[49], 92);
  const std::vector<double> s6 = WanUniPcSigmas(6, 5.0);
  const double traj[] = {0.9998, 0.96132, 0.90884, 0.83306, 0.71398, 0.49970, 0.0};
  for (int i = 0; i < 7; ++i) EXPECT_NEAR(s6[i], traj[i], 1e-5) << i;
  const std::vector<int64_t> t6 = WanUniPcTimesteps(6, 5.0);
  EXPECT_EQ(t6, (std::vector<int64_t>{999, 961, 908, 833, 713, 499}));
  const std::vector<double> d = WanDpmppSigmas(10, 3.0);
  EXPECT_EQ(d.size(), 10u);
  EXPECT_EQ(d[0], 1.0);  // dpm++ grid starts at 1
  EXPECT_NEAR(d[5], FlowShiftSigma(0.5, 3.0), 1e-15);
}

// ---------------------------------------------------------------------------------------------
// DDPM.

TEST(DdpmScheduleTest, ScaledLinearBetas) {
  const std::vector<double> b = DdpmBetas(DdpmScheduleConfig{});
  ASSERT_EQ(b.size(), 1000u);
  EXPECT_NEAR(b.front(), 0.00085, 1e-18);
  EXPECT_NEAR(b.back(), 0.012, 1e-17);
  const double r = (std::sqrt(0.012) - std::sqrt(0.00085)) / 999;
  EXPECT_NEAR(b[400], std::pow(std::sqrt(0.00085) + 400 * r, 2), 1e-17);
  DdpmScheduleConfig lin;
  lin.beta_schedule = BetaSchedule::kLinear;
  EXPECT_NEAR(DdpmBetas(lin)[999], 0.012, 1e-17);
}

// Values of fixtures/cogvideox/README.md (official scheduler, float64) and models.md 3.6.
TEST(DdpmScheduleTest, CogVideoXAlphasCumprod) {
  const NoiseSchedule s2 = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  const std::vector<double>& a2 = s2.alphas_cumprod();
  EXPECT_NEAR(a2[0], 0.9974543276, 1e-10);
  EXPECT_NEAR(a2[1], 0.9948006264, 1e-10);
  EXPECT_NEAR(a2[499], 0.09596956169, 1e-11);
  EXPECT_NEAR(a2[979], 2.71943604e-05, 1e-13);
  EXPECT_NEAR(a2[998], 6.230788467e-08, 1e-16);
  EXPECT_EQ(a2[999], 0.0);
  const NoiseSchedule s5 = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX5B());
  const std::vector<double>& a5 = s5.alphas_cumprod();
  EXPECT_NEAR(a5[0], 0.99915, 1e-12);
  EXPECT_NEAR(a5[1], 0.9982334461, 1e-10);
  EXPECT_NEAR(a5[499], 0.2423591666, 1e-10);
  EXPECT_NEAR(a5[979], 8.57878434e-05, 1e-13);
  EXPECT_NEAR(a5[998], 1.967888057e-07, 1e-16);
  EXPECT_EQ(a5[999], 0.0);
  // Without shift and rescale: the plain cumulative product.
  const NoiseSchedule plain = NoiseSchedule::Ddpm(DdpmScheduleConfig{});
  const std::vector<double> b = DdpmBetas(DdpmScheduleConfig{});
  double prod = 1.0;
  for (int i = 0; i < 1000; ++i) prod *= 1.0 - b[i];
  EXPECT_NEAR(plain.alphas_cumprod()[999], prod, 1e-15);
  EXPECT_GT(plain.alphas_cumprod()[999], 0.0);
}

TEST(DdpmScheduleTest, PointsAndSnr) {
  const NoiseSchedule s = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  const std::vector<double>& ab = s.alphas_cumprod();
  for (int t : {0, 1, 63, 500, 998, 999}) {
    const TimePoint tp = s.At(t);
    EXPECT_EQ(tp.timestep, t);
    EXPECT_NEAR(tp.alpha * tp.alpha, ab[t], 1e-15);
    EXPECT_NEAR(tp.alpha * tp.alpha + tp.sigma * tp.sigma, 1.0, 1e-15);
    if (t > 0) {
      EXPECT_NEAR(tp.alpha_prev * tp.alpha_prev, ab[t - 1], 1e-15);
    }
    if (t < 999) {
      EXPECT_NEAR(tp.Snr(), ab[t] / (1 - ab[t]), 1e-12 * tp.Snr());
    }
  }
  EXPECT_TRUE(s.At(0).PrevIsClean());  // set_alpha_to_one
  EXPECT_EQ(s.At(999).Snr(), 0.0);     // zero terminal SNR
  DdpmScheduleConfig c = DdpmScheduleConfig::CogVideoX2B();
  c.set_alpha_to_one = false;
  EXPECT_NEAR(NoiseSchedule::Ddpm(c).At(0).alpha_prev, std::sqrt(ab[0]), 1e-15);
  c.snr_shift_scale = -1.0;
  EXPECT_THROW(NoiseSchedule::Ddpm(c), Error);
}

TEST(DdpmScheduleTest, TrailingTimesteps) {
  const std::vector<int64_t> t50 = DdpmTrailingTimesteps(50);
  ASSERT_EQ(t50.size(), 50u);
  for (int k = 0; k < 50; ++k) EXPECT_EQ(t50[k], 999 - 20 * k);
  const std::vector<int64_t> p50 = DdpmTrailingPrevTimesteps(50);
  EXPECT_EQ(p50[0], 979);
  EXPECT_EQ(p50[49], -1);
  const std::vector<int64_t> t6 = DdpmTrailingTimesteps(6);
  // round(1000 - k * 166.67) - 1: 999, 832, 666, 499, 332, 166.
  EXPECT_EQ(t6, (std::vector<int64_t>{999, 832, 666, 499, 332, 166}));
  EXPECT_EQ(DdpmTrailingPrevTimesteps(6)[0], 833);  // 999 - 1000 // 6
}

// ---------------------------------------------------------------------------------------------
// Conversions, targets and the posterior, both families.

std::vector<TimePoint> SomePoints() {
  std::vector<TimePoint> out;
  const NoiseSchedule f = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  const NoiseSchedule d = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  for (int i : {1, 100, 500, 900, 998}) {
    out.push_back(f.At(i));
    out.push_back(d.At(i));
  }
  out.push_back(f.AtFlowSigma(0.42));
  return out;
}

TEST(ConversionTest, TargetsAndConversionsAreConsistent) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> n01;
  const PredictionType types[] = {PredictionType::kEpsilon, PredictionType::kX0,
                                  PredictionType::kV};
  for (const TimePoint& tp : SomePoints()) {
    SCOPED_TRACE(absl::StrCat(ScheduleFamilyName(tp.family), " t=", tp.timestep));
    const double x0 = n01(rng), eps = n01(rng);
    const double xt = NoisingMap(tp).Apply(x0, eps);
    EXPECT_NEAR(xt, tp.alpha * x0 + tp.sigma * eps, 1e-15);
    // Closed-form targets.
    EXPECT_EQ(TargetOf(tp, PredictionType::kEpsilon).Apply(x0, eps), eps);
    EXPECT_EQ(TargetOf(tp, PredictionType::kX0).Apply(x0, eps), x0);
    const double v = TargetOf(tp, PredictionType::kV).Apply(x0, eps);
    if (tp.family == ScheduleFamily::kFlow) {
      EXPECT_NEAR(v, eps - x0, 1e-15);
    } else {
      EXPECT_NEAR(v, tp.alpha * eps - tp.sigma * x0, 1e-15);
    }
    // Exact targets convert into exact targets.
    for (PredictionType from : types) {
      for (PredictionType to : types) {
        const double in = TargetOf(tp, from).Apply(x0, eps);
        const double out = ConvertPrediction(tp, from, to).Apply(xt, in);
        EXPECT_NEAR(out, TargetOf(tp, to).Apply(x0, eps), 1e-9)
            << PredictionTypeName(from) << " -> " << PredictionTypeName(to);
      }
    }
    // Errors scale by ErrorScale: perturb a v prediction and measure in every form.
    const double dv = 0.37;
    for (PredictionType to : types) {
      const LinearMap m = ConvertPrediction(tp, PredictionType::kV, to);
      const double err = m.Apply(xt, v + dv) - TargetOf(tp, to).Apply(x0, eps);
      EXPECT_NEAR(err * err, ErrorScale(tp, PredictionType::kV, to) * dv * dv, 1e-9);
    }
  }
}

TEST(ConversionTest, FlowFormulasOfTheResearchNote) {
  // x0 = x_t - sigma v, eps = x_t + (1 - sigma) v (models.md 2.6, paper.md 6).
  const TimePoint tp = NoiseSchedule::Flow(FlowScheduleConfig::Wan21()).AtFlowSigma(0.3);
  const LinearMap to_x0 = ConvertPrediction(tp, PredictionType::kV, PredictionType::kX0);
  EXPECT_EQ(to_x0.xt, 1.0);
  EXPECT_DOUBLE_EQ(to_x0.pred, -0.3);
  const LinearMap to_eps = ConvertPrediction(tp, PredictionType::kV, PredictionType::kEpsilon);
  EXPECT_EQ(to_eps.xt, 1.0);
  EXPECT_DOUBLE_EQ(to_eps.pred, 0.7);
  // DDPM v: x0 = sqrt(ab) x_t - sqrt(1 - ab) v (= scheduler.get_velocity(v, x_t, t)).
  const TimePoint d = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX5B()).At(321);
  const LinearMap dx0 = ConvertPrediction(d, PredictionType::kV, PredictionType::kX0);
  EXPECT_EQ(dx0.xt, d.alpha);
  EXPECT_EQ(dx0.pred, -d.sigma);
  // eps-MSE = abar * v-MSE (paper.md 2.3); flow: eps-MSE = (1 - sigma)^2 v-MSE.
  EXPECT_NEAR(ErrorScale(d, PredictionType::kV, PredictionType::kEpsilon), d.alpha * d.alpha,
              1e-15);
  EXPECT_NEAR(ErrorScale(tp, PredictionType::kV, PredictionType::kEpsilon), 0.49, 1e-15);
  EXPECT_NEAR(ErrorScale(tp, PredictionType::kV, PredictionType::kX0), 0.09, 1e-15);
}

TEST(PosteriorTest, MatchesConditionalGaussianAndDdpmTextbook) {
  for (const TimePoint& tp : SomePoints()) {
    SCOPED_TRACE(absl::StrCat(ScheduleFamilyName(tp.family), " t=", tp.timestep));
    const Posterior p = ForwardPosterior(tp);
    // Independent derivation: (x_s, x_t) | x0 jointly Gaussian with
    // x_s = a_s x0 + s_s e1 and x_t = (a_t / a_s) x_s + noise of variance s_t^2 - (a_t/a_s)^2
    // s_s^2.
    const double as = tp.alpha_prev, ss2 = tp.sigma_prev * tp.sigma_prev;
    const double at = tp.alpha, st2 = tp.sigma * tp.sigma;
    const double cov = (at / as) * ss2;  // Cov(x_s, x_t | x0)
    // E[x_s | x_t, x0] = a_s x0 + cov / st2 (x_t - a_t x0); Var = ss2 - cov^2 / st2.
    EXPECT_NEAR(p.xt, cov / st2, 1e-12);
    EXPECT_NEAR(p.x0, as - cov / st2 * at, 1e-12);
    EXPECT_NEAR(p.variance, ss2 - cov * cov / st2, 1e-12);
    // (x0 coefficient)^2 / variance = SNR_prev - SNR_t.
    if (tp.sigma_prev > 0 && tp.Snr() < 1e6) {
      EXPECT_NEAR(p.x0 * p.x0 / p.variance, tp.SnrPrev() - tp.Snr(),
                  1e-8 * (tp.SnrPrev() - tp.Snr()));
    }
    if (tp.family == ScheduleFamily::kDdpm) {
      // q(x_{t-1} | x_t, x0) with beta_t = 1 - abar_t / abar_{t-1}.
      const double ab = at * at, abp = as * as;
      const double beta = 1.0 - ab / abp;
      EXPECT_NEAR(p.x0, std::sqrt(abp) * beta / (1 - ab), 1e-12);
      EXPECT_NEAR(p.xt, std::sqrt(1 - beta) * (1 - abp) / (1 - ab), 1e-12);
      EXPECT_NEAR(p.variance, (1 - abp) / (1 - ab) * beta, 1e-15);
    }
  }
  // Previous point clean: the posterior is x0 itself.
  const Posterior c = ForwardPosterior(NoiseSchedule::Flow(FlowScheduleConfig::Wan21()).At(0));
  EXPECT_NEAR(c.x0, 1.0, 1e-15);
  EXPECT_EQ(c.xt, 0.0);
  EXPECT_EQ(c.variance, 0.0);
}

// ---------------------------------------------------------------------------------------------
// Training timestep sampling.

TEST(SamplerTest, NormalQuantileInvertsCdf) {
  for (double z : {-8.0, -3.0, -1.0, 0.0, 0.5, 2.0}) {
    EXPECT_NEAR(NormalQuantile(NormalCdf(z)), z, 1e-9);
  }
  // Upper tail: p = Phi(6) = 1 - 1e-9 itself only carries ~7 digits of z.
  EXPECT_NEAR(NormalQuantile(NormalCdf(6.0)), 6.0, 1e-7);
  EXPECT_NEAR(NormalCdf(1.0), 0.8413447460685429, 1e-15);
  EXPECT_TRUE(std::isinf(NormalQuantile(0.0)));
}

TEST(SamplerTest, UniformGridWithRange) {
  const NoiseSchedule d = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  TimestepSampler all(d, {});
  EXPECT_EQ(all.Sample(0.0).index, 0);
  EXPECT_EQ(all.Sample(0.9999999).index, 999);
  EXPECT_EQ(all.Sample(0.5).index, 500);
  TimestepSamplerConfig c;
  c.min_timestep = 64;
  c.max_timestep = 899;
  TimestepSampler clipped(d, c);
  EXPECT_EQ(clipped.Sample(0.0).index, 64);
  EXPECT_EQ(clipped.Sample(0.9999999).index, 899);
  // Uniform over the allowed indices: stratified u hits each index equally often.
  std::vector<int> hits(1000, 0);
  for (int k = 0; k < 836 * 4; ++k) ++hits[clipped.Sample((k + 0.5) / (836 * 4)).index];
  for (int i = 64; i <= 899; ++i) ASSERT_EQ(hits[i], 4) << i;
  EXPECT_EQ(hits[63], 0);
  // Flow: the shifted grid.
  const NoiseSchedule f = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  TimestepSampler fs(f, {});
  EXPECT_EQ(fs.Sample(0.25).sigma, f.At(250).sigma);
  c.min_timestep = 2000;
  c.max_timestep = 3000;
  EXPECT_THROW(TimestepSampler(d, c), Error);
}

TEST(SamplerTest, ContinuousFlowSampling) {
  FlowScheduleConfig fc;
  fc.shift = 1.0;
  const NoiseSchedule f = NoiseSchedule::Flow(fc);
  TimestepSamplerConfig c;
  c.sampling = TimestepSampling::kUniformSigma;
  TimestepSampler u(f, c);
  EXPECT_DOUBLE_EQ(u.Sample(0.0).sigma, 1.0);
  EXPECT_NEAR(u.Sample(0.25).sigma, 0.75, 1e-15);
  // Logit-normal(0, 1): P(sigma <= sigmoid(z0)) = Phi(z0).
  c.sampling = TimestepSampling::kLogitNormal;
  TimestepSampler ln(f, c);
  const int k = 20000;
  int below = 0;
  const double z0 = 0.7, thr = 1.0 / (1.0 + std::exp(-z0));
  for (int i = 0; i < k; ++i) below += ln.Sample((i + 0.5) / k).sigma <= thr;
  EXPECT_NEAR(static_cast<double>(below) / k, NormalCdf(z0), 2.0 / k);
  // Truncation to a timestep range, with a shift: every draw lands inside.
  FlowScheduleConfig f5;
  const NoiseSchedule g = NoiseSchedule::Flow(f5);
  c.min_timestep = 300;
  c.max_timestep = 700;
  for (TimestepSampling mode : {TimestepSampling::kLogitNormal, TimestepSampling::kUniformSigma}) {
    c.sampling = mode;
    TimestepSampler r(g, c);
    for (int i = 0; i < 1000; ++i) {
      const TimePoint tp = r.Sample(i / 1000.0);
      ASSERT_GE(tp.timestep, 300 - 1e-9);
      ASSERT_LE(tp.timestep, 700 + 1e-9);
    }
  }
  // Continuous sampling is flow only.
  c.sampling = TimestepSampling::kLogitNormal;
  EXPECT_THROW(TimestepSampler(NoiseSchedule::Ddpm(DdpmScheduleConfig{}), c), Error);
  EXPECT_THROW(ln.Sample(1.0), Error);
  EXPECT_THROW(ParseTimestepSampling("beta"), Error);
}

}  // namespace
}  // namespace sdpo
