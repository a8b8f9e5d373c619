// //trainers:sample from prompts: a Wan2.1 checkpoint folder with the official file names (the
// tiny DiT of shared/fixtures/wan21, text_dim 48, and the tiny umT5 of shared/fixtures/umt5,
// dim 48, as models_t5_umt5-xxl-enc-bf16.safetensors with its t5_config.json and tokenizer)
// samples latents from --prompt / --prompts / --negative_prompt; the second run reads every
// embedding from the cache.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/error_testing.h"
#include "tests/models/fixture_util.h"

namespace sdpo {
namespace {

namespace fs = std::filesystem;
using testing::FixturePath;

// Runs the tool; returns the exit status and its output in *log.
int RunSample(const std::string& args, std::string* log) {
  const std::string out = ::testing::TempDir() + "/sample_log.txt";
  const int rc = std::system(absl::StrCat("trainers/sample ", args, " > ", out, " 2>&1").c_str());
  std::ifstream f(out);
  log->assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  std::fputs(log->c_str(), stdout);
  return rc;
}

TEST(SamplePromptTest, PromptsThroughTheFoldersTextEncoderAndCache) {
  const std::string dit = FixturePath("wan21/tiny_a.weights.safetensors");
  if (dit.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  const std::string dir = testing::FreshTmpDir("sample_prompt");
  fs::copy_file(dit, dir + "/diffusion_pytorch_model.safetensors");
  fs::copy_file(FixturePath("umt5/tiny_a.weights.safetensors"),
                dir + "/models_t5_umt5-xxl-enc-bf16.safetensors");
  fs::copy_file(FixturePath("umt5/tiny_a.config.json"), dir + "/t5_config.json");
  fs::copy_file(FixturePath("umt5/tiny_spm.model"), dir + "/tiny_spm.model");
  {
    std::ofstream f(dir + "/prompts.txt");
    f << "a dog runs\n\ntwo cats\n";
  }
  const std::string common = absl::StrCat(
      "--model=wan21 --checkpoint=", dir,
      " --frames=1 --height=16 --width=16 --steps=2 --guidance=3 --progress=false --threads=1");
  std::string log;
  ASSERT_EQ(
      RunSample(absl::StrCat(common, " --prompt='a cat' --prompts=", dir,
                             "/prompts.txt --negative_prompt=blurry --out=", dir, "/out/video.mp4"),
                &log),
      0);
  EXPECT_NE(log.find("text: 3 prompt(s) + negative"), std::string::npos);
  EXPECT_NE(log.find("(4 encoded, 0 cached"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir + "/out/video.latents.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/out/text_cache/encoder_hashes.json"));

  ASSERT_EQ(RunSample(absl::StrCat(common, " --prompt='a cat' --negative_prompt=blurry --out=", dir,
                                   "/out/again.mp4"),
                      &log),
            0);
  EXPECT_NE(log.find("(0 encoded, 2 cached"), std::string::npos);

  EXPECT_NE(RunSample(absl::StrCat(common, " --prompt=x --context=", dir,
                                   "/c.safetensors --out=", dir, "/out/x.mp4"),
                      &log),
            0);
  EXPECT_NE(log.find("exclude each other"), std::string::npos);
}

}  // namespace
}  // namespace sdpo
