#include "sdpo/objectives.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "sdpo/importance.h"
#include "models/schedules.h"
#include "tensor/error.h"

namespace sdpo {
namespace {

constexpr double kTol = 1e-12;

// A mid-schedule DDPM point: the objectives only read its timestep when weights are given.
TimePoint Mid() { return NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B()).At(500); }

// Pair 1: e_pol_w 0.30, e_ref_w 0.50, e_pol_l 0.60, e_ref_l 0.45 -> d_w = -0.20, d_l = 0.15.
// Pair 2: e_pol_w 0.50, e_ref_w 0.45, e_pol_l 0.50, e_ref_l 0.52 -> d_w = 0.05, d_l = -0.02.
PairBatch OnePair() {
  PairBatch b;
  b.timepoints = {Mid()};
  b.policy_winner = {0.30};
  b.reference_winner = {0.50};
  b.policy_loser = {0.60};
  b.reference_loser = {0.45};
  return b;
}

PairBatch TwoPairs() {
  PairBatch b = OnePair();
  b.timepoints.push_back(Mid());
  b.policy_winner.push_back(0.50);
  b.reference_winner.push_back(0.45);
  b.policy_loser.push_back(0.50);
  b.reference_loser.push_back(0.52);
  return b;
}

void SetWeights(PairBatch* b, std::vector<double> w_w, std::vector<double> w_l) {
  b->log_weight_winner.clear();
  b->log_weight_loser.clear();
  for (double w : w_w) b->log_weight_winner.push_back(std::log(w));
  for (double w : w_l) b->log_weight_loser.push_back(std::log(w));
}

ObjectiveConfig Cfg(ObjectiveKind kind, double beta = 2.0) {
  ObjectiveConfig c;
  c.kind = kind;
  c.beta = beta;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Hand-computed values (beta = 2). Pair 1: z = d_l - d_w = 0.35, logit u = 0.7.

TEST(ObjectivesTest, DiffusionDpoSigmoidHandComputed) {
  const ObjectiveResult r = EvaluateObjective(Cfg(ObjectiveKind::kDiffusionDpo), OnePair());
  // loss = log(1 + exp(-0.7)); d/de_w = sigmoid(-0.7) * beta; d/de_l = -that.
  EXPECT_NEAR(r.loss, 0.4031860488854579, kTol);
  EXPECT_NEAR(r.pairs[0].logit, 0.7, kTol);
  EXPECT_NEAR(r.pairs[0].margin, 0.7, kTol);
  EXPECT_NEAR(r.pairs[0].reward_winner, 0.4, kTol);  // -beta * d_w
  EXPECT_NEAR(r.pairs[0].reward_loser, -0.3, kTol);  // -beta * d_l
  EXPECT_NEAR(r.grad_policy_winner[0], 0.6636244556636678, kTol);
  EXPECT_NEAR(r.grad_policy_loser[0], -0.6636244556636678, kTol);
  EXPECT_EQ(r.num_active, 1);
}

TEST(ObjectivesTest, DiffusionDpoAveragesOverPairs) {
  const ObjectiveResult r = EvaluateObjective(Cfg(ObjectiveKind::kDiffusionDpo), TwoPairs());
  // Pair 2: u = 2 * (-0.02 - 0.05) = -0.14. loss = mean of the two softplus(-u).
  EXPECT_NEAR(r.pairs[1].logit, -0.14, kTol);
  EXPECT_NEAR(r.loss, 0.5843906156113047, kTol);
  EXPECT_NEAR(r.grad_policy_winner[0], 0.3318122278318339, kTol);
  EXPECT_NEAR(r.grad_policy_winner[1], 0.5349429451582145, kTol);
  EXPECT_NEAR(r.grad_policy_loser[1], -0.5349429451582145, kTol);
}

TEST(ObjectivesTest, HingeAndIpoHandComputed) {
  ObjectiveConfig c = Cfg(ObjectiveKind::kDiffusionDpo);
  c.loss = LossShape::kHinge;
  ObjectiveResult r = EvaluateObjective(c, OnePair());
  EXPECT_NEAR(r.loss, 0.3, kTol);                   // max(0, 1 - 0.7)
  EXPECT_NEAR(r.grad_policy_winner[0], 2.0, kTol);  // -1 * (-beta)
  EXPECT_NEAR(r.grad_policy_loser[0], -2.0, kTol);

  c.loss = LossShape::kIpo;
  r = EvaluateObjective(c, OnePair());
  EXPECT_NEAR(r.loss, 0.01, kTol);                   // (0.35 - 1 / (2 beta))^2 = 0.1^2
  EXPECT_NEAR(r.grad_policy_winner[0], -0.2, kTol);  // 2 * 0.1 * dz/de_w = 0.2 * (-1)
  EXPECT_NEAR(r.grad_policy_loser[0], 0.2, kTol);

  // Hinge beyond the margin: zero loss and zero gradient.
  c.loss = LossShape::kHinge;
  c.beta = 10.0;  // u = 3.5
  r = EvaluateObjective(c, OnePair());
  EXPECT_EQ(r.loss, 0.0);
  EXPECT_EQ(r.grad_policy_winner[0], 0.0);
}

TEST(ObjectivesTest, ReferenceAtPolicyGivesLog2) {
  // paper.md sanity check 1: theta = ref -> logit 0, loss log 2, accuracy 1/2 (ties).
  PairBatch b = OnePair();
  b.policy_winner = b.reference_winner;
  b.policy_loser = b.reference_loser;
  for (ObjectiveKind k :
       {ObjectiveKind::kDiffusionDpo, ObjectiveKind::kDpoCm, ObjectiveKind::kSdpo}) {
    ObjectiveConfig c = Cfg(k);
    c.tau = 0.0;
    const ObjectiveResult r = EvaluateObjective(c, b);
    EXPECT_NEAR(r.loss, std::log(2.0), kTol) << ObjectiveKindName(k);
    EXPECT_EQ(r.pairs[0].logit, 0.0);
  }
}

TEST(ObjectivesTest, SdpoReadingAHandComputed) {
  // w_w = 1.1 (inside [0.8, 1.2]), w_l = 0.5 -> clipped to 0.8.
  // z = 0.8 * 0.15 - 1.1 * (-0.20) = 0.34, u = 0.68.
  PairBatch b = OnePair();
  SetWeights(&b, {1.1}, {0.5});
  ObjectiveConfig c = Cfg(ObjectiveKind::kSdpo);
  c.sdpo_use_mask = false;
  const ObjectiveResult r = EvaluateObjective(c, b);
  EXPECT_NEAR(r.pairs[0].coef_winner, 1.1, kTol);
  EXPECT_NEAR(r.pairs[0].coef_loser, 0.8, kTol);
  EXPECT_NEAR(r.pairs[0].logit, 0.68, kTol);
  EXPECT_NEAR(r.pairs[0].margin, 0.7, kTol);  // unweighted
  EXPECT_NEAR(r.loss, 0.40986673496366216, kTol);
  EXPECT_NEAR(r.grad_policy_winner[0], 0.7397748657104241, kTol);  // sigmoid(-u) beta c_w
  EXPECT_NEAR(r.grad_policy_loser[0], -0.5380180841530356, kTol);  // -sigmoid(-u) beta c_l
  EXPECT_EQ(r.num_weights_clipped, 1);
  EXPECT_EQ(r.num_weights_to_clip, 2);
}

TEST(ObjectivesTest, SdpoReadingBHandComputed) {
  PairBatch b = OnePair();
  SetWeights(&b, {1.1}, {0.5});
  ObjectiveConfig c = Cfg(ObjectiveKind::kSdpo);
  c.sdpo_use_mask = false;
  c.sdpo_reading = SdpoReading::kLossLevel;
  // Product: clip(0.55) = 0.8 times the Diffusion-DPO loss.
  ObjectiveResult r = EvaluateObjective(c, b);
  EXPECT_NEAR(r.pairs[0].pair_weight, 0.8, kTol);
  EXPECT_NEAR(r.pairs[0].logit, 0.7, kTol);
  EXPECT_NEAR(r.loss, 0.32254883910836635, kTol);
  EXPECT_NEAR(r.grad_policy_winner[0], 0.5308995645309342, kTol);
  // Each: clip(1.1) * clip(0.5) = 0.88.
  c.loss_weight_clip = LossWeightClip::kEach;
  r = EvaluateObjective(c, b);
  EXPECT_NEAR(r.pairs[0].pair_weight, 0.88, kTol);
  EXPECT_NEAR(r.loss, 0.354803723019203, kTol);
  EXPECT_NEAR(r.grad_policy_winner[0], 0.5839895209840277, kTol);
}

TEST(ObjectivesTest, SdpoReadingCHandComputed) {
  // Weights (1.1, 0.5) and (0.9, 0.7): batch mean 0.8, normalised 1.375 -> 1.2, 0.625 -> 0.8,
  // 1.125, 0.875.
  PairBatch b = TwoPairs();
  SetWeights(&b, {1.1, 0.9}, {0.5, 0.7});
  ObjectiveConfig c = Cfg(ObjectiveKind::kSdpo);
  c.sdpo_use_mask = false;
  c.sdpo_reading = SdpoReading::kSelfNormalized;
  const ObjectiveResult r = EvaluateObjective(c, b);
  EXPECT_NEAR(r.pairs[0].coef_winner, 1.2, kTol);
  EXPECT_NEAR(r.pairs[0].coef_loser, 0.8, kTol);
  EXPECT_NEAR(r.pairs[1].coef_winner, 1.125, kTol);
  EXPECT_NEAR(r.pairs[1].coef_loser, 0.875, kTol);
  EXPECT_NEAR(r.loss, 0.5831041485382789, kTol);
  EXPECT_NEAR(r.grad_policy_winner[0], 0.39287157951868745, kTol);
  EXPECT_NEAR(r.grad_policy_loser[1], -0.4697072537403577, kTol);
}

TEST(ObjectivesTest, DpoCmMaskHandComputed) {
  // Pair 1 weights (0.95, 0.92): kept; pair 2 (0.5, 0.99): masked. Loss = pair 1 alone.
  PairBatch b = TwoPairs();
  SetWeights(&b, {0.95, 0.5}, {0.92, 0.99});
  ObjectiveConfig c = Cfg(ObjectiveKind::kDpoCm);
  ObjectiveResult r = EvaluateObjective(c, b);
  EXPECT_TRUE(r.pairs[0].active);
  EXPECT_FALSE(r.pairs[1].active);
  EXPECT_EQ(r.num_active, 1);
  EXPECT_NEAR(r.loss, 0.4031860488854579, kTol);
  EXPECT_NEAR(r.grad_policy_winner[0], 0.6636244556636678, kTol);
  EXPECT_EQ(r.grad_policy_winner[1], 0.0);
  EXPECT_EQ(r.grad_policy_loser[1], 0.0);

  // Product rule: 0.95 * 0.92 = 0.874 < 0.9 masks pair 1 too; nothing left -> loss 0.
  c.mask_rule = MaskRule::kProduct;
  r = EvaluateObjective(c, b);
  EXPECT_EQ(r.num_active, 0);
  EXPECT_EQ(r.loss, 0.0);
  // Mean rule: 0.935 kept, 0.745 masked.
  c.mask_rule = MaskRule::kMean;
  r = EvaluateObjective(c, b);
  EXPECT_TRUE(r.pairs[0].active);
  EXPECT_FALSE(r.pairs[1].active);
}

TEST(ObjectivesTest, DpoCmTimestepRangeClipping) {
  // C1: a pair outside [min, max] is masked whatever its weights.
  const NoiseSchedule s = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  PairBatch b = TwoPairs();
  b.timepoints = {s.At(30), s.At(500)};
  SetWeights(&b, {1.0, 1.0}, {1.0, 1.0});
  ObjectiveConfig c = Cfg(ObjectiveKind::kDpoCm);
  c.min_timestep = 64;
  ObjectiveResult r = EvaluateObjective(c, b);
  EXPECT_FALSE(r.pairs[0].active);
  EXPECT_TRUE(r.pairs[1].active);
  // Only under C1: with masking alone the range is ignored.
  c.cm_clip = CmClip::kNone;
  r = EvaluateObjective(c, b);
  EXPECT_TRUE(r.pairs[0].active);
}

TEST(ObjectivesTest, DpoCmWeightAndLogitClipping) {
  PairBatch b = OnePair();
  SetWeights(&b, {1.1}, {0.5});
  ObjectiveConfig c = Cfg(ObjectiveKind::kDpoCm);
  c.tau = 0.0;
  c.cm_clip = CmClip::kWeightClip;  // C2: pair weight clip(1.1) * clip(0.5) = 0.88
  ObjectiveResult r = EvaluateObjective(c, b);
  EXPECT_NEAR(r.pairs[0].pair_weight, 0.88, kTol);
  EXPECT_NEAR(r.loss, 0.354803723019203, kTol);

  c.cm_clip = CmClip::kLogitClip;  // C3: |u| = 0.7 clamped to 0.5, zero gradient
  c.logit_clip = 0.5;
  r = EvaluateObjective(c, b);
  EXPECT_NEAR(r.pairs[0].logit, 0.5, kTol);
  EXPECT_NEAR(r.loss, 0.4740769841801067, kTol);
  EXPECT_EQ(r.grad_policy_winner[0], 0.0);
  c.logit_clip = 5.0;  // inside the clamp: plain Diffusion-DPO
  r = EvaluateObjective(c, b);
  EXPECT_NEAR(r.loss, 0.4031860488854579, kTol);
}

TEST(ObjectivesTest, DpoErrorFormRescalesTheDifferences) {
  // v-MSE errors on CogVideoX: eps form multiplies every error by abar_t.
  const NoiseSchedule s = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  PairBatch b = OnePair();
  b.timepoints = {s.At(300)};
  ObjectiveConfig c = Cfg(ObjectiveKind::kDiffusionDpo);
  c.dpo_error_form = DpoErrorForm::kEpsilon;
  const double ab = s.alphas_cumprod()[300];
  const ObjectiveResult r = EvaluateObjective(c, b);
  EXPECT_NEAR(r.pairs[0].logit, 0.7 * ab, kTol);
  EXPECT_NEAR(r.grad_policy_winner[0], 2.0 * ab / (1.0 + std::exp(0.7 * ab)), kTol);
}

// ---------------------------------------------------------------------------------------------
// Equivalences.

PairBatch RandomBatch(std::mt19937_64* rng, int n, const NoiseSchedule& s) {
  std::uniform_real_distribution<double> err(0.05, 1.5);
  std::uniform_int_distribution<int> idx(1, s.num_steps() - 2);
  PairBatch b;
  for (int i = 0; i < n; ++i) {
    b.timepoints.push_back(s.At(idx(*rng)));
    b.policy_winner.push_back(err(*rng));
    b.policy_loser.push_back(err(*rng));
    b.reference_winner.push_back(err(*rng));
    b.reference_loser.push_back(err(*rng));
  }
  return b;
}

void ExpectSameResult(const ObjectiveResult& a, const ObjectiveResult& b) {
  EXPECT_EQ(a.loss, b.loss);
  ASSERT_EQ(a.grad_policy_winner.size(), b.grad_policy_winner.size());
  for (size_t i = 0; i < a.grad_policy_winner.size(); ++i) {
    EXPECT_EQ(a.grad_policy_winner[i], b.grad_policy_winner[i]) << i;
    EXPECT_EQ(a.grad_policy_loser[i], b.grad_policy_loser[i]) << i;
  }
}

TEST(ObjectivesTest, SdpoWithUnitWeightsAndNoMaskEqualsDiffusionDpo) {
  std::mt19937_64 rng(1);
  const NoiseSchedule s = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  PairBatch b = RandomBatch(&rng, 16, s);
  const ObjectiveResult dpo = EvaluateObjective(Cfg(ObjectiveKind::kDiffusionDpo, 3.0), b);
  b.log_weight_winner.assign(16, 0.0);
  b.log_weight_loser.assign(16, 0.0);
  for (SdpoReading reading :
       {SdpoReading::kInsideLogit, SdpoReading::kLossLevel, SdpoReading::kSelfNormalized}) {
    for (LossShape shape : {LossShape::kSigmoid, LossShape::kHinge, LossShape::kIpo}) {
      ObjectiveConfig c = Cfg(ObjectiveKind::kSdpo, 3.0);
      c.sdpo_use_mask = false;
      c.sdpo_reading = reading;
      c.loss = shape;
      ObjectiveConfig d = Cfg(ObjectiveKind::kDiffusionDpo, 3.0);
      d.loss = shape;
      SCOPED_TRACE(DescribeObjectiveConfig(c));
      ExpectSameResult(EvaluateObjective(c, b), EvaluateObjective(d, b));
    }
  }
  ObjectiveConfig c = Cfg(ObjectiveKind::kSdpo, 3.0);
  c.sdpo_use_mask = false;
  ExpectSameResult(EvaluateObjective(c, b), dpo);
}

TEST(ObjectivesTest, DpoCmWithTauZeroEqualsDiffusionDpo) {
  std::mt19937_64 rng(2);
  for (const NoiseSchedule& s : {NoiseSchedule::Flow(FlowScheduleConfig::Wan21()),
                                 NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B())}) {
    PairBatch b = RandomBatch(&rng, 16, s);
    b.timepoints[0] = s.At(0);  // degenerate step: w = 0 still passes tau = 0
    const ObjectiveResult dpo = EvaluateObjective(Cfg(ObjectiveKind::kDiffusionDpo), b);
    for (CmClip clip : {CmClip::kTimestepRange, CmClip::kNone}) {
      ObjectiveConfig c = Cfg(ObjectiveKind::kDpoCm);
      c.tau = 0.0;
      c.cm_clip = clip;
      c.effective_elements = 100.0;
      const ObjectiveResult cm = EvaluateObjective(c, b);
      EXPECT_EQ(cm.num_active, 16);
      ExpectSameResult(cm, dpo);
    }
  }
}

TEST(ObjectivesTest, ClosedFormWeightsComeFromThePolicyErrors) {
  const NoiseSchedule s = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX5B());
  PairBatch b = OnePair();
  b.timepoints = {s.At(700)};
  ObjectiveConfig c = Cfg(ObjectiveKind::kSdpo);
  c.effective_elements = 30.0;
  const ObjectiveResult r = EvaluateObjective(c, b);
  EXPECT_DOUBLE_EQ(r.pairs[0].log_weight_winner,
                   LogImportanceWeight(s.At(700), PredictionType::kV, 0.30, 30.0));
  EXPECT_DOUBLE_EQ(r.pairs[0].log_weight_loser,
                   LogImportanceWeight(s.At(700), PredictionType::kV, 0.60, 30.0));
}

