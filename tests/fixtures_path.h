// Locates the shared reference fixtures (../shared/fixtures next to the repository root).
//
//   1. $SDPO_FIXTURES, when it names a directory;
//   2. else the real path of this header in the test's runfiles (it is a data dependency of
//      //tests:fixtures_path), walked up to the directory holding WORKSPACE, then
//      <repo root>/../shared/fixtures;
//   3. else the same walk from the current directory.
// Returns "" when none exists; tests then GTEST_SKIP() << FixturesNotFoundMessage().
#pragma once

#include <string>

namespace sdpo::testing {

std::string FixturesDir();
// FixturesDir() + "/" + relative, or "" when the fixtures directory or the file is missing.
std::string FixturePath(const std::string& relative);
// Explains where the fixtures were looked for.
std::string FixturesNotFoundMessage();

}  // namespace sdpo::testing
