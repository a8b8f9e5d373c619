#include "sdpo/importance.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/schedules.h"
#include "tensor/error.h"

namespace sdpo {
namespace {

void ExpectRel(double actual, double expected, double rel) {
  EXPECT_NEAR(actual, expected, rel * std::abs(expected)) << "expected " << expected;
}

// The k(t) table of paper.md 3.3 (CogVideoX schedules, step t -> t-1; 2-3 significant digits).
TEST(ImportanceTest, KlCoefficientsMatchTheResearchTable) {
  const NoiseSchedule s2 = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  const NoiseSchedule s5 = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX5B());
  struct Row {
    int t;
    double k_eps_2b, k_v_2b, k_eps_5b;
  };
  const Row rows[] = {{1, 0.524, 0.521, 0.540},       {5, 0.103, 0.101, 0.103},
                      {10, 0.052, 0.050, 0.052},      {30, 0.018, 0.017, 0.018},
                      {63, 0.0096, 0.0080, 0.0096},   {100, 0.0067, 0.0049, 0.0067},
                      {200, 0.0043, 0.0021, 0.0043},  {400, 0.00353, 0.00063, 0.00348},
                      {500, 0.0037, 0.00035, 0.0037}, {600, 0.0042, 0.00019, 0.0042},
                      {800, 0.0070, 4e-5, 0.0070},    {900, 0.0124, 1.2e-5, 0.0123},
                      {950, 0.023, 4e-6, 0.023},      {990, 0.120, 6e-7, 0.120}};
  for (const Row& r : rows) {
    SCOPED_TRACE(absl::StrCat("t=", r.t));
    ExpectRel(KlCoefficient(s2.At(r.t), PredictionType::kEpsilon), r.k_eps_2b, 0.03);
    ExpectRel(KlCoefficient(s2.At(r.t), PredictionType::kV), r.k_v_2b, 0.13);  // 1-digit entries
    ExpectRel(KlCoefficient(s5.At(r.t), PredictionType::kEpsilon), r.k_eps_5b, 0.03);
  }
  EXPECT_TRUE(std::isinf(KlCoefficient(s2.At(999), PredictionType::kEpsilon)));  // ZTSNR
  ExpectRel(KlCoefficient(s2.At(999), PredictionType::kV), 3e-8, 0.1);
}

// paper.md 3.3, Wan2.1 training grid (shift 5), by DiffSynth grid index j (our index 999 - j).
TEST(ImportanceTest, FlowKlCoefficientsMatchTheResearchNumbers) {
  const NoiseSchedule f = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  const std::pair<int, double> rows[] = {{1, 1.50},     {50, 0.021},   {400, 0.0042}, {500, 0.0040},
                                         {800, 0.0063}, {950, 0.0217}, {990, 0.119},  {998, 1.50}};
  for (const auto& [j, k] : rows) {
    SCOPED_TRACE(absl::StrCat("DiffSynth index ", j));
    ExpectRel(KlCoefficient(f.At(999 - j), PredictionType::kEpsilon), k, 0.04);
  }
  EXPECT_TRUE(std::isinf(KlCoefficient(f.At(999), PredictionType::kEpsilon)));  // sigma = 1
  EXPECT_TRUE(std::isinf(KlCoefficient(f.At(0), PredictionType::kEpsilon)));    // prev clean
}

TEST(ImportanceTest, DdpmEpsilonCoefficientClosedForm) {
  // k_eps = beta_t / (2 alpha_t (1 - abar_{t-1})), the DDPM ELBO weight, with the betas implied
  // by the (shifted, rescaled) abar.
  for (const NoiseSchedule& s : {NoiseSchedule::Ddpm(DdpmScheduleConfig{}),
                                 NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B())}) {
    const std::vector<double>& ab = s.alphas_cumprod();
    for (int t : {1, 2, 50, 333, 700, 998}) {
      const double alpha = ab[t] / ab[t - 1], beta = 1.0 - alpha;
      ExpectRel(KlCoefficient(s.At(t), PredictionType::kEpsilon),
                beta / (2.0 * alpha * (1.0 - ab[t - 1])), 1e-9);
      // k_x0 = (SNR_{t-1} - SNR_t) / 2.
      ExpectRel(KlCoefficientX0(s.At(t)), 0.5 * (ab[t - 1] / (1 - ab[t - 1]) - ab[t] / (1 - ab[t])),
                1e-12);
    }
  }
}

