// metrics.jsonl: one JSON line per optimizer step ({"step": N, ...}).
#pragma once

#include <cstdint>
#include <string>

namespace sdpo::trainers {

// Appends lines with checked writes: a failed write (a full disk) is an sdpo::Error naming the file
// and the reason, and the partial line is cut off again, so the file only ever holds whole lines.
// Each line goes to the kernel when appended (nothing is buffered in the process).
class MetricsLog {
 public:
  // Opens `path` for appending, first keeping only the lines of steps <= keep_through_step: the
  // steps a resumed run is about to redo (after the checkpoint) and any torn last line are dropped;
  // a fresh run (0) starts an empty file. A path that is not a regular file (e.g. /dev/null) is
  // appended to as is.
  MetricsLog(std::string path, int64_t keep_through_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // `line` without its newline.
  void Append(const std::string& line);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// Cuts the metrics file at `path` after its last line of a step <= keep_through_step (and before
// any line that does not parse). Returns the number of lines kept; 0 when the file is missing.
int64_t TruncateMetrics(const std::string& path, int64_t keep_through_step);

}  // namespace sdpo::trainers
