// The command-line parity tool (//models/cogvideox:forward) reproduces the fixtures' outputs.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/models/cogvideox/cog_test_util.h"

namespace sdpo::cogvideox {
namespace {

std::string Tmp(const std::string& name) {
  const char* root = std::getenv("TEST_TMPDIR");
  return absl::StrCat(root ? root : "/tmp", "/", name);
}

int RunTool(const std::string& args) {
  const std::string cmd = absl::StrCat("models/cogvideox/forward ", args, " 2>", Tmp("stderr.txt"));
  return std::system(cmd.c_str());
}

TEST(ForwardToolTest, ReproducesTheFixtureOutputs) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  for (const std::string m : {"tiny_2b", "tiny_5b"}) {
    for (const std::string c : {"case1", "case2"}) {
      for (const std::string dtype : {"f32", "f64"}) {
        const std::string out = Tmp(m + c + dtype + ".out.safetensors");
        const std::string in = testing::FixtureFile(m + "." + c + ".safetensors");
        ASSERT_EQ(RunTool(absl::StrCat(
                      "--weights ", testing::FixtureFile(m + ".weights.safetensors"), " --config ",
                      testing::FixtureFile(m + ".config.json"), " --inputs ", in, " --out ", out,
                      " --dtype ", dtype, " --threads 1")),
                  0)
            << m << " " << c;
        auto got = SafetensorsFile::Open(out);
        auto ref = SafetensorsFile::Open(in);
        EXPECT_EQ(got->at("out_sample").dtype, SafetensorsDType::kF32);
        EXPECT_EQ(got->at("out_sample").shape, ref->at("out_sample").shape);
        const double err = testing::RelL2(
            testing::Load(*got, "out_sample", kF64),
            testing::Load(*ref, dtype == "f64" ? "out_sample_f64" : "out_sample", kF64));
        EXPECT_LE(err, dtype == "f64" ? 1e-7 : 1e-5) << m << " " << c << " " << dtype;
        std::printf("[parity] forward tool %s %s %s: out rel L2 %.3g\n", m.c_str(), c.c_str(),
                    dtype.c_str(), err);
      }
    }
  }
  // --rope inputs: the pipeline's own tables.
  const std::string in = testing::FixtureFile("tiny_5b.case2.safetensors");
  ASSERT_EQ(
      RunTool(absl::StrCat("--weights=", testing::FixtureFile("tiny_5b.weights.safetensors"),
                           " --config=", testing::FixtureFile("tiny_5b.config.json"),
                           " --inputs=", in, " --out=", Tmp("rope.safetensors"), " --rope inputs")),
      0);
  auto got = SafetensorsFile::Open(Tmp("rope.safetensors"));
  auto ref = SafetensorsFile::Open(in);
  EXPECT_LE(testing::RelL2(testing::Load(*got, "out_sample", kF64),
                           testing::Load(*ref, "out_sample", kF64)),
            1e-5);
}

TEST(ForwardToolTest, ErrorsExitNonZero) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  EXPECT_NE(RunTool("--weights x.safetensors"), 0);
  EXPECT_NE(RunTool("--bogus 1"), 0);
  // A case file is not a checkpoint.
  EXPECT_NE(RunTool(absl::StrCat("--weights ", testing::FixtureFile("tiny_2b.case1.safetensors"),
                                 " --inputs ", testing::FixtureFile("tiny_2b.case1.safetensors"),
                                 " --out ", Tmp("bad.safetensors"))),
            0);
  // The wrong model's weights.
  EXPECT_NE(RunTool(absl::StrCat("--weights ", testing::FixtureFile("tiny_5b.weights.safetensors"),
                                 " --config ", testing::FixtureFile("tiny_2b.config.json"),
                                 " --inputs ", testing::FixtureFile("tiny_2b.case1.safetensors"),
                                 " --out ", Tmp("bad.safetensors"))),
            0);
  EXPECT_EQ(RunTool("--help"), 0);
}

TEST(ForwardToolTest, ANonFiniteOutputIsAnErrorAndNothingIsWritten) {
  SDPO_SKIP_WITHOUT_COG_FIXTURES();
  // Finite inputs so large that the forward overflows.
  auto in = SafetensorsFile::Open(testing::FixtureFile("tiny_2b.case1.safetensors"));
  std::vector<std::vector<float>> keep;
  std::vector<TensorToWrite> tensors;
  for (const TensorEntry& e : in->tensors()) {
    keep.push_back(ReadAsF32(e));
    if (e.name == "in_hidden_states" || e.name == "in_encoder_hidden_states") {
      for (float& v : keep.back()) v = v >= 0 ? 3e38f : -3e38f;
    }
    tensors.push_back({e.name, SafetensorsDType::kF32, e.shape, keep.back().data(),
                       keep.back().size() * sizeof(float)});
  }
  const std::string huge = Tmp("huge.case.safetensors"), out = Tmp("huge.out.safetensors");
  WriteSafetensors(huge, tensors, in->metadata());
  EXPECT_NE(RunTool(absl::StrCat("--weights ", testing::FixtureFile("tiny_2b.weights.safetensors"),
                                 " --config ", testing::FixtureFile("tiny_2b.config.json"),
                                 " --inputs ", huge, " --out ", out)),
            0);
  FILE* err = std::fopen(Tmp("stderr.txt").c_str(), "r");
  ASSERT_NE(err, nullptr);
  char buf[4096] = {0};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, err);
  std::fclose(err);
  EXPECT_NE(std::string(buf, n).find("out_sample ["), std::string::npos) << buf;
  EXPECT_NE(std::string(buf, n).find("has a non-finite value"), std::string::npos) << buf;
  EXPECT_EQ(std::fopen(out.c_str(), "r"), nullptr);
}

}  // namespace
}  // namespace sdpo::cogvideox
