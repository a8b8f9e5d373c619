#include "trainers/report.h"

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "io/json.h"
#include "trainers/measured_profile.h"
#include "trainers/report/svg.h"
#include "trainers/validation_report.h"

namespace sdpo::trainers {
namespace {

std::string JsonNumber(double v) {
  return std::isfinite(v) ? absl::StrFormat("%.9g", v) : std::string("null");
}

std::string EvalJson(const EvalResult& e) {
  std::string s = "{";
  for (size_t i = 0; i < e.values.size(); ++i) {
    absl::StrAppend(&s, i ? ", " : "", json::Quote(e.values[i].first), ": ",
                    JsonNumber(e.values[i].second));
  }
  return s + "}";
}

// Moving average over a window (for noisy per-step curves).
std::vector<double> Smooth(const std::vector<double>& y, int window) {
  std::vector<double> out(y.size());
  double sum = 0;
  int count = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (std::isfinite(y[i])) {
      sum += y[i];
      ++count;
    }
    if (i >= static_cast<size_t>(window) && std::isfinite(y[i - window])) {
      sum -= y[i - window];
      --count;
    }
    out[i] = count > 0 ? sum / count : NAN;
  }
  return out;
}

void StepPlot(const std::string& path, const std::string& title, const std::string& y_label,
              const std::vector<StepRecord>& h,
              const std::function<double(const StepRecord&)>& value) {
  plot::Series raw{"per step"}, avg{"moving average (10)"};
  for (const StepRecord& r : h) {
    raw.x.push_back(static_cast<double>(r.step));
    raw.y.push_back(r.skipped ? NAN : value(r));
  }
  avg.x = raw.x;
  avg.y = Smooth(raw.y, 10);
  raw.color = "#9ecae1";
  avg.color = "#08519c";
  plot::LinePlot p;
  p.title = title;
  p.x_label = "step";
  p.y_label = y_label;
  p.series = {raw, avg};
  plot::WriteSvg(p, path);
}

// "## Measured importance weights": the weight per t bucket over the first and the last 10% of
// the run's steps (metrics.jsonl, so a resumed run's earlier steps count), as a table and
// weight_profile_run.svg. A run without per-bucket statistics gets a line saying so.
void AppendMeasuredProfile(const std::string& out_dir, std::string* md) {
  namespace fs = std::filesystem;
  const std::string metrics = (fs::path(out_dir) / "metrics.jsonl").string();
  if (!fs::exists(metrics)) return;
  *md += "## Measured importance weights, first vs last steps\n\n";
  try {
    const MeasuredProfile profile = MeasureRunProfile(metrics, /*window=*/0.1);
    plot::WriteSvg(MeasuredProfilePlot(profile, ""),
                   (fs::path(out_dir) / "weight_profile_run.svg").string());
    *md += MeasuredProfileTable(profile) + "![measured profile](weight_profile_run.svg)\n\n";
  } catch (const Error& e) {
    absl::StrAppend(md, "Not available: ", e.what(), "\n\n");
  }
}

}  // namespace

void WriteFileAtomic(const std::string& path, const std::string& text) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  SDPO_CHECK(fd >= 0, "cannot write ", tmp);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      SDPO_FAIL("write failed for ", tmp);
    }
    done += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  SDPO_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path);
}