// ---------------------------------------------------------------------------------------------
// Gradients.

double LossAt(const ObjectiveConfig& c, PairBatch b, bool winner, size_t i, double delta) {
  (winner ? b.policy_winner : b.policy_loser)[i] += delta;
  return EvaluateObjective(c, b).loss;
}

std::vector<ObjectiveConfig> AllReadings() {
  std::vector<ObjectiveConfig> out;
  for (LossShape shape : {LossShape::kSigmoid, LossShape::kHinge, LossShape::kIpo}) {
    ObjectiveConfig d = Cfg(ObjectiveKind::kDiffusionDpo, 1.7);
    d.loss = shape;
    out.push_back(d);
    for (CmClip clip :
         {CmClip::kNone, CmClip::kTimestepRange, CmClip::kWeightClip, CmClip::kLogitClip}) {
      for (MaskRule rule : {MaskRule::kBoth, MaskRule::kProduct, MaskRule::kMean}) {
        ObjectiveConfig c = Cfg(ObjectiveKind::kDpoCm, 1.7);
        c.loss = shape;
        c.cm_clip = clip;
        c.mask_rule = rule;
        c.min_timestep = 100;
        c.logit_clip = 0.6;
        out.push_back(c);
      }
    }
    for (SdpoReading reading :
         {SdpoReading::kInsideLogit, SdpoReading::kLossLevel, SdpoReading::kSelfNormalized}) {
      for (bool mask : {false, true}) {
        for (LossWeightClip lwc : {LossWeightClip::kProduct, LossWeightClip::kEach}) {
          ObjectiveConfig c = Cfg(ObjectiveKind::kSdpo, 1.7);
          c.loss = shape;
          c.sdpo_reading = reading;
          c.sdpo_use_mask = mask;
          c.loss_weight_clip = lwc;
          c.eps = 0.15;
          out.push_back(c);
        }
      }
    }
  }
  return out;
}

