// The importance-weight profile measured in training: per t bucket, the mean weight w of winners
// and losers over the first and the last fraction of a run's steps, read from its metrics.jsonl
// (every step logs its per-bucket weight statistics). The run's report.md shows it as a table
// and a plot; //trainers:weight_profile --run writes it as CSV and SVG.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "trainers/report/svg.h"

namespace sdpo::trainers {

// Per bucket over a window of steps: the pairs-weighted mean of the steps' mean w (NaN where
// the window saw no pair in the bucket).
struct WindowProfile {
  std::vector<double> t_lo, pairs, w_winner, w_loser;
};

struct MeasuredProfile {
  std::string metrics_path;
  size_t steps = 0;         // training steps in the file (skipped steps left out)
  size_t window_steps = 0;  // steps in each window: max(1, window * steps)
  WindowProfile first, last;
};

// Reads `metrics_path`; window in (0, 0.5]. Errors name the file and line; a file without
// per-bucket statistics (or without steps) is an error.
MeasuredProfile MeasureRunProfile(const std::string& metrics_path, double window);

// bucket,t_lo,pairs_start,w_winner_start,w_loser_start,pairs_end,w_winner_end,w_loser_end
std::string MeasuredProfileCsv(const MeasuredProfile& profile);
// Mean w per bucket start, four series (winners/losers x first/last steps).
plot::LinePlot MeasuredProfilePlot(const MeasuredProfile& profile, const std::string& subtitle);
// A markdown table: bucket range, pairs and mean w of winners and losers, first vs last steps.
std::string MeasuredProfileTable(const MeasuredProfile& profile);

}  // namespace sdpo::trainers
