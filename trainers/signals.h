// Graceful stop on SIGTERM (a cluster's preemption) and SIGINT (Ctrl-C): the first signal asks the
// trainer to stop after the current step, write its checkpoint and exit with kExitInterrupted; a
// second signal ends the process at once with 128 + the signal number, as the default action would
// have (docs/checkpoints.md, "Guarantees").
#pragma once

namespace sdpo::trainers {

// EX_TEMPFAIL (sysexits.h): the run stopped early but its checkpoint is complete; rerunning the
// same command with --resume continues it bit-exactly.
constexpr int kExitInterrupted = 75;

// Installs the handlers for SIGTERM and SIGINT (once per process).
void InstallStopHandlers();
// True once a first SIGTERM/SIGINT arrived (async-signal-safe to read).
bool StopRequested();
// The signal that asked for the stop (0 when none), e.g. for "stopped by SIGTERM".
int StopSignal();

}  // namespace sdpo::trainers
