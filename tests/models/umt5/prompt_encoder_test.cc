// Prompts to contexts: the Wan text path end to end against the official contexts (clean,
// tokenize, encode with the mask, trim), the CogVideoX mode (no mask, all rows), and the cache:
// a second encoder over the same cache reads every prompt instead of encoding it, and changed
// weights miss it.
#include "models/umt5/prompt_encoder.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "io/json.h"
#include "nn/checkpoint_io.h"
#include "tests/error_testing.h"
#include "tests/models/fixture_util.h"

namespace sdpo::umt5 {
namespace {

using testing::FixturePath;
using testing::LoadFixtureTensor;
using testing::RelL2;

PromptEncoderOptions WanOptions(const std::string& weights, const std::string& cache) {
  PromptEncoderOptions o;
  o.weights = weights;
  o.config = T5Config::FromFile(FixturePath("umt5/tiny_a.config.json"));  // text_len 24
  o.cache_dir = cache;
  return o;
}

TEST(PromptEncoderTest, WanContextsMatchTheOfficialPipelineAndAreCached) {
  const std::string weights = FixturePath("umt5/tiny_a.weights.safetensors");
  if (weights.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  const std::string cache = testing::FreshTmpDir("prompt_cache") + "/cache";
  const std::string long_prompt =
      "Caf\u00e9 in Z\u00fcrich at night, neon lights reflecting on wet streets while a tram "
      "passes by.";
  const std::vector<std::string> texts = {"A cat walks on the grass, slowly.", "Two dogs run.",
                                          long_prompt, "Two dogs run."};
  auto case1 = testing::OpenFixture("umt5/tiny_a.case1.safetensors");
  auto case2 = testing::OpenFixture("umt5/tiny_a.case2.safetensors");
  const std::vector<Tensor> refs = {
      LoadFixtureTensor(*case1, "context_0"), LoadFixtureTensor(*case2, "context_0"),
      LoadFixtureTensor(*case2, "context_1"), LoadFixtureTensor(*case2, "context_0")};

  auto first = PromptEncoder::Open(WanOptions(weights, cache));
  EXPECT_EQ(first->text_len(), 24);
  EXPECT_EQ(first->mode(), ContextMode::kTrimmed);
  std::vector<Tensor> got = first->EncodePrompts(texts);
  ASSERT_EQ(got.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_EQ(got[i].shape(), refs[i].shape()) << i;
    EXPECT_LE(RelL2(got[i], refs[i]), 1e-5) << i;
  }
  // The repeated prompt is encoded once.
  EXPECT_EQ(got[1].ToVector(), got[3].ToVector());
  EXPECT_EQ(first->encoded(), 3);
  EXPECT_TRUE(std::filesystem::exists(cache + "/encoder_hashes.json"));
  EXPECT_EQ(first->encoder_hash().size(), 64u);

  auto second = PromptEncoder::Open(WanOptions(weights, cache));
  EXPECT_EQ(second->encoder_hash(), first->encoder_hash());
  std::vector<Tensor> again = second->EncodePrompts(texts);
  EXPECT_EQ(second->encoded(), 0);
  EXPECT_EQ(second->cache_hits(), 3);
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(again[i].ToVector(), got[i].ToVector());

  // Other weights (one value changed) have another hash: nothing is read from the cache.
  const std::string dir = testing::FreshTmpDir("prompt_weights");
  nn::TensorMap w = nn::ReadSafetensors(weights);
  std::filesystem::copy_file(FixturePath("umt5/tiny_spm.model"), dir + "/tiny_spm.model");
  ops::Fill(ops::Narrow(w["norm.weight"], 0, 0, 1), 2.0);
  nn::SaveSafetensors(dir + "/w.safetensors", w);
  auto third = PromptEncoder::Open(WanOptions(dir + "/w.safetensors", cache));
  EXPECT_NE(third->encoder_hash(), first->encoder_hash());
  third->EncodePrompts({texts[0]});
  EXPECT_EQ(third->encoded(), 1);
  EXPECT_EQ(third->cache_hits(), 0);
}

TEST(PromptEncoderTest, CogVideoXModeEncodesEveryRowWithoutMask) {
  const std::string weights = FixturePath("t5/tiny_a.weights_hf.safetensors");
  if (weights.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  PromptEncoderOptions o;
  o.weights = weights;
  o.tokenizer = FixturePath("umt5/tiny_spm.model");  // same vocabulary size (300)
  o.text_len = 20;
  auto p = PromptEncoder::Open(o);
  EXPECT_EQ(p->mode(), ContextMode::kFull);  // shared_pos: T5 v1.1
  std::vector<Tensor> got = p->EncodePrompts({"a dog", ""});
  ASSERT_EQ(got[0].shape(), Shape({20, 48}));

  auto tokenizer = Tokenizer::Open(o.tokenizer);
  const Tokens t = tokenizer->Encode({"a dog", ""}, 20);
  auto encoder = LoadEncoder(weights);
  NoGradGuard no_grad;
  const Tensor hidden = encoder->Forward(t.ids, Tensor());
  // Batch 2 here, 1 in EncodePrompts: equal up to the GEMMs' summation order.
  EXPECT_LE(RelL2(got[0], ops::Select(hidden, 0, 0)), 1e-6);
  EXPECT_LE(RelL2(got[1], ops::Select(hidden, 0, 1)), 1e-6);
}

TEST(PromptEncoderTest, ErrorsNameTheCause) {
  const std::string weights = FixturePath("umt5/tiny_a.weights.safetensors");
  if (weights.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  PromptEncoderOptions o;
  o.weights = weights;  // shapes only: config names the official tokenizer, not beside
  testing::ExpectErrorContains([&] { PromptEncoder::Open(o); }, {"google/umt5-xxl/spiece.model"});
  EXPECT_EQ(Sha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace sdpo::umt5
