#include "tests/fixtures_path.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

namespace sdpo::testing {
namespace {

namespace fs = std::filesystem;

bool IsDir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

bool IsFile(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// Walks up from `start` to the first directory holding a WORKSPACE file.
std::string RepoRootFrom(const fs::path& start) {
  std::error_code ec;
  fs::path p = fs::canonical(start, ec);
  if (ec) return "";
  if (!IsDir(p)) p = p.parent_path();
  for (; !p.empty(); p = p.parent_path()) {
    if (IsFile(p / "WORKSPACE") || IsFile(p / "WORKSPACE.bazel")) return p.string();
    if (p == p.root_path()) break;
  }
  return "";
}

std::vector<fs::path> HeaderCandidates() {
  std::vector<fs::path> out;
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr) {
    out.push_back(fs::path(srcdir) / (workspace != nullptr ? workspace : "sdpo") / "tests" /
                  "fixtures_path.h");
  }
  out.push_back(fs::path("tests") / "fixtures_path.h");  // cwd = runfiles root of the workspace
  return out;
}

}  // namespace

std::string FixturesDir() {
  if (const char* env = std::getenv("SDPO_FIXTURES"); env != nullptr && *env != '\0') {
    if (IsDir(env)) return fs::path(env).string();
  }
  std::vector<fs::path> starts = HeaderCandidates();
  starts.push_back(fs::current_path());
  for (const fs::path& start : starts) {
    std::error_code ec;
    if (!fs::exists(start, ec)) continue;
    const std::string root = RepoRootFrom(start);
    if (root.empty()) continue;
    const fs::path dir = fs::path(root).parent_path() / "shared" / "fixtures";
    if (IsDir(dir)) return fs::canonical(dir, ec).string();
  }
  return "";
}

std::string FixturePath(const std::string& relative) {
  const std::string dir = FixturesDir();
  if (dir.empty()) return "";
  const fs::path p = fs::path(dir) / relative;
  return IsFile(p) ? p.string() : "";
}

std::string FixturesNotFoundMessage() {
  return "reference fixtures not found: set SDPO_FIXTURES to the fixtures directory, or keep "
         "them at <repo root>/../shared/fixtures (the repo root is found from the real path of "
         "tests/fixtures_path.h in the test runfiles)";
}

}  // namespace sdpo::testing
