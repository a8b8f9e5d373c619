#include "io/command_line.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <vector>

#include "absl/flags/internal/parse.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/string_view.h"

namespace sdpo {

void ParseCommandLine(int argc, char** argv, const std::string& usage) {
  absl::FlagsUsageConfig config;
  // --help lists the flags of every source but Abseil's own (a program's flags may live in its
  // libraries, e.g. the parity tools' --dtype and --threads).
  config.contains_help_flags = [](absl::string_view file) {
    return file.find("absl/") == absl::string_view::npos;
  };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
  // absl::ParseCommandLine exits with status 1 after --help; the help asked for is a success
  // here, so the usage flags are handled below instead.
  namespace fi = absl::flags_internal;
  const std::vector<char*> rest = fi::ParseCommandLineImpl(
      argc, argv, fi::ArgvListAction::kRemoveParsedArgs, fi::UsageFlagsAction::kIgnoreUsage,
      fi::OnUndefinedFlag::kAbortIfUndefined);
  if (fi::HandleUsageFlags(std::cout, absl::ProgramUsageMessage()) != -1) std::exit(0);
  if (rest.size() > 1) {
    std::fprintf(stderr,
                 "%s: unexpected argument '%s' (flags are --name=value or --name value; see "
                 "--help)\n",
                 argv[0], rest[1]);
    std::exit(1);
  }
}

int RunReportingErrors(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace sdpo
