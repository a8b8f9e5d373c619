#include "sdpo/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tensor/error.h"

namespace sdpo {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double Mean(const std::vector<double>& v) {
  if (v.empty()) return kNaN;
  double s = 0.0;
  for (double x : v) s += x;
  return s / v.size();
}

double Accuracy(double logit) { return logit > 0.0 ? 1.0 : (logit == 0.0 ? 0.5 : 0.0); }

void AppendStats(std::vector<std::pair<std::string, double>>* out, const std::string& prefix,
                 const std::string& suffix, const LogWeightStats& s) {
  out->emplace_back(absl::StrCat(prefix, "_mean", suffix), s.mean);
  out->emplace_back(absl::StrCat(prefix, "_std", suffix), s.stddev);
  out->emplace_back(absl::StrCat(prefix, "_q10", suffix), s.q10);
  out->emplace_back(absl::StrCat(prefix, "_q50", suffix), s.q50);
  out->emplace_back(absl::StrCat(prefix, "_q90", suffix), s.q90);
  out->emplace_back(absl::StrCat(prefix, "_weight_mean", suffix), s.mean_weight);
}

}  // namespace

double SortedQuantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return kNaN;
  SDPO_CHECK(q >= 0.0 && q <= 1.0, "quantile level must lie in [0, 1], got ", q);
  const double pos = q * (sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - lo;
  const double a = sorted[lo], b = sorted[hi];
  if (frac == 0.0 || a == b) return a;
  if (!std::isfinite(a) || !std::isfinite(b)) return frac < 1.0 ? a : b;
  return a + frac * (b - a);
}

LogWeightStats SummarizeLogWeights(std::vector<double> values) {
  LogWeightStats s;
  s.count = static_cast<int64_t>(values.size());
  if (values.empty()) {
    s.mean = s.stddev = s.min = s.q10 = s.q50 = s.q90 = s.max = s.mean_weight = kNaN;
    return s;
  }
  std::sort(values.begin(), values.end());
  double sum = 0.0, sum_w = 0.0;
  int64_t finite = 0;
  for (double x : values) {
    sum_w += std::exp(x);
    if (std::isfinite(x)) {
      sum += x;
      ++finite;
    }
  }
  s.non_finite = s.count - finite;
  s.mean_weight = sum_w / s.count;
  if (finite > 0) {
    s.mean = sum / finite;
    double ss = 0.0;
    for (double x : values) {
      if (std::isfinite(x)) ss += (x - s.mean) * (x - s.mean);
    }
    s.stddev = std::sqrt(ss / finite);
  } else {
    s.mean = s.stddev = kNaN;
  }
  s.min = values.front();
  s.max = values.back();
  s.q10 = SortedQuantile(values, 0.1);
  s.q50 = SortedQuantile(values, 0.5);
  s.q90 = SortedQuantile(values, 0.9);
  return s;
}

WeightProfile::WeightProfile(int num_buckets, double max_timestep)
    : num_buckets_(num_buckets), max_timestep_(max_timestep) {
  SDPO_CHECK(num_buckets >= 1, "WeightProfile needs >= 1 bucket, got ", num_buckets);
  SDPO_CHECK(max_timestep > 0.0 && std::isfinite(max_timestep),
             "WeightProfile needs a positive max_timestep, got ", max_timestep);
  winner_.resize(num_buckets);
  loser_.resize(num_buckets);
  masked_.assign(num_buckets, 0);
}

int WeightProfile::BucketOf(double timestep) const {
  SDPO_CHECK(!std::isnan(timestep), "WeightProfile: NaN timestep");
  const int b = static_cast<int>(std::floor(timestep / max_timestep_ * num_buckets_));
  return std::clamp(b, 0, num_buckets_ - 1);
}

void WeightProfile::Add(double timestep, double log_weight_winner, double log_weight_loser,
                        bool active) {
  const int b = BucketOf(timestep);
  winner_[b].push_back(log_weight_winner);
  loser_[b].push_back(log_weight_loser);
  if (!active) ++masked_[b];
}

std::vector<BucketStats> WeightProfile::Buckets() const {
  std::vector<BucketStats> out(num_buckets_);
  for (int b = 0; b < num_buckets_; ++b) {
    BucketStats& s = out[b];
    s.t_lo = max_timestep_ * b / num_buckets_;
    s.t_hi = max_timestep_ * (b + 1) / num_buckets_;
    s.pairs = static_cast<int64_t>(winner_[b].size());
    s.masked = masked_[b];
    s.winner = SummarizeLogWeights(winner_[b]);
    s.loser = SummarizeLogWeights(loser_[b]);
  }
  return out;
}

