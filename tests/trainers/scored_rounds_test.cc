// A round of scored pairs (trainers/scored_rounds.h) on a tiny Wan2.1 with a stand-in VAE: the
// policy's samples become mp4 files, the scorer command sees them with their prompts, the pairs
// follow its scores, and a round whose scorer failed continues from its folder (videos kept,
// not sampled again) once the scorer works, without calling it again after it succeeded.
#include "trainers/scored_rounds.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tensor/ops.h"
#include "tests/error_testing.h"
#include "tests/trainers/tiny_wan.h"

namespace sdpo::trainers {
namespace {

namespace fs = std::filesystem;
using sdpo::testing::ExpectErrorContains;
using sdpo::testing::FreshTmpDir;

// Latent [4, 2, 4, 4] -> a grey video [3, 5, 16, 16] whose level is tanh(mean of the latent).
class GreyDecoder : public WanVideoDecoder {
 public:
  Tensor Decode(const Tensor& latent) override {
    double mean = 0;
    for (double v : latent.ToVector()) mean += v;
    mean /= static_cast<double>(latent.numel());
    ++calls;
    return Tensor::Full({3, 5, 16, 16}, std::tanh(mean));
  }
  int calls = 0;
};

// Video -> latent [4, 2, 4, 4] filled with the video's mean level (what the file holds).
class MeanEncoder : public VideoLatentEncoder {
 public:
  Tensor Encode(const Tensor& video) override {
    double mean = 0;
    for (double v : video.ToVector()) mean += v;
    return Tensor::Full({4, 2, 4, 4}, mean / static_cast<double>(video.numel()));
  }
};

std::string Script(const std::string& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  return "/bin/sh " + path;
}

ScoredRoundRequest TinyRequest(const std::string& dir) {
  ScoredRoundRequest r;
  r.prompts = {"a red ball", "a blue cube"};
  for (int p = 0; p < 2; ++p) {
    r.contexts.prompts.push_back(ops::RandomNormal({3, 8}, 100 + p, 0, kF32, Device::CPU()));
  }
  r.sample.latent_shape = {4, 2, 4, 4};
  r.sample.samples_per_prompt = 4;
  r.sample.seed = 7;
  r.sample.options.steps = 2;
  r.sample.options.guide_scale = 1.0;
  r.sample.progress = false;
  r.clip.frames = 5;
  r.clip.height = 16;
  r.clip.width = 16;
  r.clip.fps = 8;
  r.dir = dir;
  return r;
}

TEST(ScoredRoundsTest, PairsFollowTheScoresOfConsecutiveSamples) {
  const auto pairs = PairsFromScores({0.1, 0.9, 3, 2, 5, 5.05, 1, 1}, 4, 0.1);
  ASSERT_EQ(pairs.size(), 2u);  // (5, 5.05) and (1, 1) are within the gap
  EXPECT_EQ(pairs[0], (std::pair<int64_t, int64_t>{1, 0}));
  EXPECT_EQ(pairs[1], (std::pair<int64_t, int64_t>{2, 3}));
  ExpectErrorContains([] { PairsFromScores({1, 2, 3}, 3, 0); }, {"an even number >= 2"});
}

TEST(ScoredRoundsTest, ARoundSamplesScoresPairsAndResumesAfterAFailedScorer) {
  const std::string dir = FreshTmpDir("round");
  auto model = testing::MakeTinyLoraModel();
  GreyDecoder decoder;
  MeanEncoder encoder;
  ScoredRoundRequest request = TinyRequest(dir + "/round0");

  // A scorer that crashes: a named error; the videos stay in the round's folder.
  RewardCommand crash(Script(dir + "/crash.sh", "cat > /dev/null; echo 'no GPU' >&2; exit 2"), 30);
  ExpectErrorContains([&] { ScoredRound(*model, decoder, encoder, crash, request, nullptr); },
                      {"exit code 2", "no GPU"});
  const std::vector<std::string> videos = RoundVideoPaths(request);
  ASSERT_EQ(videos.size(), 8u);
  for (const std::string& v : videos) EXPECT_GT(fs::file_size(v), 0u) << v;
  EXPECT_EQ(decoder.calls, 8);
  EXPECT_FALSE(fs::exists(dir + "/round0/scores.json"));

  // A working scorer: scores 8, 1, 2, 7, ... (samples 0 > 1, 3 > 2 of prompt 0), logs stdin.
  RewardCommand good(Script(dir + "/good.sh", "cat > " + dir +
                                                  "/stdin.json\n"
                                                  "echo '[8, 1, 2, 7, 3, 3, 0, 4]'"),
                     30);
  ScoredRoundStats stats;
  std::vector<data::PreferencePair> pairs =
      ScoredRound(*model, decoder, encoder, good, request, &stats);
  EXPECT_EQ(decoder.calls, 8) << "the kept videos were sampled again";
  EXPECT_FALSE(stats.sampled);
  EXPECT_TRUE(stats.scored);
  ASSERT_EQ(pairs.size(), 3u);  // prompt 1's first two samples tie
  EXPECT_EQ(stats.mean_score_winner, (8 + 7 + 4) / 3.0);
  EXPECT_EQ(stats.mean_score_loser, (1 + 2 + 0) / 3.0);
  EXPECT_EQ(pairs[0].prompt, "a red ball");
  EXPECT_EQ(pairs[2].prompt, "a blue cube");
  EXPECT_EQ(pairs[2].id, "round0 p1 #1");
  // The latents come from the files (the encoder's view of the decoded videos).
  EXPECT_EQ(pairs[0].winner.shape(), (Shape{4, 2, 4, 4}));
  EXPECT_EQ(pairs[2].context.ToVector(), request.contexts.prompts[1].ToVector());
  std::ifstream in(dir + "/stdin.json");
  std::stringstream seen;
  seen << in.rdbuf();
  EXPECT_NE(seen.str().find("{\"prompt\":\"a blue cube\",\"video\":\"" +
                            fs::absolute(videos[7]).string() + "\"}"),
            std::string::npos)
      << seen.str();

  // Done once: the scores are kept; a scorer that would fail is not called again.
  ScoredRoundStats again;
  EXPECT_EQ(ScoredRound(*model, decoder, encoder, crash, request, &again).size(), 3u);
  EXPECT_FALSE(again.scored);
}

}  // namespace
}  // namespace sdpo::trainers
