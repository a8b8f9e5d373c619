// //models/umt5:tokenize reproduces the fixture ids and masks from the command
// line, from the fixture's tokenizer_cases.json and from a plain JSON list;
// errors exit non-zero.
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "io/json.h"
#include "tests/error_testing.h"
#include "tests/models/fixture_util.h"

namespace sdpo {
namespace {

using testing::FixturePath;

int RunTool(const std::string& args) {
  return std::system(absl::StrCat("models/umt5/tokenize ", args, " 2>&1").c_str());
}

TEST(TokenizeToolTest, ReproducesTheFixtureIds) {
  const std::string model = FixturePath("umt5/tiny_spm.model");
  if (model.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  const std::string dir = testing::FreshTmpDir("tokenize_tool");
  const std::string out = dir + "/ids.json";
  ASSERT_EQ(RunTool(absl::StrCat("--tokenizer=", model, " --text_len 32 --texts=",
                                 FixturePath("umt5/tokenizer_cases.json"), " --out ", out)),
            0);
  const json::Value got = json::ParseFile(out);
  auto f = testing::OpenFixture("umt5/tokenizer_cases.safetensors");
  const std::vector<double> ids = testing::LoadFixtureTensor(*f, "ids").ToVector();
  const std::vector<double> mask = testing::LoadFixtureTensor(*f, "mask").ToVector();
  ASSERT_EQ(got.as_array().size(), 30u);
  for (size_t i = 0; i < 30; ++i) {
    const auto& row_ids = got.as_array()[i].at("ids").as_array();
    const auto& row_mask = got.as_array()[i].at("mask").as_array();
    ASSERT_EQ(row_ids.size(), 32u);
    for (size_t j = 0; j < 32; ++j) {
      EXPECT_EQ(row_ids[j].as_int(), ids[i * 32 + j]) << i << " " << j;
      EXPECT_EQ(row_mask[j].as_int(), mask[i * 32 + j]) << i << " " << j;
    }
  }
  // A plain list, in input order.
  {
    std::ofstream texts(dir + "/texts.json");
    texts << "[\"\", \"A cat walks on the grass.\"]";
  }
  ASSERT_EQ(RunTool(absl::StrCat("--tokenizer ", model, " --text_len=4 --texts ", dir,
                                 "/texts.json --out=", out)),
            0);
  const json::Value two = json::ParseFile(out);
  ASSERT_EQ(two.as_array().size(), 2u);
  EXPECT_EQ(two.as_array()[0].at("ids").as_array()[0].as_int(), 1);  // </s> only
  EXPECT_EQ(two.as_array()[1].at("ids").as_array()[0].as_int(), 7);  // "▁A"
  EXPECT_EQ(two.as_array()[1].at("mask").as_array()[3].as_int(), 1);
}

TEST(TokenizeToolTest, ErrorsExitNonZero) {
  EXPECT_EQ(RunTool("--help"), 0);
  EXPECT_NE(RunTool("--tokenizer x.model"), 0);
  const std::string model = FixturePath("umt5/tiny_spm.model");
  if (model.empty()) return;
  EXPECT_NE(RunTool(absl::StrCat("--tokenizer ", model, " --text_len=0 --texts x --out y")), 0);
  EXPECT_NE(RunTool(absl::StrCat("--tokenizer ", model, " --text_len=8 --texts ", model,
                                 " --out /tmp/y")),
            0);  // not JSON
}

}  // namespace
}  // namespace sdpo