StepMetrics ComputeStepMetrics(const PairBatch& batch, const ObjectiveResult& result,
                               const MetricsConfig& mc) {
  const size_t n = batch.size();
  SDPO_CHECK(result.pairs.size() == n, "ComputeStepMetrics: result has ", result.pairs.size(),
             " pairs, batch ", n);
  StepMetrics m;
  m.num_pairs = static_cast<int64_t>(n);
  m.num_active = result.num_active;
  m.loss = result.loss;
  m.policy_mse_winner = Mean(batch.policy_winner);
  m.policy_mse_loser = Mean(batch.policy_loser);
  m.reference_mse_winner = Mean(batch.reference_winner);
  m.reference_mse_loser = Mean(batch.reference_loser);
  double acc = 0.0, racc = 0.0, margin = 0.0, rw = 0.0, rl = 0.0, logit = 0.0;
  std::vector<double> lw, ll;
  WeightProfile profile(mc.num_buckets, mc.max_timestep);
  for (size_t i = 0; i < n; ++i) {
    const PairTerms& p = result.pairs[i];
    racc += Accuracy(p.margin);
    margin += p.margin;
    rw += p.reward_winner;
    rl += p.reward_loser;
    if (p.active) {
      acc += Accuracy(p.logit);
      logit += p.logit;
    }
    lw.push_back(p.log_weight_winner);
    ll.push_back(p.log_weight_loser);
    profile.Add(batch.timepoints[i].timestep, p.log_weight_winner, p.log_weight_loser, p.active);
  }
  m.implicit_accuracy = m.num_active > 0 ? acc / m.num_active : kNaN;
  m.logit_mean = m.num_active > 0 ? logit / m.num_active : kNaN;
  m.reward_accuracy = racc / n;
  m.reward_margin = margin / n;
  m.reward_winner = rw / n;
  m.reward_loser = rl / n;
  m.mask_rate = 1.0 - static_cast<double>(m.num_active) / n;
  m.clip_rate = result.num_weights_to_clip > 0
                    ? static_cast<double>(result.num_weights_clipped) / result.num_weights_to_clip
                    : 0.0;
  m.log_weight_winner = SummarizeLogWeights(lw);
  m.log_weight_loser = SummarizeLogWeights(ll);
  m.weight_buckets = profile.Buckets();
  return m;
}

std::vector<std::pair<std::string, double>> FlattenMetrics(const StepMetrics& m) {
  std::vector<std::pair<std::string, double>> out = {
      {"loss", m.loss},
      {"implicit_accuracy", m.implicit_accuracy},
      {"reward_accuracy", m.reward_accuracy},
      {"reward_margin", m.reward_margin},
      {"reward_winner", m.reward_winner},
      {"reward_loser", m.reward_loser},
      {"logit_mean", m.logit_mean},
      {"policy_mse_winner", m.policy_mse_winner},
      {"policy_mse_loser", m.policy_mse_loser},
      {"reference_mse_winner", m.reference_mse_winner},
      {"reference_mse_loser", m.reference_mse_loser},
      {"mask_rate", m.mask_rate},
      {"clip_rate", m.clip_rate},
      {"pairs", static_cast<double>(m.num_pairs)},
      {"active_pairs", static_cast<double>(m.num_active)},
  };
  AppendStats(&out, "logw_w", "", m.log_weight_winner);
  AppendStats(&out, "logw_l", "", m.log_weight_loser);
  for (size_t b = 0; b < m.weight_buckets.size(); ++b) {
    const BucketStats& s = m.weight_buckets[b];
    const std::string suffix = absl::StrCat("/b", b);
    out.emplace_back(absl::StrCat("bucket_t_lo", suffix), s.t_lo);
    out.emplace_back(absl::StrCat("bucket_pairs", suffix), static_cast<double>(s.pairs));
    out.emplace_back(absl::StrCat("bucket_masked", suffix), static_cast<double>(s.masked));
    if (s.pairs == 0) continue;
    AppendStats(&out, "logw_w", suffix, s.winner);
    AppendStats(&out, "logw_l", suffix, s.loser);
  }
  return out;
}

std::string MetricsToJson(const StepMetrics& m) {
  std::string s = "{";
  bool first = true;
  for (const auto& [key, value] : FlattenMetrics(m)) {
    absl::StrAppend(&s, first ? "" : ", ", "\"", key, "\": ");
    if (std::isfinite(value)) {
      absl::StrAppend(&s, absl::StrFormat("%.9g", value));
    } else {
      absl::StrAppend(&s, "null");
    }
    first = false;
  }
  absl::StrAppend(&s, "}");
  return s;
}

}  // namespace sdpo
