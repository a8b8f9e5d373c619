// The run folder (--out) of one training process: what keeps reruns, concurrent trainers and
// interrupted saves from destroying a run (docs/checkpoints.md, "Guarantees").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sdpo::trainers {

// What the command line asked for when the folder may already hold a run.
enum class RunDirMode {
  kFresh,      // a new run: refused when the folder holds one
  kResume,     // continue the run in the folder (or start it without a checkpoint yet)
  kOverwrite,  // remove the run's files and start a new one
};

// Holds the run folder for the life of the object:
//  - a lock (flock on <dir>/.lock, which the kernel releases when the process ends, even by
//    kill -9): a second trainer on the same folder is refused, naming the holder (pid, host);
//  - kFresh refuses a folder that holds a run's files; kOverwrite removes them (only those:
//    never the folder or files the trainer did not write);
//  - temporary files of saves that a kill interrupted (<file>.tmp.<pid>[.<n>]) are removed:
//    with the lock held, no other writer can own them.
class RunDir {
 public:
  // Creates `dir` when needed. Throws sdpo::Error instead of touching another run.
  static std::unique_ptr<RunDir> Open(const std::string& dir, RunDirMode mode);
  ~RunDir();  // releases the lock
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;

  const std::string& dir() const { return dir_; }
  // What Open removed, for the user: stale temporaries and (kOverwrite) the old run's files.
  const std::vector<std::string>& removed() const { return removed_; }

 private:
  RunDir(std::string dir, int lock_fd) : dir_(std::move(dir)), lock_fd_(lock_fd) {}

  std::string dir_;
  int lock_fd_;
  std::vector<std::string> removed_;
};

// The files a training run writes into its folder (metrics, checkpoint, adapters, summary, report;
// the plots are every *.svg; with --rounds, rounds.jsonl and the folder rounds/; evaluations
// evals.jsonl, the held-out split val_split.json and the folder validation/).
bool IsRunFile(const std::string& name);

// The step and run description recorded in a training-state checkpoint, from its header only
// (nothing is loaded). nullopt when `path` does not exist.
struct CheckpointInfo {
  int64_t step = 0;
  std::string config;  // the run description (JSON) of the run that wrote it
};
std::optional<CheckpointInfo> PeekCheckpoint(const std::string& path);

// The differences between two run descriptions (JSON objects, see TrainerConfig::description) over
// the keys both hold, except `allowed`: "key: <saved> -> <now>". Nothing when either is not JSON
// (a checkpoint written by another tool, or by a library caller with its own description).
std::vector<std::string> DescriptionChanges(const std::string& saved, const std::string& now,
                                            const std::set<std::string>& allowed);

}  // namespace sdpo::trainers
