#include "trainers/measured_profile.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "io/json.h"
#include "tensor/error.h"

namespace sdpo::trainers {
namespace {

WindowProfile Accumulate(const std::vector<json::Value>& steps, size_t begin, size_t end) {
  WindowProfile p;
  for (size_t s = begin; s < end; ++s) {
    const json::Value& m = steps[s].at("metrics");
    for (int b = 0; b < 1000; ++b) {
      const json::Value* pairs = m.find(absl::StrCat("bucket_pairs/b", b));
      if (pairs == nullptr || !pairs->is_number()) break;
      if (static_cast<size_t>(b) >= p.pairs.size()) {
        const json::Value* t_lo = m.find(absl::StrCat("bucket_t_lo/b", b));
        p.t_lo.push_back(t_lo != nullptr && t_lo->is_number() ? t_lo->as_double() : NAN);
        p.pairs.push_back(0.0);
        p.w_winner.push_back(0.0);
        p.w_loser.push_back(0.0);
      }
      const json::Value* ww = m.find(absl::StrCat("logw_w_weight_mean/b", b));
      const json::Value* wl = m.find(absl::StrCat("logw_l_weight_mean/b", b));
      const double n = pairs->as_double();
      if (n <= 0 || ww == nullptr || wl == nullptr || !ww->is_number() || !wl->is_number()) {
        continue;
      }
      p.pairs[b] += n;
      p.w_winner[b] += n * ww->as_double();
      p.w_loser[b] += n * wl->as_double();
    }
  }
  for (size_t b = 0; b < p.pairs.size(); ++b) {
    p.w_winner[b] = p.pairs[b] > 0 ? p.w_winner[b] / p.pairs[b] : NAN;
    p.w_loser[b] = p.pairs[b] > 0 ? p.w_loser[b] / p.pairs[b] : NAN;
  }
  return p;
}

std::string Fmt(double v) { return std::isfinite(v) ? absl::StrFormat("%.9g", v) : "nan"; }
std::string Cell(double v) { return std::isfinite(v) ? absl::StrFormat("%.4f", v) : "-"; }

}  // namespace

MeasuredProfile MeasureRunProfile(const std::string& metrics_path, double window) {
  SDPO_CHECK(window > 0.0 && window <= 0.5, "measured weight profile: window ", window,
             " outside (0, 0.5]");
  std::ifstream in(metrics_path);
  SDPO_CHECK(in.good(), "cannot read ", metrics_path, " (a //trainers:sdpo output folder has one)");
  std::vector<json::Value> steps;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    json::Value v = json::Parse(line, absl::StrCat(metrics_path, " line ", n));
    const json::Value* skipped = v.find("skipped");
    if (skipped != nullptr && skipped->is_bool() && skipped->as_bool()) continue;
    SDPO_CHECK(v.contains("metrics") && v.at("metrics").is_object(), metrics_path, " line ", n,
               ": no \"metrics\" object");
    steps.push_back(std::move(v));
  }
  SDPO_CHECK(!steps.empty(), metrics_path, ": no training steps");
  MeasuredProfile p;
  p.metrics_path = metrics_path;
  p.steps = steps.size();
  p.window_steps = std::max<size_t>(1, static_cast<size_t>(window * steps.size()));
  p.first = Accumulate(steps, 0, p.window_steps);
  p.last = Accumulate(steps, steps.size() - p.window_steps, steps.size());
  SDPO_CHECK(!p.first.pairs.empty() && p.first.pairs.size() == p.last.pairs.size(), metrics_path,
             ": no per-bucket weight statistics (bucket_pairs/b0, ...) in its steps");
  return p;
}

std::string MeasuredProfileCsv(const MeasuredProfile& p) {
  std::string csv =
      "bucket,t_lo,pairs_start,w_winner_start,w_loser_start,pairs_end,w_winner_end,w_loser_end\n";
  for (size_t b = 0; b < p.first.pairs.size(); ++b) {
    absl::StrAppend(&csv, b, ",", Fmt(p.first.t_lo[b]), ",", Fmt(p.first.pairs[b]), ",",
                    Fmt(p.first.w_winner[b]), ",", Fmt(p.first.w_loser[b]), ",",
                    Fmt(p.last.pairs[b]), ",", Fmt(p.last.w_winner[b]), ",", Fmt(p.last.w_loser[b]),
                    "\n");
  }
  return csv;
}

plot::LinePlot MeasuredProfilePlot(const MeasuredProfile& p, const std::string& subtitle) {
  plot::Series sw{"winners, first steps"}, sl{"losers, first steps"};
  plot::Series ew{"winners, last steps"}, el{"losers, last steps"};
  ew.dashed = el.dashed = true;
  for (size_t b = 0; b < p.first.pairs.size(); ++b) {
    const double x = p.first.t_lo[b];
    for (auto [series, v] :
         {std::pair{&sw, p.first.w_winner[b]}, std::pair{&sl, p.first.w_loser[b]},
          std::pair{&ew, p.last.w_winner[b]}, std::pair{&el, p.last.w_loser[b]}}) {
      if (!std::isfinite(v) || !std::isfinite(x)) continue;
      series->x.push_back(x);
      series->y.push_back(v);
      series->markers = true;
    }
  }
  plot::LinePlot plot;
  plot.title = "importance weight per t-bucket, measured in training";
  plot.subtitle = absl::StrCat(subtitle, subtitle.empty() ? "" : ": ", "first and last ",
                               p.window_steps, " of ", p.steps, " steps");
  plot.x_label = "timestep bucket start";
  plot.y_label = "mean w (pairs-weighted)";
  plot.width = 960;
  plot.series = {sw, sl, ew, el};
  return plot;
}

std::string MeasuredProfileTable(const MeasuredProfile& p) {
  std::string md = absl::StrFormat(
      "Mean importance weight w per timestep bucket over the first and the last %d of %d "
      "steps (pairs-weighted; '-' where the window drew no pair in the bucket).\n\n"
      "| t bucket | pairs (first) | w winner (first) | w loser (first) | pairs (last) | "
      "w winner (last) | w loser (last) |\n|---|---|---|---|---|---|---|\n",
      p.window_steps, p.steps);
  const size_t n = p.first.pairs.size();
  for (size_t b = 0; b < n; ++b) {
    // Buckets are [t_lo, next t_lo); the last one ends at the schedule's end.
    const std::string bucket =
        b + 1 < n ? absl::StrFormat("[%g, %g)", p.first.t_lo[b], p.first.t_lo[b + 1])
                  : absl::StrFormat(">= %g", p.first.t_lo[b]);
    absl::StrAppend(&md, "| ", bucket, " | ", static_cast<int64_t>(p.first.pairs[b]), " | ",
                    Cell(p.first.w_winner[b]), " | ", Cell(p.first.w_loser[b]), " | ",
                    static_cast<int64_t>(p.last.pairs[b]), " | ", Cell(p.last.w_winner[b]), " | ",
                    Cell(p.last.w_loser[b]), " |\n");
  }
  return md + "\n";
}

}  // namespace sdpo::trainers
