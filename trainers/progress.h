// A one-line progress bar on stderr: step, loss, accuracy, steps/s and ETA.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace sdpo::trainers {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, bool enabled);
  // Redraws the bar after `done` of `total` units; `status` is appended ("loss 0.69 acc 0.50").
  void Update(int64_t done, const std::string& status);
  void Finish();

 private:
  std::string label_;
  int64_t total_, start_done_ = -1;
  bool enabled_;
  std::chrono::steady_clock::time_point start_;
};

std::string FormatDuration(double seconds);  // "1:05", "1:02:03"

}  // namespace sdpo::trainers
