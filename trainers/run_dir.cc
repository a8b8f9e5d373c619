#include "trainers/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <regex>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "tensor/error.h"

namespace sdpo::trainers {
namespace fs = std::filesystem;
namespace {

constexpr char kLockName[] = ".lock";

bool IsStaleTemporary(const std::string& name) {
  static const std::regex kTemporary(R"(.+\.tmp\.[0-9]+(\.[0-9]+)?)");
  return std::regex_match(name, kTemporary);
}

std::string ReadSmallFile(int fd) {
  char buf[512];
  const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Takes the folder's lock and records the holder in the lock file. Returns the descriptor.
int Lock(const std::string& dir) {
  const std::string path = (fs::path(dir) / kLockName).string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  SDPO_CHECK(fd >= 0, "run folder ", dir, ": cannot open the lock file ", path, ": ",
             std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = ReadSmallFile(fd);
    ::close(fd);
    SDPO_CHECK(err != EWOULDBLOCK, "run folder ", dir, " is in use by another trainer (",
               holder.empty() ? "holder unknown" : holder,
               "); wait for it to finish, stop it, or choose another --out");
    SDPO_FAIL("run folder ", dir, ": cannot lock ", path, ": ", std::strerror(err));
  }
  char host[256] = "unknown";
  ::gethostname(host, sizeof(host) - 1);
  const std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  const std::string holder = absl::StrCat("pid ", ::getpid(), " on host ", host, ", since ", when);
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, holder.data(), holder.size(), 0) < 0) {
    // The lock itself holds; only the holder's description for others is missing.
  }
  return fd;
}

}  // namespace

bool IsRunFile(const std::string& name) {
  static const char* const kFiles[] = {"metrics.jsonl",
                                       "checkpoint.safetensors",
                                       "adapters.safetensors",
                                       "summary.json",
                                       "report.md",
                                       "rounds.jsonl",
                                       "rounds",
                                       "evals.jsonl",
                                       "val_split.json",
                                       "validation"};
  for (const char* f : kFiles) {
    if (name == f) return true;
  }
  return name.size() > 4 && name.compare(name.size() - 4, 4, ".svg") == 0;
}

std::unique_ptr<RunDir> RunDir::Open(const std::string& dir, RunDirMode mode) {
  SDPO_CHECK(!dir.empty(), "run folder: empty --out");
  std::error_code ec;
  fs::create_directories(dir, ec);
  SDPO_CHECK(fs::is_directory(dir), "run folder ", dir, " is not a directory",
             ec ? absl::StrCat(" (", ec.message(), ")") : "");
  std::unique_ptr<RunDir> run(new RunDir(dir, Lock(dir)));
  std::vector<std::string> run_files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (IsStaleTemporary(name) && e.is_regular_file()) {
      const uintmax_t bytes = e.file_size();
      fs::remove(e.path());
      run->removed_.push_back(
          absl::StrCat(e.path().string(), " (", bytes, " bytes, left by an interrupted save)"));
    } else if (IsRunFile(name)) {
      run_files.push_back(name);
    }
  }
  std::sort(run_files.begin(), run_files.end());
  if (mode == RunDirMode::kFresh) {
    SDPO_CHECK(run_files.empty(), "run folder ", dir, " already holds a run (",
               absl::StrJoin(run_files, ", "),
               "); pass --resume to continue it, --overwrite to replace it, or "
               "choose another "
               "--out");
  } else if (mode == RunDirMode::kOverwrite) {
    for (const std::string& name : run_files) {
      fs::remove_all(fs::path(dir) / name);  // rounds/ and validation/ are folders
      run->removed_.push_back(absl::StrCat((fs::path(dir) / name).string(), " (--overwrite)"));
    }
  }
  return run;
}

RunDir::~RunDir() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

std::optional<CheckpointInfo> PeekCheckpoint(const std::string& path) {
  if (!fs::exists(path)) return std::nullopt;
  std::unique_ptr<SafetensorsFile> file = SafetensorsFile::Open(path);
  const auto& meta = file->metadata();
  auto step = meta.find("step");
  SDPO_CHECK(step != meta.end(), path,
             ": lacks metadata key 'step' (not a training-state "
             "checkpoint)");
  CheckpointInfo info;
  try {
    size_t used = 0;
    info.step = std::stoll(step->second, &used);
    SDPO_CHECK(used == step->second.size() && info.step >= 0, "");
  } catch (const std::exception&) {
    SDPO_FAIL(path, ": metadata 'step' is '", step->second, "', expected a step number");
  }
  auto config = meta.find("config");
  if (config != meta.end()) info.config = config->second;
  return info;
}

std::vector<std::string> DescriptionChanges(const std::string& saved, const std::string& now,
                                            const std::set<std::string>& allowed) {
  json::Value a, b;
  try {
    a = json::Parse(saved, "the checkpoint's run description");
    b = json::Parse(now, "this run's description");
  } catch (const Error&) {
    return {};  // a checkpoint written by another tool: nothing to compare
  }
  std::vector<std::string> changes;
  if (!a.is_object() || !b.is_object()) return changes;
  for (const auto& [key, value] : a.as_object()) {
    const json::Value* other = b.find(key);
    if (other == nullptr || allowed.count(key)) continue;
    const std::string x = json::Serialize(value), y = json::Serialize(*other);
    if (x != y) changes.push_back(absl::StrCat(key, ": ", x, " -> ", y));
  }
  return changes;
}

}  // namespace sdpo::trainers