TEST(ImportanceTest, ParameterisationsGiveTheSameWeight) {
  const NoiseSchedule f = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  const NoiseSchedule d = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  for (const TimePoint& tp : {f.At(3), f.At(400), f.At(990), d.At(2), d.At(500), d.At(990)}) {
    const double e_v = 0.21;
    const double lw = LogImportanceWeight(tp, PredictionType::kV, e_v, 7.0);
    for (PredictionType form : {PredictionType::kEpsilon, PredictionType::kX0}) {
      const double e = e_v * ErrorScale(tp, PredictionType::kV, form);
      ExpectRel(LogImportanceWeight(tp, form, e, 7.0), lw, 1e-10);
    }
    EXPECT_LT(lw, 0.0);
    // Linear in the error and in D_eff.
    ExpectRel(LogImportanceWeight(tp, PredictionType::kV, 2 * e_v, 7.0), 2 * lw, 1e-14);
    ExpectRel(LogImportanceWeight(tp, PredictionType::kV, e_v, 14.0), 2 * lw, 1e-14);
  }
}

TEST(ImportanceTest, DegenerateSteps) {
  const NoiseSchedule d = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  // t = 0: the previous point is clean data.
  EXPECT_EQ(LogImportanceWeight(d.At(0), PredictionType::kV, 0.3), -INFINITY);
  EXPECT_EQ(LogImportanceWeight(d.At(0), PredictionType::kV, 0.0), 0.0);
  // ZTSNR t = 999: a v prediction still pins x0 (finite, tiny KL); an eps prediction does not.
  const double lw = LogImportanceWeight(d.At(999), PredictionType::kV, 0.3);
  EXPECT_TRUE(std::isfinite(lw));
  EXPECT_GT(lw, -1e-6);
  EXPECT_EQ(LogImportanceWeight(d.At(999), PredictionType::kEpsilon, 0.3), -INFINITY);
  // set_alpha_to_one = false: q(x_prev | x_t, x0) ignores x0 at t = 0, so w = 1.
  DdpmScheduleConfig c = DdpmScheduleConfig::CogVideoX2B();
  c.set_alpha_to_one = false;
  EXPECT_EQ(LogImportanceWeight(NoiseSchedule::Ddpm(c).At(0), PredictionType::kV, 0.3), 0.0);
  EXPECT_THROW(LogImportanceWeight(d.At(5), PredictionType::kV, -0.1), Error);
  EXPECT_THROW(LogImportanceWeight(d.At(5), PredictionType::kV, NAN), Error);
  EXPECT_THROW(LogImportanceWeight(d.At(5), PredictionType::kV, 0.1, 0.0), Error);
}

// E_z[log w] over x_prev ~ q(x_prev | x_t, x0) by Monte Carlo on a small Gaussian, against the
// closed form, for both families and every prediction type.
TEST(ImportanceTest, ClosedFormMatchesMonteCarlo) {
  constexpr int kDim = 3;
  constexpr int kSamples = 200000;
  std::mt19937_64 rng(11);
  std::normal_distribution<double> n01;
  const NoiseSchedule f = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  const NoiseSchedule d = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  struct Case {
    TimePoint tp;
    PredictionType type;
    double kl;  // size of the prediction error, as the KL it produces
  };
  const Case cases[] = {
      {f.At(5), PredictionType::kV, 0.3},         {f.At(500), PredictionType::kV, 1.0},
      {f.At(990), PredictionType::kEpsilon, 0.1}, {f.AtFlowSigma(0.3), PredictionType::kX0, 2.0},
      {d.At(3), PredictionType::kV, 0.5},         {d.At(400), PredictionType::kEpsilon, 1.0},
      {d.At(900), PredictionType::kV, 0.2},       {d.At(60), PredictionType::kX0, 3.0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(ScheduleFamilyName(c.tp.family), " t=", c.tp.timestep, " ",
                              PredictionTypeName(c.type)));
    // Error direction at random, length such that the whole-sample KL is c.kl.
    double dir[kDim], dir_mse = 0.0;
    for (int k = 0; k < kDim; ++k) {
      dir[k] = n01(rng);
      dir_mse += dir[k] * dir[k] / kDim;
    }
    const double unit_kl = -LogImportanceWeight(c.tp, c.type, dir_mse, kDim);
    const double scale = std::sqrt(c.kl / unit_kl);
    double x0[kDim], eps[kDim], xt[kDim], x0_hat[kDim], mse = 0.0;
    const LinearMap to_x0 = ConvertPrediction(c.tp, c.type, PredictionType::kX0);
    for (int k = 0; k < kDim; ++k) {
      x0[k] = n01(rng);
      eps[k] = n01(rng);
      xt[k] = NoisingMap(c.tp).Apply(x0[k], eps[k]);
      const double err = scale * dir[k];
      const double pred = TargetOf(c.tp, c.type).Apply(x0[k], eps[k]) + err;
      x0_hat[k] = to_x0.Apply(xt[k], pred);
      mse += err * err / kDim;
    }
    // Whole-sample weight: effective_elements = D.
    const double closed = LogImportanceWeight(c.tp, c.type, mse, kDim);
    const Posterior q = ForwardPosterior(c.tp);
    const double sd = std::sqrt(q.variance);
    double sum = 0.0, sum2 = 0.0;
    for (int n = 0; n < kSamples; ++n) {
      double log_w = 0.0;  // log N(x; mu_theta, var) - log N(x; mu_q, var)
      for (int k = 0; k < kDim; ++k) {
        const double mu_q = q.xt * xt[k] + q.x0 * x0[k];
        const double mu_p = q.xt * xt[k] + q.x0 * x0_hat[k];
        const double x = mu_q + sd * n01(rng);
        log_w += ((x - mu_q) * (x - mu_q) - (x - mu_p) * (x - mu_p)) / (2.0 * q.variance);
      }
      sum += log_w;
      sum2 += log_w * log_w;
    }
    const double mean = sum / kSamples;
    const double se = std::sqrt(std::max(0.0, sum2 / kSamples - mean * mean) / kSamples);
    EXPECT_NEAR(-closed, c.kl, 1e-9 * c.kl);
    EXPECT_NEAR(mean, closed, 5.0 * se + 1e-12) << "closed " << closed << " mc " << mean;
  }
}

