// Memory and CPU figures of this process for the benchmarks' reports.
#pragma once

namespace sdpo::bench {

// A kB field of /proc/self/status ("VmRSS:", "VmHWM:", ...) in MiB; -1 when absent.
double ProcStatusMib(const char* field);

// User + system CPU seconds of the process so far, all threads (getrusage): on a shared machine
// a phase's CPU time says more than its wall time, which includes the other tenants' turns.
double ProcessCpuSeconds();

}  // namespace sdpo::bench
