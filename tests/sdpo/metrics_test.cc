#include "sdpo/metrics.h"

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "sdpo/objectives.h"
#include "models/schedules.h"
#include "tensor/error.h"

namespace sdpo {
namespace {

TEST(MetricsTest, QuantilesAndSummary) {
  const std::vector<double> v = {1, 2, 3, 4, 5};
  EXPECT_EQ(SortedQuantile(v, 0.0), 1.0);
  EXPECT_EQ(SortedQuantile(v, 0.5), 3.0);
  EXPECT_DOUBLE_EQ(SortedQuantile(v, 0.1), 1.4);  // numpy linear: 0.1 * 4 = 0.4
  EXPECT_EQ(SortedQuantile(v, 1.0), 5.0);
  const LogWeightStats s = SummarizeLogWeights({-0.1, -0.3, -INFINITY, -0.2});
  EXPECT_EQ(s.count, 4);
  EXPECT_EQ(s.non_finite, 1);
  EXPECT_NEAR(s.mean, -0.2, 1e-15);
  EXPECT_NEAR(s.stddev, std::sqrt(0.02 / 3), 1e-15);
  EXPECT_EQ(s.min, -INFINITY);
  EXPECT_EQ(s.max, -0.1);
  EXPECT_NEAR(s.mean_weight, (std::exp(-0.1) + std::exp(-0.3) + std::exp(-0.2)) / 4, 1e-15);
  EXPECT_TRUE(std::isnan(SummarizeLogWeights({}).mean));
}

TEST(MetricsTest, WeightProfileBuckets) {
  WeightProfile p(4, 1000.0);
  EXPECT_EQ(p.BucketOf(0.0), 0);
  EXPECT_EQ(p.BucketOf(249.9), 0);
  EXPECT_EQ(p.BucketOf(250.0), 1);
  EXPECT_EQ(p.BucketOf(1000.0), 3);  // last bucket closed
  p.Add(10, -0.5, -0.6, false);
  p.Add(20, -0.3, -0.4, true);
  p.Add(600, -0.01, -0.02, true);
  const std::vector<BucketStats> b = p.Buckets();
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0].pairs, 2);
  EXPECT_EQ(b[0].masked, 1);
  EXPECT_NEAR(b[0].winner.mean, -0.4, 1e-15);
  EXPECT_NEAR(b[0].loser.mean, -0.5, 1e-15);
  EXPECT_EQ(b[1].pairs, 0);
  EXPECT_EQ(b[2].pairs, 1);
  EXPECT_EQ(b[2].t_lo, 500.0);
  EXPECT_EQ(b[2].t_hi, 750.0);
  EXPECT_THROW(WeightProfile(0, 1000.0), Error);
}

TEST(MetricsTest, StepMetrics) {
  const NoiseSchedule s = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  PairBatch b;
  b.timepoints = {s.At(50), s.At(500), s.At(950)};
  b.policy_winner = {0.3, 0.5, 0.4};
  b.reference_winner = {0.5, 0.45, 0.4};
  b.policy_loser = {0.6, 0.5, 0.4};
  b.reference_loser = {0.45, 0.52, 0.4};
  b.log_weight_winner = {std::log(0.95), std::log(0.5), 0.0};
  b.log_weight_loser = {std::log(0.92), std::log(0.99), 0.0};
  ObjectiveConfig c;
  c.kind = ObjectiveKind::kDpoCm;
  c.beta = 2.0;
  const ObjectiveResult r = EvaluateObjective(c, b);
  MetricsConfig mc;
  mc.num_buckets = 2;
  const StepMetrics m = ComputeStepMetrics(b, r, mc);
  EXPECT_EQ(m.num_pairs, 3);
  EXPECT_EQ(m.num_active, 2);  // pair 2 masked (w_w = 0.5 < 0.9)
  EXPECT_NEAR(m.mask_rate, 1.0 / 3.0, 1e-15);
  EXPECT_EQ(m.loss, r.loss);
  // Active pairs: logits 0.7 (> 0) and 0 (tie, counts 1/2).
  EXPECT_NEAR(m.implicit_accuracy, 0.75, 1e-15);
  // Unweighted margins over all pairs: 0.7, -0.14, 0.
  EXPECT_NEAR(m.reward_margin, (0.7 - 0.14) / 3, 1e-12);
  EXPECT_NEAR(m.reward_accuracy, 1.5 / 3, 1e-15);
  EXPECT_NEAR(m.reward_winner, (0.4 - 0.1 + 0.0) / 3, 1e-12);
  EXPECT_NEAR(m.policy_mse_winner, 0.4, 1e-15);
  EXPECT_NEAR(m.reference_mse_loser, (0.45 + 0.52 + 0.4) / 3, 1e-15);
  ASSERT_EQ(m.weight_buckets.size(), 2u);
  EXPECT_EQ(m.weight_buckets[0].pairs, 1);  // t = 50
  EXPECT_EQ(m.weight_buckets[0].masked, 0);
  EXPECT_EQ(m.weight_buckets[1].pairs, 2);  // t = 500 (masked) and 950
  EXPECT_EQ(m.weight_buckets[1].masked, 1);

  const std::string json = MetricsToJson(m);
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
  EXPECT_NE(json.find("\"implicit_accuracy\": 0.75"), std::string::npos) << json;
  EXPECT_NE(json.find("\"logw_w_q50/b1\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"mask_rate\""), std::string::npos);
  bool found = false;
  for (const auto& [k, v] : FlattenMetrics(m)) found |= k == "reference_mse_winner";
  EXPECT_TRUE(found);
}

TEST(MetricsTest, NonFiniteValuesBecomeJsonNull) {
  StepMetrics m;
  m.implicit_accuracy = NAN;
  EXPECT_NE(MetricsToJson(m).find("\"implicit_accuracy\": null"), std::string::npos);
}

}  // namespace
}  // namespace sdpo
