// //models/umt5:encode reproduces the fixtures from the command line (both flag
// forms), and errors exit non-zero with a message.
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "tests/error_testing.h"
#include "tests/models/fixture_util.h"

namespace sdpo {
namespace {

using testing::FixturePath;
using testing::LoadFixtureTensor;
using testing::RelL2;

int RunTool(const std::string& args) {
  const std::string cmd = absl::StrCat("models/umt5/encode ", args, " 2>&1");
  return std::system(cmd.c_str());
}

TEST(EncodeToolTest, ReproducesTheFixtureHidden) {
  const std::string weights = FixturePath("umt5/tiny_a.weights.safetensors");
  if (weights.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  const std::string dir = testing::FreshTmpDir("encode_tool");
  for (const char* c : {"umt5/tiny_a.case2", "t5/tiny_a.case3"}) {
    const std::string w = FixturePath(std::string(c).substr(0, std::string(c).find('/')) +
                                      "/tiny_a.weights.safetensors");
    const std::string in = FixturePath(std::string(c) + ".safetensors");
    const std::string out = dir + "/out.safetensors";
    ASSERT_EQ(RunTool(absl::StrCat("--weights=", w, " --inputs ", in, " --out=", out)), 0);
    auto got = SafetensorsFile::Open(out);
    auto ref = SafetensorsFile::Open(in);
    EXPECT_LE(RelL2(LoadFixtureTensor(*got, "hidden"), LoadFixtureTensor(*ref, "hidden")), 1e-5)
        << c;
    if (ref->contains("context_1")) {
      EXPECT_LE(RelL2(LoadFixtureTensor(*got, "context_1"), LoadFixtureTensor(*ref, "context_1")),
                1e-5);
    }
  }
}

TEST(EncodeToolTest, ErrorsExitNonZero) {
  EXPECT_EQ(RunTool("--help"), 0);
  EXPECT_NE(RunTool("--weights x.safetensors"), 0);  // missing flags
  EXPECT_NE(RunTool("--weights x.safetensors --inputs y --out z --bogus 1"), 0);
  const std::string in = FixturePath("umt5/tiny_a.case1.safetensors");
  if (in.empty()) return;
  EXPECT_NE(RunTool(absl::StrCat("--weights ", in, " --inputs ", in, " --out /tmp/x")), 0);
}

}  // namespace
}  // namespace sdpo
