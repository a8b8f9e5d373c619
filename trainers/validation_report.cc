#include "trainers/validation_report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "io/json.h"
#include "trainers/report/svg.h"

namespace sdpo::trainers {
namespace {

namespace fs = std::filesystem;

void EvalPlot(const std::string& path, const std::string& title, const std::string& name,
              const std::vector<std::pair<int64_t, EvalResult>>& evals) {
  plot::Series s{name};
  for (const auto& [step, e] : evals) {
    s.x.push_back(static_cast<double>(step));
    s.y.push_back(e.Get(name));
  }
  s.markers = true;
  s.color = "#08519c";
  plot::LinePlot p;
  p.title = title;
  p.x_label = "step";
  p.y_label = name;
  p.series = {s};
  plot::WriteSvg(p, path);
}

std::string HeldOutSection(const std::string& out_dir,
                           const std::vector<std::pair<int64_t, EvalResult>>& evals) {
  const bool any = std::any_of(evals.begin(), evals.end(), [](const auto& e) {
    return std::isfinite(e.second.Get("val_loss"));
  });
  if (!any) return "";
  EvalPlot((fs::path(out_dir) / "val_loss.svg").string(), "Held-out preference loss", "val_loss",
           evals);
  EvalPlot((fs::path(out_dir) / "val_accuracy.svg").string(),
           "Held-out implicit reward accuracy (margin > 0)", "val_reward_accuracy", evals);
  return "## Held-out pairs\n\n![held-out loss](val_loss.svg)\n\n"
         "![held-out accuracy](val_accuracy.svg)\n\n";
}

// One row per evaluation folder validation/step_NNNNNN, one column per prompt: the GIF inline,
// the mp4 linked.
std::string VideoSection(const std::string& out_dir) {
  const fs::path dir = fs::path(out_dir) / "validation";
  std::ifstream listing(dir / "prompts.jsonl");
  if (!listing.good()) return "";
  std::vector<std::string> names, lines;
  for (std::string line; std::getline(listing, line);) {
    const json::Value v = json::Parse(line, (dir / "prompts.jsonl").string());
    names.push_back(v.at("name").as_string());
    lines.push_back(absl::StrCat("- ", names.back(), ": \"", v.at("prompt").as_string(),
                                 "\" (seed ", v.at("seed").as_int(), ")\n"));
  }
  std::vector<std::string> steps;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && absl::StartsWith(name, "step_") &&
        name.find(".tmp.") == std::string::npos) {
      steps.push_back(name);
    }
  }
  std::sort(steps.begin(), steps.end());  // zero-padded: numeric order
  std::string md =
      "## Validation videos\n\nFixed noise per prompt: the same seeds at every "
      "evaluation.\n\n";
  for (const std::string& l : lines) md += l;
  md += "\n| step |";
  for (const std::string& n : names) absl::StrAppend(&md, " ", n, " |");
  md += "\n|---|";
  for (size_t k = 0; k < names.size(); ++k) md += "---|";
  md += "\n";
  for (const std::string& s : steps) {
    absl::StrAppend(&md, "| ", std::stoll(s.substr(5)), " |");
    for (const std::string& n : names) {
      const std::string stem = absl::StrCat("validation/", s, "/", n);
      absl::StrAppend(&md, " ![", n, "](", stem, ".gif) [mp4](", stem, ".mp4) |");
    }
    md += "\n";
  }
  return md + "\n";
}

}  // namespace

std::string ValidationReportSections(const std::string& out_dir,
                                     const std::vector<std::pair<int64_t, EvalResult>>& evals) {
  return HeldOutSection(out_dir, evals) + VideoSection(out_dir);
}

}  // namespace sdpo::trainers
