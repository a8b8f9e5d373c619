// The command-line parity tool (//models/wan21:forward) reproduces the fixtures' outputs.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/models/wan21/wan_test_util.h"

namespace sdpo::wan21 {
namespace {

std::string Tmp(const std::string& name) {
  const char* root = std::getenv("TEST_TMPDIR");
  return absl::StrCat(root ? root : "/tmp", "/", name);
}

int RunTool(const std::string& args) {
  const std::string cmd = absl::StrCat("models/wan21/forward ", args, " 2>", Tmp("stderr.txt"));
  return std::system(cmd.c_str());
}

TEST(ForwardToolTest, ReproducesTheFixtureOutputs) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  for (const std::string c : {"case1", "case2", "case3"}) {
    const std::string out = Tmp(c + ".out.safetensors");
    const std::string in = testing::FixtureFile("tiny_a." + c + ".safetensors");
    ASSERT_EQ(RunTool(absl::StrCat("--weights ", testing::FixtureFile("tiny_a.weights.safetensors"),
                                   " --inputs ", in, " --out ", out)),
              0)
        << c;
    auto got = SafetensorsFile::Open(out);
    auto ref = SafetensorsFile::Open(in);
    const int64_t b = std::stoll(ref->metadata().at("batch"));
    EXPECT_EQ(static_cast<int64_t>(got->tensors().size()), b);
    double worst = 0;
    for (int64_t i = 0; i < b; ++i) {
      const std::string name = absl::StrCat("out_", i);
      EXPECT_EQ(got->at(name).dtype, SafetensorsDType::kF32);
      EXPECT_EQ(got->at(name).shape, ref->at(name).shape);
      worst = std::max(worst, testing::RelL2(testing::Load(*got, name), testing::Load(*ref, name)));
    }
    EXPECT_LE(worst, 1e-5) << c;
    std::printf("[parity] forward tool %s: out rel L2 %.3g\n", c.c_str(), worst);
  }
  // --config and --dtype f64 (against the official f64 outputs).
  const std::string cfg = Tmp("config.json");
  FILE* f = std::fopen(cfg.c_str(), "w");
  std::fputs(testing::OpenFixture("tiny_a.weights.safetensors")->metadata().at("config").c_str(),
             f);
  std::fclose(f);
  const std::string in = testing::FixtureFile("tiny_a.case3.safetensors");
  ASSERT_EQ(RunTool(absl::StrCat("--weights=", testing::FixtureFile("tiny_a.weights.safetensors"),
                                 " --inputs=", in, " --out=", Tmp("f64.safetensors"), " --config ",
                                 cfg, " --dtype f64 --threads 1")),
            0);
  auto got = SafetensorsFile::Open(Tmp("f64.safetensors"));
  auto ref = SafetensorsFile::Open(in);
  for (int i = 0; i < 2; ++i) {
    EXPECT_LE(testing::RelL2(testing::Load(*got, absl::StrCat("out_", i), kF64),
                             testing::Load(*ref, absl::StrCat("out_", i, "_f64"), kF64)),
              1e-7);  // the f64 result rounded to f32 on output
  }
}

TEST(ForwardToolTest, ErrorsExitNonZero) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  EXPECT_NE(RunTool("--weights x.safetensors"), 0);
  EXPECT_NE(RunTool("--bogus 1"), 0);
  EXPECT_NE(RunTool(absl::StrCat("--weights ", testing::FixtureFile("tiny_a.case1.safetensors"),
                                 " --inputs ", testing::FixtureFile("tiny_a.case1.safetensors"),
                                 " --out ", Tmp("bad.safetensors"))),
            0);  // a case file is not a checkpoint
  EXPECT_EQ(RunTool("--help"), 0);
}

TEST(ForwardToolTest, ANonFiniteOutputIsAnErrorAndNothingIsWritten) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  // Finite latents so large that the forward overflows.
  auto in = testing::OpenFixture("tiny_a.case1.safetensors");
  std::vector<std::vector<float>> keep;
  std::vector<TensorToWrite> tensors;
  for (const TensorEntry& e : in->tensors()) {
    keep.push_back(ReadAsF32(e));
    if (e.name.rfind("x_", 0) == 0 || e.name.rfind("context_", 0) == 0) {
      for (float& v : keep.back()) v = v >= 0 ? 3e38f : -3e38f;
    }
    tensors.push_back({e.name, SafetensorsDType::kF32, e.shape, keep.back().data(),
                       keep.back().size() * sizeof(float)});
  }
  const std::string huge = Tmp("huge.case.safetensors"), out = Tmp("huge.out.safetensors");
  WriteSafetensors(huge, tensors, in->metadata());
  EXPECT_NE(RunTool(absl::StrCat("--weights ", testing::FixtureFile("tiny_a.weights.safetensors"),
                                 " --inputs ", huge, " --out ", out)),
            0);
  FILE* err = std::fopen(Tmp("stderr.txt").c_str(), "r");
  ASSERT_NE(err, nullptr);
  char buf[4096] = {0};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, err);
  std::fclose(err);
  EXPECT_NE(std::string(buf, n).find("out_0 [16, "), std::string::npos) << buf;
  EXPECT_NE(std::string(buf, n).find("has a non-finite value"), std::string::npos) << buf;
  EXPECT_EQ(std::fopen(out.c_str(), "r"), nullptr);
}

}  // namespace
}  // namespace sdpo::wan21
