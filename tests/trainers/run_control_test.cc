// The run folder (lock, refusal of reruns, --overwrite, stale temporaries), the checked and
// resumable metrics log, the stop signals, and the flag checks of a TrainerConfig.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tensor/error.h"
#include "tests/error_testing.h"
#include "trainers/config_check.h"
#include "trainers/metrics_log.h"
#include "trainers/run_dir.h"
#include "trainers/signals.h"

namespace sdpo::trainers {
namespace {

namespace fs = std::filesystem;
using sdpo::testing::ExpectErrorContains;
using sdpo::testing::FreshTmpDir;
using ::testing::HasSubstr;

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(RunDirTest, AFreshRunRefusesAFolderHoldingARun) {
  const std::string dir = FreshTmpDir("refuse");
  Write(dir + "/checkpoint.safetensors", "x");
  Write(dir + "/notes.txt", "mine");
  ExpectErrorContains([&] { RunDir::Open(dir, RunDirMode::kFresh); },
                      {"already holds a run (checkpoint.safetensors)", "--resume", "--overwrite"});
  EXPECT_EQ(Read(dir + "/checkpoint.safetensors"), "x");  // untouched
  // A run stopped in its first round (--until_round) has only its rounds so far.
  const std::string rounds_only = FreshTmpDir("rounds_only");
  Write(rounds_only + "/rounds.jsonl", "{}");
  fs::create_directories(rounds_only + "/rounds");
  ExpectErrorContains([&] { RunDir::Open(rounds_only, RunDirMode::kFresh); },
                      {"already holds a run (rounds, rounds.jsonl)"});
  // A folder with only files the trainer does not write is fine.
  const std::string other = FreshTmpDir("unrelated");
  Write(other + "/notes.txt", "mine");
  EXPECT_NE(RunDir::Open(other, RunDirMode::kFresh), nullptr);
}

TEST(RunDirTest, OverwriteRemovesOnlyTheRunsFiles) {
  const std::string dir = FreshTmpDir("overwrite");
  for (const char* f : {"metrics.jsonl", "checkpoint.safetensors", "adapters.safetensors",
                        "summary.json", "report.md", "loss.svg", "rounds.jsonl", "notes.txt"}) {
    Write(dir + "/" + f, "old");
  }
  fs::create_directories(dir + "/rounds");  // --rounds: the rounds' pairs, generators, videos
  Write(dir + "/rounds/round0_pairs.safetensors", "old");
  auto run = RunDir::Open(dir, RunDirMode::kOverwrite);
  EXPECT_EQ(run->removed().size(), 8u);
  EXPECT_FALSE(fs::exists(dir + "/checkpoint.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/loss.svg"));
  EXPECT_FALSE(fs::exists(dir + "/rounds.jsonl"));
  EXPECT_FALSE(fs::exists(dir + "/rounds"));
  EXPECT_EQ(Read(dir + "/notes.txt"), "old");
}

TEST(RunDirTest, ResumeKeepsTheRun) {
  const std::string dir = FreshTmpDir("resume");
  Write(dir + "/checkpoint.safetensors", "x");
  auto run = RunDir::Open(dir, RunDirMode::kResume);
  EXPECT_TRUE(run->removed().empty());
  EXPECT_EQ(Read(dir + "/checkpoint.safetensors"), "x");
}

TEST(RunDirTest, ASecondHolderIsRefusedNamingTheFirst) {
  const std::string dir = FreshTmpDir("lock");
  {
    auto first = RunDir::Open(dir, RunDirMode::kFresh);
    // flock is per open file: a second Open, even in this process, is a second trainer.
    ExpectErrorContains(
        [&] { RunDir::Open(dir, RunDirMode::kResume); },
        {"is in use by another trainer (pid " + std::to_string(::getpid()), "on host "});
  }
  // Released with its holder (the kernel also releases it when the process dies).
  EXPECT_NE(RunDir::Open(dir, RunDirMode::kResume), nullptr);
}

TEST(RunDirTest, StaleTemporariesOfInterruptedSavesAreRemoved) {
  const std::string dir = FreshTmpDir("stale");
  Write(dir + "/checkpoint.safetensors.tmp.4242.0", std::string(1000, 'x'));
  Write(dir + "/summary.json.tmp.4242", "{");
  Write(dir + "/my.tmp.notes", "keep");
  auto run = RunDir::Open(dir, RunDirMode::kFresh);
  EXPECT_FALSE(fs::exists(dir + "/checkpoint.safetensors.tmp.4242.0"));
  EXPECT_FALSE(fs::exists(dir + "/summary.json.tmp.4242"));
  EXPECT_TRUE(fs::exists(dir + "/my.tmp.notes"));
  ASSERT_EQ(run->removed().size(), 2u);
  EXPECT_THAT(run->removed()[0] + run->removed()[1], HasSubstr("1000 bytes"));
}

TEST(RunDirTest, DescriptionChangesNameTheKeys) {
  const std::string saved = R"({"lr": 0.001, "objective": "sdpo", "steps": 10, "seed": 1})";
  const std::string now = R"({"lr": 0.002, "objective": "sdpo", "steps": 20, "extra": 1})";
  EXPECT_THAT(DescriptionChanges(saved, now, {"steps"}),
              ::testing::ElementsAre("lr: 0.001 -> 0.002"));
  EXPECT_TRUE(DescriptionChanges(saved, saved, {}).empty());
  EXPECT_TRUE(DescriptionChanges("dp_train", now, {}).empty());  // not JSON: nothing to compare
}

TEST(RunDirTest, PeekOfAMissingCheckpointIsEmpty) {
  EXPECT_FALSE(PeekCheckpoint(FreshTmpDir("peek") + "/checkpoint.safetensors").has_value());
}

std::string Line(int step) { return absl::StrCat("{\"step\": ", step, ", \"lr\": 0.1}"); }

TEST(MetricsLogTest, AResumeKeepsTheLinesUpToTheCheckpoint) {
  const std::string path = FreshTmpDir("metrics") + "/metrics.jsonl";
  std::string text;
  for (int s = 1; s <= 7; ++s) text += Line(s) + "\n";
  Write(path, text + "{\"step\": 8, \"lr");  // a line torn by a kill
  {
    MetricsLog log(path, 5);  // the checkpoint is at step 5
    log.Append(Line(6));
  }
  std::string want;
  for (int s = 1; s <= 6; ++s) want += Line(s) + "\n";
  EXPECT_EQ(Read(path), want);
  MetricsLog fresh(path, 0);
  EXPECT_EQ(Read(path), "");
}

TEST(MetricsLogTest, ALineCutInTheMiddleEndsWhatIsKept) {
  const std::string path = FreshTmpDir("metrics_cut") + "/metrics.jsonl";
  Write(path, Line(1) + "\n{\"step\": 2, \"l\n" + Line(3) + "\n");
  EXPECT_EQ(TruncateMetrics(path, 10), 1);
  EXPECT_EQ(Read(path), Line(1) + "\n");
}

TEST(MetricsLogTest, AFullDiskIsAnErrorNamingTheFile) {
  MetricsLog log("/dev/full", 0);  // every write fails with ENOSPC
  ExpectErrorContains([&] { log.Append(Line(1)); },
                      {"/dev/full: cannot append the metrics line: No space left on device"});
}

TEST(StopSignalsTest, AFirstSignalAsksToStopASecondExitsAtOnce) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    InstallStopHandlers();
    if (StopRequested()) ::_exit(10);
    ::raise(SIGTERM);  // handled: the process goes on
    if (!StopRequested() || StopSignal() != SIGTERM) ::_exit(11);
    ::raise(SIGINT);  // the second signal: _exit(128 + SIGINT) inside the handler
    ::_exit(12);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);
}

