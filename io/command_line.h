// The command line of the project's programs: Abseil flags (ABSL_FLAG in the program's sources).
//
//   --help            the usage message and every flag the program's own sources define
//   --name=value      and --name value (booleans: --name, --noname, --name=true|false)
//   unknown flags and positional arguments are refused (exit status 1, naming the argument)
#pragma once

#include <functional>
#include <string>

namespace sdpo {

// Sets `usage` as the first lines of --help and parses argv. Exits with status 0 after printing
// the help asked for (--help, --helpfull, --version), 1 on an unknown flag, a bad value or a
// positional argument.
void ParseCommandLine(int argc, char** argv, const std::string& usage);

// Runs a program's body: an exception becomes "<program>: error: <what>" on stderr and exit
// status 1; otherwise the body's status.
int RunReportingErrors(const char* program, const std::function<int()>& body);

}  // namespace sdpo