void WriteRunOutputs(const std::string& out_dir, const RunSummary& s) {
  namespace fs = std::filesystem;
  auto path = [&](const char* name) { return (fs::path(out_dir) / name).string(); };
  const std::vector<StepRecord>& h = s.history;

  // summary.json
  std::string evals = "[";
  for (size_t i = 0; i < s.evals.size(); ++i) {
    absl::StrAppend(&evals, i ? ", " : "", "{\"step\": ", s.evals[i].first,
                    ", \"values\": ", EvalJson(s.evals[i].second), "}");
  }
  evals += "]";
  std::string before = s.evals.empty() ? "null" : EvalJson(s.evals.front().second);
  std::string after = s.evals.size() < 2 ? "null" : EvalJson(s.evals.back().second);
  double last_loss = NAN, last_acc = NAN;
  if (!h.empty()) {
    last_loss = h.back().metrics.loss;
    last_acc = h.back().metrics.reward_accuracy;
  }
  std::string summary = absl::StrCat(
      "{\n  \"config\": ", s.config_json.empty() ? "null" : s.config_json,
      ",\n  \"steps\": ", s.steps, ",\n  \"steps_this_run\": ", s.steps_this_run,
      ",\n  \"skipped_steps\": ", s.skipped_steps,
      ",\n  \"wall_seconds\": ", JsonNumber(s.wall_seconds),
      ",\n  \"final_loss\": ", JsonNumber(last_loss),
      ",\n  \"final_reward_accuracy\": ", JsonNumber(last_acc), ",\n  \"eval_before\": ", before,
      ",\n  \"eval_after\": ", after, ",\n  \"evals\": ", evals, "\n}\n");
  WriteFileAtomic(path("summary.json"), summary);

  // plots
  if (!h.empty()) {
    StepPlot(path("loss.svg"), "Preference loss", "loss", h,
             [](const StepRecord& r) { return r.metrics.loss; });
    StepPlot(path("accuracy.svg"), "Implicit reward accuracy (winner preferred)", "accuracy", h,
             [](const StepRecord& r) { return r.metrics.reward_accuracy; });
    StepPlot(path("margin.svg"), "Reward margin beta[(ref_w-ref_l)-(pol_w-pol_l)]", "margin", h,
             [](const StepRecord& r) { return r.metrics.reward_margin; });
    StepPlot(path("grad_norm.svg"), "Gradient norm (before clipping)", "norm", h,
             [](const StepRecord& r) { return r.grad_norm; });
    StepPlot(path("mask_rate.svg"), "Masked pairs (DPO-C&M / SDPO mask)", "fraction", h,
             [](const StepRecord& r) { return r.metrics.mask_rate; });
  }
  if (!s.profile.empty()) {
    plot::Series w{"winner mean log w"}, l{"loser mean log w"};
    for (const BucketStats& b : s.profile) {
      double mid = 0.5 * (b.t_lo + b.t_hi);
      w.x.push_back(mid);
      l.x.push_back(mid);
      w.y.push_back(b.winner.count > 0 ? b.winner.mean : NAN);
      l.y.push_back(b.loser.count > 0 ? b.loser.mean : NAN);
      w.band_lo.push_back(b.winner.count > 0 ? b.winner.q10 : NAN);
      w.band_hi.push_back(b.winner.count > 0 ? b.winner.q90 : NAN);
    }
    w.markers = l.markers = true;
    plot::LinePlot p;
    p.title = "Importance-weight profile over the timestep";
    p.subtitle = "mean log w per t-bucket (band: winner q10-q90), all training steps";
    p.x_label = "model timestep t";
    p.y_label = "log w";
    p.series = {w, l};
    plot::WriteSvg(p, path("weight_profile.svg"));
  }

  // report.md
  std::string md = "# sdpo training report\n\n";
  absl::StrAppend(&md,
                  absl::StrFormat("Steps: %d (%d in this run, %d skipped). Wall time: %.1f s.\n\n",
                                  s.steps, s.steps_this_run, s.skipped_steps, s.wall_seconds));
  if (s.evals.size() >= 2) {
    md += "## Evaluation (held out)\n\n| metric | before | after | change |\n|---|---|---|---|\n";
    const EvalResult& b = s.evals.front().second;
    const EvalResult& a = s.evals.back().second;
    for (const auto& [name, v] : a.values) {
      double v0 = b.Get(name);
      absl::StrAppend(&md, absl::StrFormat("| %s | %.4f | %.4f | %+.4f |\n", name, v0, v, v - v0));
    }
    md += "\n";
    if (s.evals.size() > 2) {
      md += "Evaluations during training:\n\n| step | values |\n|---|---|\n";
      for (const auto& [step, e] : s.evals)
        absl::StrAppend(&md, "| ", step, " | ", EvalJson(e), " |\n");
      md += "\n";
    }
  }
  md += ValidationReportSections(out_dir, s.evals);
  if (!h.empty()) {
    md +=
        "## Training curves\n\n![loss](loss.svg)\n\n![accuracy](accuracy.svg)\n\n"
        "![margin](margin.svg)\n\n![grad norm](grad_norm.svg)\n\n![mask rate](mask_rate.svg)\n\n";
  }
  if (!s.profile.empty()) md += "## Importance weights\n\n![profile](weight_profile.svg)\n\n";
  AppendMeasuredProfile(out_dir, &md);
  md +=
      "## Configuration\n\n```json\n" + (s.config_json.empty() ? "{}" : s.config_json) + "\n```\n";
  WriteFileAtomic(path("report.md"), md);
}

}  // namespace sdpo::trainers
