#include "trainers/reward_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "io/json.h"
#include "tensor/error.h"

namespace sdpo::trainers {
namespace {

// The first `n` bytes of `s` for an error message, "..." when cut.
std::string Head(const std::string& s, size_t n = 200) {
  return s.size() <= n ? s : s.substr(0, n) + "...";
}

// SIGPIPE ignored while the scorer runs: a command that exits without reading all of stdin
// must give an error naming it, not end the trainer. Restored on destruction.
class IgnoreSigpipe {
 public:
  IgnoreSigpipe() {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    ::sigaction(SIGPIPE, &ignore, &saved_);
  }
  ~IgnoreSigpipe() { ::sigaction(SIGPIPE, &saved_, nullptr); }

 private:
  struct sigaction saved_ {};
};

void CloseFd(int* fd) {
  if (*fd >= 0) ::close(*fd);
  *fd = -1;
}

// Appends what is readable on `fd`; false at end of file.
bool Drain(int fd, std::string* into) {
  char buf[65536];
  const ssize_t n = ::read(fd, buf, sizeof(buf));
  if (n > 0) {
    into->append(buf, static_cast<size_t>(n));
    return true;
  }
  return n < 0 && (errno == EINTR || errno == EAGAIN);
}

// What a shell's exit code usually means.
std::string ExitCodeHint(int code) {
  if (code == 127) return " (command not found?)";
  if (code > 128 && code < 128 + NSIG) {
    return absl::StrCat(" (a shell's report of signal ", code - 128, ", ", strsignal(code - 128),
                        ")");
  }
  return "";
}

}  // namespace

std::string RewardQueriesJson(const std::vector<RewardQuery>& queries) {
  json::Value::Array items;
  for (const RewardQuery& q : queries) {
    items.push_back(json::Value::MakeObject(
        {{"prompt", json::Value::String(q.prompt)}, {"video", json::Value::String(q.video)}}));
  }
  return json::Serialize(json::Value::MakeArray(std::move(items))) + "\n";
}

std::vector<double> ParseRewardScores(const std::string& stdout_text, size_t expected,
                                      const std::string& command) {
  json::Value v;
  try {
    v = json::Parse(stdout_text, "--reward_cmd output");
  } catch (const std::exception& e) {
    SDPO_FAIL("--reward_cmd='", command, "' printed something that is not a JSON list of ",
              expected, " numbers (", e.what(), "); its output begins: '", Head(stdout_text), "'");
  }
  SDPO_CHECK(v.is_array(), "--reward_cmd='", command, "' printed a JSON ", json::TypeName(v.type()),
             ", expected a list of ", expected, " numbers; its output begins: '", Head(stdout_text),
             "'");
  const json::Value::Array& items = v.as_array();
  SDPO_CHECK(items.size() == expected, "--reward_cmd='", command, "' printed ", items.size(),
             " scores for ", expected, " videos");
  std::vector<double> scores;
  for (size_t i = 0; i < items.size(); ++i) {
    SDPO_CHECK(items[i].is_number(), "--reward_cmd='", command, "': score ", i, " is a JSON ",
               json::TypeName(items[i].type()), ", expected a number");
    scores.push_back(items[i].as_double());
    SDPO_CHECK(std::isfinite(scores.back()), "--reward_cmd='", command, "': score ", i,
               " is not finite");
  }
  return scores;
}

RewardCommand::RewardCommand(std::string command, double timeout_s,
                             std::function<bool()> stop_requested)
    : command_(std::move(command)),
      timeout_s_(timeout_s),
      stop_requested_(std::move(stop_requested)) {
  SDPO_CHECK(!command_.empty(), "--reward_cmd is empty");
  SDPO_CHECK(std::isfinite(timeout_s_) && timeout_s_ > 0, "--reward_timeout_s=", timeout_s_,
             ": must be a finite number > 0");
}

std::vector<double> RewardCommand::Score(const std::vector<RewardQuery>& queries) const {
  const std::string input = RewardQueriesJson(queries);
  IgnoreSigpipe no_sigpipe;
  int in[2], out[2], err[2];
  SDPO_CHECK(
      ::pipe2(in, O_CLOEXEC) == 0 && ::pipe2(out, O_CLOEXEC) == 0 && ::pipe2(err, O_CLOEXEC) == 0,
      "--reward_cmd: cannot create pipes: ", std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child: its own process group (a timeout kills the scorer's children too), default
    // signal dispositions, the pipes as stdin/stdout/stderr.
    ::setpgid(0, 0);
    ::signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(in[0], 0) < 0 || ::dup2(out[1], 1) < 0 || ::dup2(err[1], 2) < 0) ::_exit(127);
    ::execl("/bin/sh", "sh", "-c", command_.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  int to_child = in[1], from_child = out[0], child_err = err[0];
  if (pid < 0) {
    CloseFd(&to_child);
    CloseFd(&from_child);
    CloseFd(&child_err);
    SDPO_FAIL("--reward_cmd: fork failed: ", std::strerror(errno));
  }
  ::setpgid(pid, pid);  // also from here: no race with a kill before the child ran
  ::fcntl(to_child, F_SETFL, O_NONBLOCK);

  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::string stdout_text, stderr_text;
  size_t written = 0;
  std::string killed_because;
  while (from_child >= 0 || child_err >= 0) {
    if (elapsed() > timeout_s_) {
      killed_because = absl::StrCat("did not finish within --reward_timeout_s=", timeout_s_,
                                    " s and was killed");
    } else if (stop_requested_ && stop_requested_()) {
      killed_because = "was killed: the trainer was asked to stop";
    } else if (stdout_text.size() > kMaxStdoutBytes) {
      killed_because = absl::StrCat("printed more than ", kMaxStdoutBytes, " bytes and was killed");
    }
    if (!killed_because.empty()) break;
    pollfd fds[3];
    int n = 0;
    if (to_child >= 0) fds[n++] = {to_child, POLLOUT, 0};
    if (from_child >= 0) fds[n++] = {from_child, POLLIN, 0};
    if (child_err >= 0) fds[n++] = {child_err, POLLIN, 0};
    if (::poll(fds, n, 100) <= 0) continue;
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == to_child) {
        const ssize_t w = ::write(to_child, input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        // Everything written, or the command closed its stdin (EPIPE): it reads no more.
        if (written == input.size() || (w < 0 && errno != EAGAIN && errno != EINTR)) {
          CloseFd(&to_child);
        }
      } else if (fds[i].fd == from_child) {
        if (!Drain(from_child, &stdout_text)) CloseFd(&from_child);
      } else if (!Drain(child_err, &stderr_text)) {
        CloseFd(&child_err);
      } else if (stderr_text.size() > 2 * kStderrTailBytes) {
        stderr_text.erase(0, stderr_text.size() - kStderrTailBytes);
      }
    }
  }
  CloseFd(&to_child);
  CloseFd(&from_child);
  CloseFd(&child_err);
  // The outputs are closed; the command may still run (it closed them, or it was killed).
  int status = 0;
  while (killed_because.empty()) {
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (elapsed() > timeout_s_) {
      killed_because = absl::StrCat("did not finish within --reward_timeout_s=", timeout_s_,
                                    " s and was killed");
    } else if (stop_requested_ && stop_requested_()) {
      killed_because = "was killed: the trainer was asked to stop";
    } else {
      ::usleep(10000);
    }
  }
  if (!killed_because.empty()) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    SDPO_FAIL("--reward_cmd='", command_, "' ", killed_because, " (", queries.size(),
              " videos to score)");
  }
  if (stderr_text.size() > kStderrTailBytes) {
    stderr_text.erase(0, stderr_text.size() - kStderrTailBytes);
  }
  const std::string tail =
      stderr_text.empty() ? " (no stderr)" : absl::StrCat("; its stderr ends:\n", stderr_text);
  SDPO_CHECK(!WIFSIGNALED(status), "--reward_cmd='", command_, "' was killed by signal ",
             WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")", tail);
  SDPO_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "--reward_cmd='", command_,
             "' failed with exit code ", WEXITSTATUS(status), ExitCodeHint(WEXITSTATUS(status)),
             tail);
  return ParseRewardScores(stdout_text, queries.size(), command_);
}

}  // namespace sdpo::trainers
