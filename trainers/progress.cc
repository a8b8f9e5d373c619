#include "trainers/progress.h"

#include <cstdio>

#include "absl/strings/str_format.h"

namespace sdpo::trainers {

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "--:--";
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled),
      start_(std::chrono::steady_clock::now()) {}

void ProgressBar::Update(int64_t done, const std::string& status) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (start_done_ < 0) {
    start_done_ = done - 1;  // rates count from the first update (resumed runs start mid-way)
    start_ = now;
  }
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double rate = elapsed > 0 ? static_cast<double>(done - start_done_) / elapsed : 0;
  double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : -1;
  const int width = 24;
  int filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
  std::string bar(filled, '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r%s [%s] %lld/%lld %s | %.2f it/s ETA %s   ", label_.c_str(), bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(total_), status.c_str(), rate,
               FormatDuration(eta).c_str());
  std::fflush(stderr);
}

void ProgressBar::Finish() {
  if (!enabled_) return;
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

}  // namespace sdpo::trainers
