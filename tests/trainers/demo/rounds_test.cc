// The demo's rounds: round boundaries, the pair buffer's generator bookkeeping and the round
// files (a bit-exact round trip; hostile files give named errors).
#include "trainers/demo/rounds.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "nn/checkpoint_io.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace sdpo::demo {
namespace {

std::vector<data::PreferencePair> Pairs(int n, uint64_t seed) {
  std::vector<data::PreferencePair> out(n);
  for (int i = 0; i < n; ++i) {
    out[i].id = "pair " + std::to_string(i);
    out[i].prompt = "a red blob moving right slow";
    out[i].winner = ops::RandomNormal({4, 2, 3, 3}, seed, 100 * i);
    out[i].loser = ops::RandomNormal({4, 2, 3, 3}, seed, 100 * i + 50);
    out[i].context = ops::RandomNormal({6, 8}, seed + 1, 48 * i);
    out[i].weight = 0.5 * i;
  }
  return out;
}

std::string TempFile(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

TEST(RoundsTest, RoundBoundaries) {
  EXPECT_EQ(RoundEndStep(10, 3, 0), 3);
  EXPECT_EQ(RoundEndStep(10, 3, 1), 6);
  EXPECT_EQ(RoundEndStep(10, 3, 2), 10);
  EXPECT_EQ(RoundEndStep(7, 1, 0), 7);
  EXPECT_EQ(RoundOfStep(10, 3, 0), 0);
  EXPECT_EQ(RoundOfStep(10, 3, 2), 0);
  EXPECT_EQ(RoundOfStep(10, 3, 3), 1);  // a checkpoint at the end of round 0 resumes in round 1
  EXPECT_EQ(RoundOfStep(10, 3, 9), 2);
  EXPECT_EQ(RoundOfStep(10, 3, 10), 3);
  EXPECT_THROW(RoundEndStep(2, 3, 0), Error);  // more rounds than steps
  EXPECT_THROW(RoundEndStep(10, 3, 3), Error);
  EXPECT_EQ(GeneratorId(0), "");
  EXPECT_EQ(GeneratorId(2), "round2");
}

TEST(RoundsTest, BufferKeepsEveryRoundAndRecordsItsGenerator) {
  PairBuffer buffer;
  buffer.AddRound({0, "", ""}, Pairs(3, 1));
  EXPECT_THROW(buffer.AddRound({2, "round2", "g2"}, Pairs(1, 2)), Error);  // out of order
  EXPECT_THROW(buffer.AddRound({1, "round7", "g1"}, Pairs(1, 2)), Error);  // wrong id
  buffer.AddRound({1, "round1", "/runs/x/rounds/round1_generator.safetensors"}, Pairs(2, 3));
  ASSERT_EQ(buffer.rounds(), 2);
  EXPECT_EQ(buffer.pairs().size(), 5u);
  EXPECT_EQ(buffer.RoundSize(0), 3);
  EXPECT_EQ(buffer.RoundSize(1), 2);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(buffer.pairs()[i].generator, "");
  for (int i = 3; i < 5; ++i) EXPECT_EQ(buffer.pairs()[i].generator, "round1");
  EXPECT_EQ(buffer.generators()[1].adapters, "/runs/x/rounds/round1_generator.safetensors");
  // Earlier rounds' pairs are kept unchanged.
  EXPECT_EQ(buffer.pairs()[1].winner.ToVector(), Pairs(3, 1)[1].winner.ToVector());
  EXPECT_THROW(buffer.RoundSize(2), Error);
}

TEST(RoundsTest, RoundFilesRoundTripBitExactly) {
  const std::string path = TempFile("round1.safetensors");
  const std::string adapters = TempFile("round1_generator.safetensors");
  const Generator g{1, "round1", adapters};
  const auto pairs = Pairs(3, 7);
  SaveRoundPairs(path, g, pairs);
  Generator back;
  const auto loaded = LoadRoundPairs(path, &back);
  EXPECT_EQ(back.round, 1);
  EXPECT_EQ(back.id, "round1");
  EXPECT_EQ(back.adapters, adapters);  // stored relative to the file, read back absolute
  ASSERT_EQ(loaded.size(), pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    EXPECT_EQ(loaded[i].id, pairs[i].id);
    EXPECT_EQ(loaded[i].prompt, pairs[i].prompt);
    EXPECT_EQ(loaded[i].weight, pairs[i].weight);
    EXPECT_EQ(loaded[i].generator, "round1");
    EXPECT_EQ(loaded[i].winner.ToVector(), pairs[i].winner.ToVector());
    EXPECT_EQ(loaded[i].loser.ToVector(), pairs[i].loser.ToVector());
    EXPECT_EQ(loaded[i].context.ToVector(), pairs[i].context.ToVector());
  }
}

void ExpectLoadError(const std::string& path, const std::string& fragment) {
  try {
    LoadRoundPairs(path, nullptr);
    FAIL() << "no error for " << path;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(RoundsTest, HostileRoundFilesGiveNamedErrors) {
  const std::string not_a_round = TempFile("adapters.safetensors");
  nn::SaveSafetensors(not_a_round, {{"x", ops::RandomNormal({2}, 1, 0)}});
  ExpectLoadError(not_a_round, "lacks 'format'");
  const std::string missing = TempFile("missing.safetensors");
  auto pairs = Pairs(2, 3);
  SaveRoundPairs(missing, {0, "", ""}, pairs);
  nn::TensorMap t = nn::ReadSafetensors(missing);
  std::map<std::string, std::string> meta;
  nn::ReadSafetensors(missing, &meta);
  t.erase("1/loser");
  t["1/other"] = pairs[1].loser;
  nn::SaveSafetensors(missing, t, meta);
  ExpectLoadError(missing, "pair 1 lacks tensor '1/loser'");
  meta["generator"] = "round3";
  nn::SaveSafetensors(missing, t, meta);
  ExpectLoadError(missing, "generator 'round3' for round 0");
  const std::string garbage = TempFile("garbage.safetensors");
  std::ofstream(garbage) << "not a safetensors file";
  EXPECT_THROW(LoadRoundPairs(garbage, nullptr), Error);
}

}  // namespace
}  // namespace sdpo::demo
