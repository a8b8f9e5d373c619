// The diffusers CogVideoX folder: which parts are found, the T5 v1.1 text path from
// text_encoder/ + tokenizer/spiece.model (226 tokens, no mask: the empty prompt is the fixture's
// case 5, `</s>` and 225 pads), and errors that name the missing or mismatched part.
#include "trainers/cogvideox_folder.h"

#include <filesystem>

#include "gtest/gtest.h"
#include "tensor/ops.h"
#include "tests/error_testing.h"
#include "tests/models/fixture_util.h"
#include "tests/trainers/tiny_cogvideox_folder.h"

namespace sdpo::trainers {
namespace {

namespace fs = std::filesystem;
using testing::ExpectErrorContains;
using testing::FixturePath;

// The tiny folder, or "" when the fixtures are absent.
std::string TinyFolder(const std::string& name) {
  const std::string t5 = FixturePath("t5/tiny_a.weights_hf.safetensors");
  if (t5.empty()) return "";
  const std::string dir = testing::FreshTmpDir(name);
  testing::WriteTinyCogVideoXFolder(dir, fs::path(t5).parent_path().parent_path().string());
  return dir;
}

TEST(CogVideoXFolderTest, FindsThePartsOfTheDiffusersLayout) {
  const std::string dir = TinyFolder("cog_folder_parts");
  if (dir.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  const CogVideoXFolder f = FindCogVideoXCheckpoint(dir);
  EXPECT_EQ(f.transformer, dir + "/transformer");
  EXPECT_EQ(f.vae, dir + "/vae");
  EXPECT_EQ(f.text_encoder, dir + "/text_encoder");
  EXPECT_EQ(f.tokenizer, dir + "/tokenizer/spiece.model");
  fs::remove_all(dir + "/vae");
  EXPECT_EQ(FindCogVideoXCheckpoint(dir).vae, "");

  ExpectErrorContains([&] { FindCogVideoXCheckpoint(dir + "/nope"); }, {"nope", "not a directory"});
  ExpectErrorContains([&] { FindCogVideoXCheckpoint(dir + "/transformer"); },
                      {"no transformer/ folder"});
}

TEST(CogVideoXFolderTest, TheEmptyPromptIsTheFixtureCase) {
  const std::string dir = TinyFolder("cog_folder_text");
  if (dir.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  CogVideoXTextOptions o;
  o.text_dim = 48;
  o.cache_dir = dir + "/cache";
  auto encoder = OpenCogVideoXTextEncoder(FindCogVideoXCheckpoint(dir), o);
  EXPECT_EQ(encoder->mode(), umt5::ContextMode::kFull);
  EXPECT_EQ(encoder->text_len(), 226);
  const std::vector<Tensor> got = encoder->EncodePrompts({"", "a red square moving right"});
  ASSERT_EQ(got[0].shape(), Shape({226, 48}));
  ASSERT_EQ(got[1].shape(), Shape({226, 48}));
  auto case5 = testing::OpenFixture("t5/tiny_a.case5.safetensors");
  const Tensor want = ops::Select(testing::LoadFixtureTensor(*case5, "hidden"), 0, 0);
  // f32 against the official f32 output: the fixture's own f32-vs-f64 error is <= 6.5e-7.
  EXPECT_LE(testing::RelL2(got[0], want), 1e-5);
  // The pads are encoded (no mask): the rows after the prompt differ from the empty prompt's.
  EXPECT_GT(testing::RelL2(ops::Narrow(got[1], 0, 100, 126), ops::Narrow(got[0], 0, 100, 126)),
            1e-3);
  EXPECT_EQ(encoder->encoded(), 2);
  auto again = OpenCogVideoXTextEncoder(FindCogVideoXCheckpoint(dir), o);
  again->EncodePrompts({"a red square moving right"});
  EXPECT_EQ(again->cache_hits(), 1);
}

TEST(CogVideoXFolderTest, MissingOrMismatchedTextPartsAreNamed) {
  const std::string dir = TinyFolder("cog_folder_errors");
  if (dir.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  CogVideoXTextOptions o;
  // The fixture DiT's width (40) is not the tiny T5's (48).
  o.text_dim = 40;
  ExpectErrorContains([&] { OpenCogVideoXTextEncoder(FindCogVideoXCheckpoint(dir), o); },
                      {"text_encoder", "48-wide", "takes 40", "text_embed_dim"});
  o.text_dim = 48;
  fs::remove(dir + "/tokenizer/spiece.model");
  ExpectErrorContains([&] { OpenCogVideoXTextEncoder(FindCogVideoXCheckpoint(dir), o); },
                      {"tokenizer/spiece.model"});
  fs::remove_all(dir + "/text_encoder");
  ExpectErrorContains([&] { OpenCogVideoXTextEncoder(FindCogVideoXCheckpoint(dir), o); },
                      {"no text_encoder/"});
}

}  // namespace
}  // namespace sdpo::trainers
