// Memory figures of this process for the benchmarks' reports.
#pragma once

namespace sdpo::bench {

// A kB field of /proc/self/status ("VmRSS:", "VmHWM:", ...) in MiB; -1 when absent.
double ProcStatusMib(const char* field);

}  // namespace sdpo::bench
