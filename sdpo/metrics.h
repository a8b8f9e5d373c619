// Per-step diagnostics of a preference objective and per-timestep-bucket importance-weight
// statistics (also the accumulator behind the weight_profile tool and the trainer's plot).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "sdpo/objectives.h"

namespace sdpo {

// Summary of one set of log-weights.
struct LogWeightStats {
  int64_t count = 0;       // values seen
  int64_t non_finite = 0;  // -inf values (degenerate steps); excluded from mean / std
  double mean = 0.0;       // over finite values (NaN if none)
  double stddev = 0.0;     // population std over finite values
  double min = 0.0, q10 = 0.0, q50 = 0.0, q90 = 0.0, max = 0.0;  // over all values (may be -inf)
  double mean_weight = 0.0;  // mean of exp(log w) over all values (0 for -inf)
};

LogWeightStats SummarizeLogWeights(std::vector<double> values);
// Linear-interpolation quantile (numpy's default) of sorted values; q in [0, 1].
double SortedQuantile(const std::vector<double>& sorted, double q);

struct BucketStats {
  double t_lo = 0.0, t_hi = 0.0;  // [t_lo, t_hi) in model-timestep units (last bucket closed)
  int64_t pairs = 0;
  int64_t masked = 0;  // pairs masked out
  LogWeightStats winner, loser;
};

// Accumulates (timestep, log w_winner, log w_loser, active) samples into equal-width buckets of
// [0, max_timestep].
class WeightProfile {
 public:
  WeightProfile(int num_buckets, double max_timestep);
  void Add(double timestep, double log_weight_winner, double log_weight_loser, bool active);
  int BucketOf(double timestep) const;
  std::vector<BucketStats> Buckets() const;
  int num_buckets() const { return num_buckets_; }
  double max_timestep() const { return max_timestep_; }

 private:
  int num_buckets_;
  double max_timestep_;
  std::vector<std::vector<double>> winner_, loser_;
  std::vector<int64_t> masked_;
};

struct MetricsConfig {
  int num_buckets = 10;
  double max_timestep = 1000.0;
};

struct StepMetrics {
  int64_t num_pairs = 0;
  int64_t num_active = 0;
  double loss = 0.0;
  // Fraction of active pairs whose (objective) logit is > 0; ties count 1/2 (diffusers).
  double implicit_accuracy = 0.0;
  // Fraction of all pairs whose unweighted DPO margin is > 0 (ties 1/2): comparable across
  // objectives and readings.
  double reward_accuracy = 0.0;
  double reward_margin = 0.0;  // mean unweighted margin beta [(ref_w-ref_l)-(pol_w-pol_l)], all
  double reward_winner = 0.0;  // mean implicit rewards -beta (e_pol - e_ref), all pairs
  double reward_loser = 0.0;
  double logit_mean = 0.0;                                 // mean objective logit over active pairs
  double policy_mse_winner = 0.0, policy_mse_loser = 0.0;  // batch means
  double reference_mse_winner = 0.0, reference_mse_loser = 0.0;  // batch means
  double mask_rate = 0.0;                                        // fraction of pairs masked out
  double clip_rate = 0.0;  // fraction of clipped weights among those a clip was applied to
  LogWeightStats log_weight_winner, log_weight_loser;  // whole batch
  std::vector<BucketStats> weight_buckets;             // per t-bucket
};

StepMetrics ComputeStepMetrics(const PairBatch& batch, const ObjectiveResult& result,
                               const MetricsConfig& metrics = {});

// Flat (name, value) list for a JSONL line; buckets become "logw_w_q50/b3" style keys.
std::vector<std::pair<std::string, double>> FlattenMetrics(const StepMetrics& metrics);
// One JSON object (no newline). Non-finite values are written as null.
std::string MetricsToJson(const StepMetrics& metrics);

}  // namespace sdpo
