// A user's scorer for sampled videos (`//trainers:sdpo --reward_cmd="CMD"`): CMD runs under
// /bin/sh -c, reads a JSON list of {"prompt": ..., "video": PATH} on stdin and prints a JSON
// list of numbers on stdout, one finite score per video, in order (higher is better).
//
// Every way the command can fail is an sdpo::Error naming it: a non-zero exit (with the exit
// status and the end of its stderr), death by a signal, running past the timeout (the command's
// whole process group is killed with SIGKILL), output that is not a JSON list of numbers, a list
// of the wrong length, or a score that is not finite.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sdpo::trainers {

struct RewardQuery {
  std::string prompt;
  std::string video;  // path of the video file the command scores
};

// The JSON list CMD reads on stdin.
std::string RewardQueriesJson(const std::vector<RewardQuery>& queries);

// The scores in a command's stdout: a JSON list of `expected` finite numbers; otherwise an error
// naming `command`, what is wrong and the start of the output.
std::vector<double> ParseRewardScores(const std::string& stdout_text, size_t expected,
                                      const std::string& command);

class RewardCommand {
 public:
  // timeout_s > 0: the longest one call may take. stop_requested (may be empty) is polled while
  // the command runs; when it turns true the command is killed and Score throws.
  RewardCommand(std::string command, double timeout_s, std::function<bool()> stop_requested = {});

  // Runs the command once on `queries` and returns their scores.
  std::vector<double> Score(const std::vector<RewardQuery>& queries) const;

  const std::string& command() const { return command_; }

  // Output beyond this many bytes (stdout) is an error; stderr keeps its last bytes only.
  static constexpr size_t kMaxStdoutBytes = 64u << 20;
  static constexpr size_t kStderrTailBytes = 2000;

 private:
  std::string command_;
  double timeout_s_;
  std::function<bool()> stop_requested_;
};

}  // namespace sdpo::trainers
