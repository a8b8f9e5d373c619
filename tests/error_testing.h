// Helpers for tests of error paths and files: an expected sdpo::Error with given message parts,
// and a fresh scratch directory under $TEST_TMPDIR.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tensor/error.h"

namespace sdpo::testing {

// Expects `fn` to throw an sdpo::Error whose message contains every one of `parts`.
template <typename Fn>
void ExpectErrorContains(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no sdpo::Error; expected one mentioning '" << (parts.empty() ? "" : parts[0])
                  << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) {
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    }
  }
}

// An empty directory $TEST_TMPDIR/<name> (/tmp when unset), created afresh.
inline std::string FreshTmpDir(const std::string& name) {
  namespace fs = std::filesystem;
  const char* root = std::getenv("TEST_TMPDIR");
  fs::path p = fs::path(root ? root : "/tmp") / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

}  // namespace sdpo::testing
