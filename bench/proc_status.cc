#include "bench/proc_status.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace sdpo::bench {

double ProcStatusMib(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field, 0) == 0) return std::atof(line.c_str() + std::strlen(field)) / 1024.0;
  }
  return -1;
}

}  // namespace sdpo::bench
