#include "trainers/signals.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace sdpo::trainers {
namespace {

std::atomic<int> stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "read from a signal handler");

void WriteStderr(const char* s) {
  ssize_t ignored = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)ignored;
}

void OnStopSignal(int sig) {
  int expected = 0;
  if (stop_signal.compare_exchange_strong(expected, sig)) {
    WriteStderr(sig == SIGINT ? "\nsdpo: SIGINT" : "\nsdpo: SIGTERM");
    WriteStderr(
        " received: stopping after the current step and writing the "
        "checkpoint (a "
        "second signal exits at once)\n");
    return;
  }
  WriteStderr(
      "\nsdpo: second signal: exiting at once (the last checkpoint is "
      "intact)\n");
  ::_exit(128 + sig);
}

}  // namespace

void InstallStopHandlers() {
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // system calls in flight continue; the step finishes
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

bool StopRequested() { return stop_signal.load() != 0; }

int StopSignal() { return stop_signal.load(); }

}  // namespace sdpo::trainers