TEST(ObjectivesTest, GradientsMatchFiniteDifferencesForEveryReading) {
  std::mt19937_64 rng(3);
  const NoiseSchedule s = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  std::uniform_real_distribution<double> logw(-0.4, 0.3);
  int checked = 0;
  for (const ObjectiveConfig& base : AllReadings()) {
    for (DpoErrorForm form : {DpoErrorForm::kNative, DpoErrorForm::kEpsilon}) {
      ObjectiveConfig c = base;
      c.dpo_error_form = form;
      SCOPED_TRACE(DescribeObjectiveConfig(c));
      PairBatch b = RandomBatch(&rng, 6, s);
      // Frozen (given) weights: finite differences then see exactly what the analytic gradient
      // differentiates.
      for (size_t i = 0; i < b.size(); ++i) {
        b.log_weight_winner.push_back(logw(rng));
        b.log_weight_loser.push_back(logw(rng));
      }
      const ObjectiveResult r = EvaluateObjective(c, b);
      const double h = 1e-6;
      for (size_t i = 0; i < b.size(); ++i) {
        for (bool winner : {true, false}) {
          const double fd = (LossAt(c, b, winner, i, h) - LossAt(c, b, winner, i, -h)) / (2 * h);
          const double an = (winner ? r.grad_policy_winner : r.grad_policy_loser)[i];
          EXPECT_NEAR(an, fd, 1e-6 * std::max(1.0, std::abs(fd)))
              << (winner ? "winner " : "loser ") << i;
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 1000);
}

TEST(ObjectivesTest, NoGradientFlowsThroughTheImportanceWeights) {
  // Closed-form weights depend on the policy errors; the analytic gradient must equal the
  // finite difference with the weights frozen, and differ from the one that lets them move.
  const NoiseSchedule s = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  PairBatch b = OnePair();
  b.timepoints = {s.At(400)};
  for (SdpoReading reading : {SdpoReading::kInsideLogit, SdpoReading::kLossLevel}) {
    ObjectiveConfig c = Cfg(ObjectiveKind::kSdpo);
    c.sdpo_use_mask = false;
    c.sdpo_reading = reading;
    c.effective_elements = 300.0;  // w ~ 0.9: inside the clip range, so w moves with e_pol
    c.eps = 0.5;
    const ObjectiveResult r = EvaluateObjective(c, b);
    ASSERT_GT(std::exp(r.pairs[0].log_weight_winner), 0.5);
    ASSERT_LT(std::exp(r.pairs[0].log_weight_winner), 0.99);
    const double h = 1e-6;
    const double moving = (LossAt(c, b, true, 0, h) - LossAt(c, b, true, 0, -h)) / (2 * h);
    PairBatch frozen = b;
    frozen.log_weight_winner = {r.pairs[0].log_weight_winner};
    frozen.log_weight_loser = {r.pairs[0].log_weight_loser};
    const double fixed = (LossAt(c, frozen, true, 0, h) - LossAt(c, frozen, true, 0, -h)) / (2 * h);
    EXPECT_NEAR(r.grad_policy_winner[0], fixed, 1e-7) << SdpoReadingName(reading);
    EXPECT_GT(std::abs(moving - fixed), 1e-3) << SdpoReadingName(reading);
  }
}

TEST(ObjectivesTest, ReferenceErrorsGetNoGradientAndMaskedPairsNone) {
  PairBatch b = TwoPairs();
  SetWeights(&b, {0.95, 0.5}, {0.92, 0.99});
  const ObjectiveResult r = EvaluateObjective(Cfg(ObjectiveKind::kDpoCm), b);
  // The result only exposes policy gradients; the masked pair's are exactly zero.
  EXPECT_EQ(r.grad_policy_winner.size(), 2u);
  EXPECT_EQ(r.grad_policy_winner[1], 0.0);
  EXPECT_EQ(r.grad_policy_loser[1], 0.0);
}

// ---------------------------------------------------------------------------------------------
// Configuration and input errors.

template <typename F>
std::string ErrorOf(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ObjectivesTest, BadConfigurationGivesClearErrors) {
  const PairBatch b = OnePair();
  ObjectiveConfig c = ObjectiveConfig::Sdpo();
  c.tau = 1.5;
  EXPECT_NE(ErrorOf([&] { EvaluateObjective(c, b); }).find("tau must lie in [0, 1]"),
            std::string::npos);
  c.tau = -0.1;
  EXPECT_NE(ErrorOf([&] { ValidateObjectiveConfig(c); }).find("tau"), std::string::npos);
  c = ObjectiveConfig::Sdpo();
  c.eps = -0.1;
  EXPECT_NE(ErrorOf([&] { EvaluateObjective(c, b); }).find("eps must lie in [0, 1]"),
            std::string::npos);
  c = ObjectiveConfig::Sdpo();
  c.beta = 0.0;
  EXPECT_NE(ErrorOf([&] { ValidateObjectiveConfig(c); }).find("beta"), std::string::npos);
  c = ObjectiveConfig::Sdpo();
  c.sdpo_reading = static_cast<SdpoReading>(7);
  EXPECT_NE(ErrorOf([&] { ValidateObjectiveConfig(c); }).find("unknown SDPO reading"),
            std::string::npos);
  EXPECT_NE(ErrorOf([] { ParseSdpoReading("D"); }).find("inside_logit"), std::string::npos);
  EXPECT_NE(ErrorOf([] { ParseCmClip("c4"); }).find("timestep_range"), std::string::npos);
  EXPECT_NE(ErrorOf([] { ParseObjectiveKind("kto"); }).find("diffusion_dpo"), std::string::npos);
  ObjectiveConfig d;
  EXPECT_NE(
      ErrorOf([&] { SetObjectiveOption(&d, "reading", "A"); }).find("unknown objective option"),
      std::string::npos);
  EXPECT_NE(ErrorOf([&] { SetObjectiveOption(&d, "tau", "high"); }).find("not a number"),
            std::string::npos);
}

TEST(ObjectivesTest, OptionsFromStrings) {
  ObjectiveConfig c;
  SetObjectiveOption(&c, "kind", "dpo_cm");
  SetObjectiveOption(&c, "beta_salesforce", "5000");
  SetObjectiveOption(&c, "tau", "0.8");
  SetObjectiveOption(&c, "cm_clip", "c3");
  SetObjectiveOption(&c, "sdpo_reading", "B");
  SetObjectiveOption(&c, "sdpo_use_mask", "false");
  SetObjectiveOption(&c, "error_type", "epsilon");
  EXPECT_EQ(c.kind, ObjectiveKind::kDpoCm);
  EXPECT_EQ(c.beta, 2500.0);
  EXPECT_EQ(c.tau, 0.8);
  EXPECT_EQ(c.cm_clip, CmClip::kLogitClip);
  EXPECT_EQ(c.sdpo_reading, SdpoReading::kLossLevel);
  EXPECT_FALSE(c.sdpo_use_mask);
  EXPECT_EQ(c.error_type, PredictionType::kEpsilon);
  EXPECT_NE(DescribeObjectiveConfig(c).find("tau=0.8"), std::string::npos);
}

TEST(ObjectivesTest, BetaConventions) {
  // Salesforce -0.5 * 5000 * (model_diff - ref_diff) == diffusers 2500 * (ref_diff - model_diff).
  EXPECT_EQ(BetaFromSalesforce(5000.0), 2500.0);
  EXPECT_EQ(BetaToSalesforce(2500.0), 5000.0);
  EXPECT_EQ(BetaFromPaper(5.0), 2500.0);  // paper image beta 5 == Salesforce 5000 (paper.md 7.3)
  PairBatch b = OnePair();
  const double model_diff = b.policy_winner[0] - b.policy_loser[0];
  const double ref_diff = b.reference_winner[0] - b.reference_loser[0];
  const double salesforce_inside = -0.5 * 0.004 * (model_diff - ref_diff);
  ObjectiveConfig c = Cfg(ObjectiveKind::kDiffusionDpo, BetaFromSalesforce(0.004));
  EXPECT_NEAR(EvaluateObjective(c, b).pairs[0].logit, salesforce_inside, 1e-15);
}

TEST(ObjectivesTest, BadInputsGiveClearErrors) {
  PairBatch b = OnePair();
  b.policy_winner[0] = std::nan("");
  EXPECT_NE(
      ErrorOf([&] { EvaluateObjective(ObjectiveConfig::Sdpo(), b); }).find("policy_winner[0]"),
      std::string::npos);
  b = OnePair();
  b.reference_loser.push_back(0.1);
  EXPECT_NE(ErrorOf([&] { EvaluateObjective(ObjectiveConfig::Sdpo(), b); }).find("sizes"),
            std::string::npos);
  b = OnePair();
  b.log_weight_winner = {0.0};
  EXPECT_NE(ErrorOf([&] { EvaluateObjective(ObjectiveConfig::Sdpo(), b); }).find("log weights"),
            std::string::npos);
  EXPECT_NE(ErrorOf([] { EvaluateObjective(ObjectiveConfig::Sdpo(), PairBatch{}); }).find("empty"),
            std::string::npos);
}

TEST(ObjectivesTest, SharedHalvesInvariant) {
  const std::vector<float> ok = {1, 2, 3, 4, 1, 2, 3, 4};  // 2 pairs x 2 values, halves equal
  CheckSharedHalves(ok.data(), 2, 2, "noise");
  std::vector<float> bad = ok;
  bad[7] = 5;
  const std::string e = ErrorOf([&] { CheckSharedHalves(bad.data(), 2, 2, "noise"); });
  EXPECT_NE(e.find("noise: winner and loser of pair 1 differ at element 1"), std::string::npos)
      << e;
  const std::vector<double> t = {10, 500, 10, 500};
  CheckSharedHalves(t.data(), 2, 1, "timesteps");
}

}  // namespace
}  // namespace sdpo

namespace sdpo {
namespace {

// ---------------------------------------------------------------------------------------------
// Pair weights (dataset weights) and importance-weight sources that can exceed one.

TEST(ObjectivesTest, PairWeightsScaleTheirTermsNormalisedByTheirSum) {
  for (ObjectiveKind kind : {ObjectiveKind::kDiffusionDpo, ObjectiveKind::kSdpo}) {
    ObjectiveConfig c = Cfg(kind);
    c.sdpo_use_mask = false;
    PairBatch b = TwoPairs();
    b.timepoints.push_back(Mid());
    b.policy_winner.push_back(0.40);
    b.reference_winner.push_back(0.30);
    b.policy_loser.push_back(0.20);
    b.reference_loser.push_back(0.25);
    const ObjectiveResult plain = EvaluateObjective(c, b);
    b.pair_weights = {0.0, 1.0, 5.0};
    const ObjectiveResult weighted = EvaluateObjective(c, b);
    // Hand-computed from the unweighted per-pair losses: (0 l0 + 1 l1 + 5 l2) / (0 + 1 + 5).
    const double expected = (plain.pairs[1].loss + 5.0 * plain.pairs[2].loss) / 6.0;
    EXPECT_NEAR(weighted.loss, expected, kTol);
    EXPECT_NE(weighted.loss, plain.loss);
    EXPECT_EQ(weighted.grad_policy_winner[0], 0.0);  // weight 0: no gradient at all
    EXPECT_EQ(weighted.grad_policy_loser[0], 0.0);
    // Gradient of pair i scales by 3 d_i / sum(d) against the unweighted mean over 3 pairs.
    EXPECT_NEAR(weighted.grad_policy_winner[2], plain.grad_policy_winner[2] * 3.0 * 5.0 / 6.0,
                kTol);
    EXPECT_NEAR(weighted.grad_policy_loser[1], plain.grad_policy_loser[1] * 3.0 / 6.0, kTol);
    // Weight 1 everywhere is today's objective bit for bit.
    b.pair_weights = {1.0, 1.0, 1.0};
    ExpectSameResult(EvaluateObjective(c, b), plain);
    // All zero: nothing to learn, loss 0, no NaN.
    b.pair_weights = {0.0, 0.0, 0.0};
    const ObjectiveResult zero = EvaluateObjective(c, b);
    EXPECT_EQ(zero.loss, 0.0);
    EXPECT_EQ(zero.grad_policy_winner[1], 0.0);
    b.pair_weights = {1.0, -1.0, 1.0};
    EXPECT_THROW(EvaluateObjective(c, b), Error);
    b.pair_weights = {1.0, 1.0};
    EXPECT_THROW(EvaluateObjective(c, b), Error);
  }
}

TEST(ObjectivesTest, GeneratorWeightsCanExceedOneAndTheClipBindsOnBothSides) {
  const NoiseSchedule s = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  PairBatch b = TwoPairs();
  b.timepoints = {s.At(500), s.At(500)};
  ObjectiveConfig c = Cfg(ObjectiveKind::kSdpo);
  c.sdpo_use_mask = false;
  c.weight_source = WeightSource::kGenerator;
  c.effective_elements = 20000.0;
  EXPECT_THROW(EvaluateObjective(c, b), Error);  // generator errors missing
  // Pair 0: the generator fitted both samples worse than the policy does -> log w > 0.
  b.generator_winner = {0.50, 0.50};
  b.generator_loser = {0.90, 0.30};
  const ObjectiveResult r = EvaluateObjective(c, b);
  const double k = KlCoefficient(s.At(500), PredictionType::kV);
  EXPECT_NEAR(r.pairs[0].log_weight_winner, 20000.0 * k * (0.50 - 0.30), 1e-12);
  EXPECT_NEAR(r.pairs[1].log_weight_loser, 20000.0 * k * (0.30 - 0.50), 1e-12);
  EXPECT_GT(r.pairs[0].log_weight_winner, 0.0);
  EXPECT_GT(r.pairs[0].log_weight_loser, 0.0);
  // Large enough to hit the upper clip: coefficients 1 + eps, where the closed form never gets.
  ASSERT_GT(std::exp(r.pairs[0].log_weight_winner), 1.2);
  EXPECT_EQ(r.pairs[0].coef_winner, 1.2);
  EXPECT_EQ(r.pairs[0].coef_loser, 1.2);
  EXPECT_EQ(r.pairs[1].coef_winner, 1.0);  // equal errors: exactly 1
  EXPECT_EQ(r.pairs[1].coef_loser, 0.8);
  EXPECT_EQ(r.num_weights_clipped, 3);
}

TEST(ObjectivesTest, EveryWeightSourceAtUnitWeightsIsDiffusionDpoBitForBit) {
  std::mt19937_64 rng(3);
  const NoiseSchedule s = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  PairBatch b = RandomBatch(&rng, 16, s);
  const ObjectiveResult dpo = EvaluateObjective(Cfg(ObjectiveKind::kDiffusionDpo, 3.0), b);
  ObjectiveConfig c = Cfg(ObjectiveKind::kSdpo, 3.0);
  c.sdpo_use_mask = false;
  // Generator = the policy: log w = 0 exactly.
  c.weight_source = WeightSource::kGenerator;
  b.generator_winner = b.policy_winner;
  b.generator_loser = b.policy_loser;
  ExpectSameResult(EvaluateObjective(c, b), dpo);
  // Timestep curve: given log weights of 0.
  c.weight_source = WeightSource::kTimestepCurve;
  EXPECT_THROW(EvaluateObjective(c, b), Error);  // the curve's weights must be given
  b.log_weight_winner.assign(16, 0.0);
  b.log_weight_loser.assign(16, 0.0);
  ExpectSameResult(EvaluateObjective(c, b), dpo);
}

TEST(ObjectivesTest, SampledWeightsUseTheNoiseProjection) {
  const NoiseSchedule s = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  PairBatch b = OnePair();
  b.timepoints = {s.At(300)};
  ObjectiveConfig c = Cfg(ObjectiveKind::kSdpo);
  c.weight_source = WeightSource::kSampled;
  EXPECT_THROW(EvaluateObjective(c, b), Error);  // projections missing
  b.noise_dot_winner = {0.0};
  b.noise_dot_loser = {-0.2};  // flow v: x0_hat - x0 = -sigma (v_hat - v), so this raises w
  const ObjectiveResult r = EvaluateObjective(c, b);
  EXPECT_EQ(r.pairs[0].log_weight_winner,
            LogImportanceWeight(s.At(300), PredictionType::kV, 0.30, 1.0));
  EXPECT_EQ(r.pairs[0].log_weight_loser,
            SampledLogImportanceWeight(s.At(300), PredictionType::kV, 0.60, -0.2, 1.0));
  EXPECT_GT(r.pairs[0].log_weight_loser,
            LogImportanceWeight(s.At(300), PredictionType::kV, 0.60, 1.0));
  b.noise_dot_loser = {NAN};
  EXPECT_THROW(EvaluateObjective(c, b), Error);
}

TEST(ObjectivesTest, WeightSourceFromStrings) {
  ObjectiveConfig c;
  SetObjectiveOption(&c, "weight_source", "generator");
  EXPECT_EQ(c.weight_source, WeightSource::kGenerator);
  SetObjectiveOption(&c, "weight_source", "timestep_curve");
  EXPECT_EQ(c.weight_source, WeightSource::kTimestepCurve);
  EXPECT_NE(DescribeObjectiveConfig(c).find("weight_source=timestep_curve"), std::string::npos);
  try {
    SetObjectiveOption(&c, "weight_source", "bogus");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("closed_form | sampled | generator | timestep_curve"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace sdpo
