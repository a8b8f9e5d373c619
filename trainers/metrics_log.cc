#include "trainers/metrics_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "io/json.h"
#include "tensor/error.h"

namespace sdpo::trainers {

int64_t TruncateMetrics(const std::string& path, int64_t keep_through_step) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  std::ifstream in(path, std::ios::binary);
  SDPO_CHECK(in.good(), path, ": cannot open for reading: ", std::strerror(errno));
  std::string line;
  int64_t kept = 0;
  uint64_t keep_bytes = 0;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a last line without its newline was torn by a kill
    try {
      const json::Value v = json::Parse(line, path);
      const json::Value* step = v.is_object() ? v.find("step") : nullptr;
      if (step == nullptr || !step->is_int() || step->as_int() > keep_through_step) break;
    } catch (const Error&) {
      break;  // a line cut by a full disk or a kill: it and all after it go
    }
    keep_bytes += line.size() + 1;
    ++kept;
  }
  in.close();
  if (keep_bytes != static_cast<uint64_t>(st.st_size)) {
    SDPO_CHECK(::truncate(path.c_str(), static_cast<off_t>(keep_bytes)) == 0, path,
               ": cannot truncate to ", keep_bytes, " bytes: ", std::strerror(errno));
  }
  return kept;
}

MetricsLog::MetricsLog(std::string path, int64_t keep_through_step) : path_(std::move(path)) {
  TruncateMetrics(path_, keep_through_step);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  SDPO_CHECK(fd_ >= 0, path_, ": cannot open for appending: ", std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::Append(const std::string& line) {
  const std::string text = line + "\n";
  struct stat st;
  const bool regular = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode);
  const off_t before = regular ? st.st_size : 0;
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? std::strerror(errno) : "wrote 0 bytes";
      if (regular && done > 0 && ::ftruncate(fd_, before) != 0) {
        // Best effort: a torn line is also dropped when the run resumes.
      }
      SDPO_FAIL(path_, ": cannot append the metrics line: ", why,
                " (the checkpoint written before is intact; free space and "
                "rerun with --resume)");
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace sdpo::trainers
