// The --reward_cmd protocol (trainers/reward_command.h) against small scorer scripts: a good
// scorer gets the queries as JSON and its scores come back in order; a scorer that crashes,
// is killed, hangs, prints garbage, the wrong count or a non-number gets an error naming it.
#include "trainers/reward_command.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/error_testing.h"

namespace sdpo::trainers {
namespace {

using sdpo::testing::ExpectErrorContains;
using sdpo::testing::FreshTmpDir;

// A scorer script in a fresh folder; returns the command that runs it.
std::string Script(const std::string& dir, const std::string& body) {
  const std::string path = dir + "/scorer.sh";
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  return "/bin/sh " + path;
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

const std::vector<RewardQuery> kThree = {
    {"a cat", "/v/0.mp4"}, {"a \"quoted\" dog", "/v/1.mp4"}, {"a cat", "/v/2.mp4"}};

TEST(RewardCommandTest, GoodScorerReadsTheQueriesAndItsScoresComeBackInOrder) {
  const std::string dir = FreshTmpDir("good");
  const std::string cmd = Script(dir, "cat > " + dir + "/stdin.json\necho '[0.5, -2, 3e1]'");
  const std::vector<double> scores = RewardCommand(cmd, 30).Score(kThree);
  EXPECT_EQ(scores, (std::vector<double>{0.5, -2, 30}));
  EXPECT_EQ(ReadAll(dir + "/stdin.json"),
            "[{\"prompt\":\"a cat\",\"video\":\"/v/0.mp4\"},"
            "{\"prompt\":\"a \\\"quoted\\\" dog\",\"video\":\"/v/1.mp4\"},"
            "{\"prompt\":\"a cat\",\"video\":\"/v/2.mp4\"}]\n");
}

TEST(RewardCommandTest, ScorerThatIgnoresALargeStdinStillWorks) {
  // More input than a pipe holds, never read: the write side must not block or kill us.
  std::vector<RewardQuery> many;
  for (int i = 0; i < 3000; ++i) many.push_back({"prompt", absl::StrCat("/videos/", i, ".mp4")});
  const std::string dir = FreshTmpDir("ignores_stdin");
  const std::string cmd = Script(dir, "exec 0<&-\necho \"[$(seq -s, 3000)]\"");
  const std::vector<double> scores = RewardCommand(cmd, 30).Score(many);
  ASSERT_EQ(scores.size(), 3000u);
  EXPECT_EQ(scores[2999], 3000);
}

TEST(RewardCommandTest, CrashNamesExitCodeAndStderrTail) {
  const std::string dir = FreshTmpDir("crash");
  const std::string cmd = Script(dir,
                                 "cat > /dev/null\necho 'loading scorer' >&2\n"
                                 "echo 'CUDA out of memory' >&2\nexit 3");
  ExpectErrorContains([&] { RewardCommand(cmd, 30).Score(kThree); },
                      {"--reward_cmd='" + cmd + "'", "exit code 3", "CUDA out of memory"});
}

TEST(RewardCommandTest, MissingCommandSaysSo) {
  ExpectErrorContains([&] { RewardCommand("/nonexistent/scorer --flag", 30).Score(kThree); },
                      {"exit code 127", "command not found?"});
}

TEST(RewardCommandTest, KilledBySignalIsNamed) {
  // The command's own shell killed, and a script whose shell reports its child's signal.
  ExpectErrorContains([&] { RewardCommand("kill -SEGV $$", 30).Score(kThree); },
                      {"killed by signal 11"});
  const std::string dir = FreshTmpDir("signal");
  ExpectErrorContains([&] { RewardCommand(Script(dir, "kill -SEGV $$"), 30).Score(kThree); },
                      {"exit code 139", "signal 11"});
}

TEST(RewardCommandTest, HangIsKilledAtTheTimeoutWithItsChildren) {
  const std::string dir = FreshTmpDir("hang");
  // The scorer's own child holds stdout open too: only killing the group ends it.
  const std::string cmd = Script(dir, "sleep 30 &\nsleep 30\necho '[1, 2, 3]'");
  const auto start = std::chrono::steady_clock::now();
  ExpectErrorContains([&] { RewardCommand(cmd, 0.5).Score(kThree); },
                      {"--reward_cmd='" + cmd + "'", "did not finish within --reward_timeout_s=0.5",
                       "killed", "3 videos"});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 10) << "the timeout did not end the command";
}

TEST(RewardCommandTest, StopRequestKillsTheCommand) {
  const std::string dir = FreshTmpDir("stop");
  const std::string cmd = Script(dir, "sleep 30");
  ExpectErrorContains([&] { RewardCommand(cmd, 60, [] { return true; }).Score(kThree); },
                      {"asked to stop"});
}

TEST(RewardCommandTest, GarbageOutputIsNamedWithItsStart) {
  const std::string dir = FreshTmpDir("garbage");
  const std::string cmd = Script(dir, "echo 'Traceback (most recent call last):'");
  ExpectErrorContains([&] { RewardCommand(cmd, 30).Score(kThree); },
                      {"not a JSON list of 3 numbers", "Traceback (most recent call last)"});
}

TEST(RewardCommandTest, WrongCountOrTypeOrNonFiniteIsRefused) {
  const std::string dir = FreshTmpDir("count");
  ExpectErrorContains([&] { RewardCommand(Script(dir, "echo '[1, 2]'"), 30).Score(kThree); },
                      {"printed 2 scores for 3 videos"});
  ExpectErrorContains(
      [&] { RewardCommand(Script(dir, "echo '{\"scores\": [1, 2, 3]}'"), 30).Score(kThree); },
      {"printed a JSON object, expected a list of 3 numbers"});
  ExpectErrorContains([&] { RewardCommand(Script(dir, "echo '[1, \"2\", 3]'"), 30).Score(kThree); },
                      {"score 1 is a JSON string, expected a number"});
  ExpectErrorContains([&] { RewardCommand(Script(dir, "echo '[1, 1e999, 3]'"), 30).Score(kThree); },
                      {"not a JSON list"});
  ExpectErrorContains([&] { RewardCommand(Script(dir, "true"), 30).Score(kThree); },
                      {"not a JSON list", "output begins: ''"});
}

TEST(RewardCommandTest, FlagValuesAreChecked) {
  ExpectErrorContains([] { RewardCommand("", 10); }, {"--reward_cmd is empty"});
  ExpectErrorContains([] { RewardCommand("true", 0); }, {"--reward_timeout_s=0"});
}

}  // namespace
}  // namespace sdpo::trainers