// With a fixed eps-error across t, w(t) is low at both ends and highest mid-schedule
// (paper.md 3.1 / 3.3), for both families.
TEST(ImportanceTest, ProfileIsLowAtBothEndsAndHighestInTheMiddle) {
  for (const NoiseSchedule& s : {NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B()),
                                 NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX5B()),
                                 NoiseSchedule::Flow(FlowScheduleConfig::Wan21())}) {
    SCOPED_TRACE(s.Describe());
    const int n = s.num_steps();
    std::vector<double> lw(n);
    for (int i = 0; i < n; ++i) lw[i] = LogImportanceWeight(s.At(i), PredictionType::kEpsilon, 1.0);
    const int best = static_cast<int>(std::max_element(lw.begin(), lw.end()) - lw.begin());
    EXPECT_GT(best, n / 5);
    EXPECT_LT(best, 4 * n / 5);
    auto mean = [&](int lo, int hi) {
      double m = 0.0;
      for (int i = lo; i < hi; ++i) m += std::max(lw[i], -50.0);
      return m / (hi - lo);
    };
    const double middle = mean(2 * n / 5, 3 * n / 5);
    EXPECT_LT(mean(0, n / 20), 2.0 * middle);  // both ends: at least twice as negative
    EXPECT_LT(mean(n - n / 20, n), 2.0 * middle);
    // Monotone towards both ends, away from a flat middle.
    EXPECT_LT(lw[1], lw[n / 10]);
    EXPECT_LT(lw[n - 2], lw[n - n / 10]);
    // The per-element weight falls below tau = 0.9 only at the extreme steps (paper.md 3.3).
    EXPECT_LT(std::exp(lw[1]), 0.9);
    EXPECT_GT(std::exp(lw[n / 2]), 0.99);
  }
}

TEST(ImportanceTest, CalibrationHitsTauAtTheBoundary) {
  const NoiseSchedule s = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  const double d_eff = CalibrateEffectiveElements(s.At(63), PredictionType::kEpsilon, 0.5, 0.9);
  EXPECT_NEAR(std::exp(LogImportanceWeight(s.At(63), PredictionType::kEpsilon, 0.5, d_eff)), 0.9,
              1e-12);
  // Then the mask (w < 0.9) covers the low end up to t = 63, not the middle.
  EXPECT_LT(std::exp(LogImportanceWeight(s.At(40), PredictionType::kEpsilon, 0.5, d_eff)), 0.9);
  EXPECT_GT(std::exp(LogImportanceWeight(s.At(500), PredictionType::kEpsilon, 0.5, d_eff)), 0.9);
  EXPECT_THROW(CalibrateEffectiveElements(s.At(63), PredictionType::kEpsilon, 0.5, 1.0), Error);
  EXPECT_THROW(CalibrateEffectiveElements(s.At(0), PredictionType::kEpsilon, 0.5, 0.9), Error);
}

}  // namespace
}  // namespace sdpo