struct FlagCase {
  std::string expected;
  std::function<void(TrainerConfig&)> set;
};

TEST(CheckTrainerConfigTest, EachBadValueNamesItsFlag) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<FlagCase> cases = {
      {"--beta=0:", [](TrainerConfig& c) { c.objective.beta = 0; }},
      {"--beta=nan:", [&](TrainerConfig& c) { c.objective.beta = nan; }},
      {"--lr=inf: the peak learning rate must be a finite number > 0",
       [&](TrainerConfig& c) { c.lr.base_lr = inf; }},
      {"--lr=0:", [](TrainerConfig& c) { c.lr.base_lr = 0; }},
      {"--save_every=-1:", [](TrainerConfig& c) { c.save_every = -1; }},
      {"--eval_every=-3:", [](TrainerConfig& c) { c.eval_every = -3; }},
      {"--max_grad_norm=nan:", [&](TrainerConfig& c) { c.max_grad_norm = nan; }},
      {"--max_bad_steps=0:", [](TrainerConfig& c) { c.max_bad_steps = 0; }},
      {"--steps=0:", [](TrainerConfig& c) { c.steps = 0; }},
      {"--batch=-2:", [](TrainerConfig& c) { c.batch = -2; }},
      {"--grad_accum=0:", [](TrainerConfig& c) { c.grad_accum = 0; }},
      {"--warmup=-1:", [](TrainerConfig& c) { c.lr.warmup_steps = -1; }},
      {"--zero=2:", [](TrainerConfig& c) { c.zero_stage = 2; }},
  };
  TrainerConfig good;
  CheckTrainerConfig(good);  // the defaults pass
  for (const FlagCase& f : cases) {
    TrainerConfig c;
    f.set(c);
    ExpectErrorContains([&] { CheckTrainerConfig(c); }, {f.expected});
  }
}

}  // namespace
}  // namespace sdpo::trainers
