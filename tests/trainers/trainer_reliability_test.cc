// What the Trainer guarantees when a run is interrupted, resumed twice, or its files go bad: a stop
// request writes the checkpoint at the step reached and the run continues bit-exactly; a finished
// run resumed changes nothing; metrics.jsonl is cut back to the checkpoint's step; a failed metrics
// write stops the run; NaN/Inf in a checkpoint is refused at resume.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "models/wan21/model.h"
#include "nn/checkpoint_io.h"
#include "tests/error_testing.h"
#include "tests/trainers/tiny_wan.h"
#include "trainers/trainer.h"

namespace sdpo::trainers {
namespace {

namespace fs = std::filesystem;
using sdpo::testing::ExpectErrorContains;
using sdpo::testing::FreshTmpDir;
using testing::SyntheticPairs;

NoiseSchedule Flow() { return NoiseSchedule::Flow(FlowScheduleConfig::Wan21()); }

std::vector<std::vector<double>> Params(const Trainer& t) {
  std::vector<std::vector<double>> out;
  for (const auto& [name, p] : t.TrainableParameters()) out.push_back(p.ToVector());
  return out;
}

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

int64_t CheckpointStep(const std::string& dir) {
  auto file = SafetensorsFile::Open(Trainer::CheckpointPath(dir));
  return std::stoll(file->metadata().at("step"));
}

TEST(TrainerReliabilityTest, AStopRequestCheckpointsTheStepReachedAndResumesBitExactly) {
  SyntheticPairs data(5);
  auto straight_model = testing::MakeTinyLoraModel();
  Trainer straight(testing::TinyRunConfig(FreshTmpDir("straight"), 6), Flow(), *straight_model,
                   nullptr, data, nullptr);
  straight.Run();

  const std::string dir = FreshTmpDir("stopped");
  {
    auto m = testing::MakeTinyLoraModel();
    TrainerConfig c = testing::TinyRunConfig(dir, 6);
    int polls = 0;
    c.stop_requested = [&polls] { return ++polls > 4; };  // as a signal during step 4
    Trainer t(c, Flow(), *m, nullptr, data, nullptr);
    t.Run();
    EXPECT_TRUE(t.interrupted());
    EXPECT_EQ(t.step(), 4);
  }
  EXPECT_EQ(CheckpointStep(dir), 4);
  EXPECT_EQ(Lines(dir + "/metrics.jsonl").size(), 4u);
  EXPECT_FALSE(fs::exists(dir + "/summary.json"));  // the report is for finished runs

  auto m = testing::MakeTinyLoraModel();
  Trainer resumed(testing::TinyRunConfig(dir, 6), Flow(), *m, nullptr, data, nullptr);
  resumed.Resume(Trainer::CheckpointPath(dir));
  resumed.Run();
  EXPECT_FALSE(resumed.interrupted());
  EXPECT_EQ(Params(straight), Params(resumed));
  EXPECT_EQ(Lines(dir + "/metrics.jsonl").size(), 6u);
}

TEST(TrainerReliabilityTest, AFinishedRunResumedChangesNothing) {
  SyntheticPairs data(4);
  const std::string dir = FreshTmpDir("finished");
  {
    auto m = testing::MakeTinyLoraModel();
    Trainer t(testing::TinyRunConfig(dir, 3), Flow(), *m, nullptr, data, nullptr);
    t.Run();
  }
  std::map<std::string, std::string> before;
  for (const auto& e : fs::directory_iterator(dir)) before[e.path().string()] = Read(e.path());
  auto m = testing::MakeTinyLoraModel();
  Trainer again(testing::TinyRunConfig(dir, 3), Flow(), *m, nullptr, data, nullptr);
  again.Resume(Trainer::CheckpointPath(dir));
  again.Run();
  std::map<std::string, std::string> after;
  for (const auto& e : fs::directory_iterator(dir)) after[e.path().string()] = Read(e.path());
  EXPECT_EQ(before, after);
}

TEST(TrainerReliabilityTest, MetricsAreCutBackToTheCheckpointOnResume) {
  SyntheticPairs data(4);
  const std::string dir = FreshTmpDir("metrics");
  {
    auto m = testing::MakeTinyLoraModel();
    Trainer t(testing::TinyRunConfig(dir, 3), Flow(), *m, nullptr, data, nullptr);
    t.Run();
  }
  // Steps 4..6 ran after the checkpoint and were lost with a kill -9, the last line torn.
  std::ofstream(dir + "/metrics.jsonl", std::ios::app)
      << "{\"step\": 4}\n{\"step\": 5}\n{\"step\": 6, \"lr";
  auto m = testing::MakeTinyLoraModel();
  Trainer resumed(testing::TinyRunConfig(dir, 5), Flow(), *m, nullptr, data, nullptr);
  resumed.Resume(Trainer::CheckpointPath(dir));
  resumed.Run();
  const std::vector<std::string> lines = Lines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(lines[i].rfind("{\"step\": " + std::to_string(i + 1) + ", \"lr\": ", 0), 0u)
        << lines[i];
  }
}

TEST(TrainerReliabilityTest, AFailedMetricsWriteStopsTheRun) {
  SyntheticPairs data(4);
  const std::string dir = FreshTmpDir("full_disk");
  fs::create_symlink("/dev/full",
                     dir + "/metrics.jsonl");  // every write: ENOSPC
  auto m = testing::MakeTinyLoraModel();
  Trainer t(testing::TinyRunConfig(dir, 3), Flow(), *m, nullptr, data, nullptr);
  ExpectErrorContains([&] { t.Run(); },
                      {"metrics.jsonl: cannot append the metrics line", "No space left on device"});
}

TEST(TrainerReliabilityTest, NonFiniteCheckpointStateIsRefusedAtResume) {
  SyntheticPairs data(4);
  const std::string dir = FreshTmpDir("nan_state");
  {
    auto m = testing::MakeTinyLoraModel();
    Trainer t(testing::TinyRunConfig(dir, 2), Flow(), *m, nullptr, data, nullptr);
    t.Run();
  }
  std::map<std::string, std::string> meta;
  nn::TensorMap tensors = nn::ReadSafetensors(Trainer::CheckpointPath(dir), &meta);
  std::string corrupted;
  for (auto& [key, t] : tensors) {
    if (key.rfind("optim/", 0) == 0 && t.numel() > 3) {
      std::vector<double> v = t.ToVector();
      v[3] = std::numeric_limits<double>::quiet_NaN();
      t = Tensor::FromVector(v, t.shape(), t.dtype());
      corrupted = key;
      break;
    }
  }
  ASSERT_FALSE(corrupted.empty());
  nn::SaveSafetensors(Trainer::CheckpointPath(dir), tensors, meta);
  auto m = testing::MakeTinyLoraModel();
  Trainer t(testing::TinyRunConfig(dir, 4), Flow(), *m, nullptr, data, nullptr);
  ExpectErrorContains([&] { t.Resume(Trainer::CheckpointPath(dir)); },
                      {"tensor \"" + corrupted + "\"", "non-finite value (nan) at flat index 3"});
}

}  // namespace
}  // namespace sdpo::trainers