namespace sdpo {
namespace {

// One Gaussian case: x0, eps, a prediction error `err` in `type`, the posterior, and z.
struct Draw {
  static constexpr int kDim = 3;
  double x0[kDim], xt[kDim], pred_minus_target[kDim], mu_q[kDim], mu_p[kDim];
  double mse = 0.0, sd = 0.0, variance = 0.0;
};

Draw MakeDraw(const TimePoint& tp, PredictionType type, std::mt19937_64* rng, double scale) {
  std::normal_distribution<double> n01;
  Draw d;
  const LinearMap to_x0 = ConvertPrediction(tp, type, PredictionType::kX0);
  const Posterior q = ForwardPosterior(tp);
  d.variance = q.variance;
  d.sd = std::sqrt(q.variance);
  for (int k = 0; k < Draw::kDim; ++k) {
    d.x0[k] = n01(*rng);
    const double eps = n01(*rng);
    d.xt[k] = NoisingMap(tp).Apply(d.x0[k], eps);
    d.pred_minus_target[k] = scale * n01(*rng);
    const double pred = TargetOf(tp, type).Apply(d.x0[k], eps) + d.pred_minus_target[k];
    d.mu_q[k] = q.xt * d.xt[k] + q.x0 * d.x0[k];
    d.mu_p[k] = q.xt * d.xt[k] + q.x0 * to_x0.Apply(d.xt[k], pred);
    d.mse += d.pred_minus_target[k] * d.pred_minus_target[k] / Draw::kDim;
  }
  return d;
}

// (i) At one drawn x_prev = mu_q + sd z the reading is the Gaussian log ratio itself (whole
// sample: effective_elements = D), and over many draws its mean is the closed form; single draws
// exceed one (log w > 0).
TEST(ImportanceTest, SampledWeightIsTheRatioAtTheDrawAndAveragesToTheClosedForm) {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> n01;
  const NoiseSchedule f = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  const NoiseSchedule d = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  const std::pair<TimePoint, PredictionType> cases[] = {{f.At(500), PredictionType::kV},
                                                        {f.At(40), PredictionType::kEpsilon},
                                                        {d.At(400), PredictionType::kV},
                                                        {d.At(60), PredictionType::kX0},
                                                        {f.AtFlowSigma(0.3), PredictionType::kX0}};
  for (const auto& [tp, type] : cases) {
    SCOPED_TRACE(absl::StrCat(ScheduleFamilyName(tp.family), " t=", tp.timestep, " ",
                              PredictionTypeName(type)));
    const Draw g = MakeDraw(tp, type, &rng, 0.05);
    const double closed = LogImportanceWeight(tp, type, g.mse, Draw::kDim);
    constexpr int kSamples = 100000;
    double sum = 0.0, sum2 = 0.0;
    int above_one = 0;
    for (int n = 0; n < kSamples; ++n) {
      double direct = 0.0, noise_dot = 0.0;
      for (int k = 0; k < Draw::kDim; ++k) {
        const double z = n01(rng);
        const double x = g.mu_q[k] + g.sd * z;
        direct += ((x - g.mu_q[k]) * (x - g.mu_q[k]) - (x - g.mu_p[k]) * (x - g.mu_p[k])) /
                  (2.0 * g.variance);
        noise_dot += z * g.pred_minus_target[k] / Draw::kDim;
      }
      const double sampled = SampledLogImportanceWeight(tp, type, g.mse, noise_dot, Draw::kDim);
      if (n < 100) {
        EXPECT_NEAR(sampled, direct, 1e-9 * (1.0 + std::abs(direct)));
      }
      sum += sampled;
      sum2 += sampled * sampled;
      above_one += sampled > 0.0;
    }
    const double mean = sum / kSamples;
    const double se = std::sqrt(std::max(0.0, sum2 / kSamples - mean * mean) / kSamples);
    EXPECT_NEAR(mean, closed, 5.0 * se + 1e-12);
    EXPECT_GT(above_one, 0);
    // No fluctuation: the closed form exactly.
    EXPECT_EQ(SampledLogImportanceWeight(tp, type, g.mse, 0.0, Draw::kDim), closed);
  }
  EXPECT_THROW(SampledLogImportanceWeight(f.At(5), PredictionType::kV, 0.1, NAN), Error);
  // Degenerate step (previous point clean): -inf for a nonzero error, as the closed form.
  EXPECT_EQ(SampledLogImportanceWeight(f.At(0), PredictionType::kV, 0.1, 0.3), -INFINITY);
}

// (ii) E over x_prev ~ q of log p_theta(x_prev) / p_gen(x_prev) against the closed form
// D k (e_gen - e_theta), by Monte Carlo; it is positive when the policy fits better.
TEST(ImportanceTest, GeneratorRatioMatchesMonteCarlo) {
  std::mt19937_64 rng(9);
  std::normal_distribution<double> n01;
  const NoiseSchedule f = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  const NoiseSchedule d = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  const std::pair<TimePoint, PredictionType> cases[] = {{f.At(500), PredictionType::kV},
                                                        {f.At(900), PredictionType::kV},
                                                        {d.At(300), PredictionType::kEpsilon},
                                                        {d.At(700), PredictionType::kV}};
  for (const auto& [tp, type] : cases) {
    SCOPED_TRACE(absl::StrCat(ScheduleFamilyName(tp.family), " t=", tp.timestep));
    const Draw pol = MakeDraw(tp, type, &rng, 0.05);
    // The generator: same x0 and x_t, a larger error.
    Draw gen = pol;
    const LinearMap to_x0 = ConvertPrediction(tp, type, PredictionType::kX0);
    const Posterior q = ForwardPosterior(tp);
    gen.mse = 0.0;
    for (int k = 0; k < Draw::kDim; ++k) {
      gen.pred_minus_target[k] = 3.0 * pol.pred_minus_target[k] + 0.02 * n01(rng);
      gen.mu_p[k] = pol.mu_q[k] + q.x0 * to_x0.pred * gen.pred_minus_target[k];
      gen.mse += gen.pred_minus_target[k] * gen.pred_minus_target[k] / Draw::kDim;
    }
    const double closed = GeneratorLogRatio(tp, type, pol.mse, gen.mse, Draw::kDim);
    EXPECT_NEAR(closed, Draw::kDim * KlCoefficient(tp, type) * (gen.mse - pol.mse),
                1e-12 * std::abs(closed));
    EXPECT_GT(closed, 0.0);
    constexpr int kSamples = 100000;
    double sum = 0.0, sum2 = 0.0;
    for (int n = 0; n < kSamples; ++n) {
      double lr = 0.0;
      for (int k = 0; k < Draw::kDim; ++k) {
        const double x = pol.mu_q[k] + pol.sd * n01(rng);
        lr += ((x - gen.mu_p[k]) * (x - gen.mu_p[k]) - (x - pol.mu_p[k]) * (x - pol.mu_p[k])) /
              (2.0 * pol.variance);
      }
      sum += lr;
      sum2 += lr * lr;
    }
    const double mean = sum / kSamples;
    const double se = std::sqrt(std::max(0.0, sum2 / kSamples - mean * mean) / kSamples);
    EXPECT_NEAR(mean, closed, 5.0 * se + 1e-12);
  }
  EXPECT_EQ(GeneratorLogRatio(f.At(500), PredictionType::kV, 0.2, 0.2), 0.0);
  EXPECT_EQ(GeneratorLogRatio(f.At(0), PredictionType::kV, 0.2, 0.3), -INFINITY);
  EXPECT_THROW(GeneratorLogRatio(f.At(5), PredictionType::kV, 0.2, -1.0), Error);
}

// (iii) The curve averages to one over the training grid, is above one mid-schedule and below
// one at the ends for a flat error profile, and fills unmeasured buckets from the nearest one.
TEST(ImportanceTest, TimestepCurveIsSelfNormalisedOverTheGrid) {
  const NoiseSchedule s = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> profile = {0.05, nan, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05};
  const TimestepWeightCurve c =
      TimestepWeightCurve::FromErrorProfile(s, PredictionType::kEpsilon, profile, 1000.0, 20.0);
  double mean = 0.0;
  for (int i = 0; i < s.num_steps(); ++i) mean += std::exp(c.LogWeight(s.At(i))) / s.num_steps();
  EXPECT_NEAR(mean, 1.0, 1e-12);
  EXPECT_GT(c.LogWeight(s.At(500)), 0.0);
  EXPECT_LT(c.LogWeight(s.At(2)), 0.0);
  EXPECT_LT(c.LogWeight(s.At(998)), 0.0);
  EXPECT_EQ(c.bucket_mse()[1], 0.05);  // nearest measured bucket
  // Hand-computed: log w(t) = -D_eff k(t) mse - log Z.
  EXPECT_NEAR(
      c.LogWeight(s.At(500)),
      -20.0 * KlCoefficient(s.At(500), PredictionType::kEpsilon) * 0.05 - c.log_normaliser(),
      1e-12);
  EXPECT_THROW(
      TimestepWeightCurve::FromErrorProfile(s, PredictionType::kV, {nan, nan}, 1000.0, 1.0), Error);
  EXPECT_THROW(TimestepWeightCurve::FromErrorProfile(s, PredictionType::kV, {-1.0}, 1000.0, 1.0),
               Error);
}

}  // namespace
}  // namespace sdpo
