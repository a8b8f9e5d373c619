// What a training run leaves next to its metrics.jsonl: summary.json (configuration, steps,
// wall time, evaluations), SVG plots and report.md.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "sdpo/metrics.h"
#include "trainers/trainer.h"

namespace sdpo::trainers {

struct RunSummary {
  std::string config_json;  // the run's configuration (a JSON object, or empty)
  int64_t steps = 0, steps_this_run = 0, skipped_steps = 0;
  double wall_seconds = 0;
  std::vector<std::pair<int64_t, EvalResult>> evals;  // (step, evaluation), first = before
  std::vector<StepRecord> history;                     // this run's steps
  std::vector<BucketStats> profile;                    // importance weights over t
};

// Writes summary.json, loss.svg, accuracy.svg, margin.svg, grad_norm.svg, mask_rate.svg,
// weight_profile.svg and report.md into out_dir (each file atomically).
void WriteRunOutputs(const std::string& out_dir, const RunSummary& summary);

// Writes `text` to `path` atomically (temporary file, fsync, rename).
void WriteFileAtomic(const std::string& path, const std::string& text);

}  // namespace sdpo::trainers
