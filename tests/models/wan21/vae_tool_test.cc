// The command-line parity tool (//models/wan21:vae) reproduces the fixtures' outputs: encode
// cases (x -> mu, log_var) and decode cases (z -> video_raw, video), f32 and f64, the config from
// --config or from a vae_config.json next to the weights.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/error_testing.h"
#include "tests/models/wan21/vae_test_util.h"

namespace sdpo::wan21 {
namespace {

using ::sdpo::testing::LoadFixtureTensor;
using ::sdpo::testing::RelL2;
using testing::VaeFixtureFile;

int RunTool(const std::string& args, const std::string& dir) {
  const std::string cmd = absl::StrCat("models/wan21/vae ", args, " 2>", dir, "/stderr.txt");
  return std::system(cmd.c_str());
}

TEST(VaeToolTest, ReproducesEveryFixtureCase) {
  SDPO_SKIP_WITHOUT_VAE_FIXTURES();
  const std::string dir = ::sdpo::testing::FreshTmpDir("vae_tool");
  for (const std::string c : {"enc1", "enc2", "enc3", "dec1", "dec2", "dec3"}) {
    const std::string in = VaeFixtureFile("tiny_a." + c + ".safetensors");
    const std::string out = dir + "/" + c + ".safetensors";
    ASSERT_EQ(RunTool(absl::StrCat("--weights ", VaeFixtureFile("tiny_a.weights.safetensors"),
                                   " --config=", VaeFixtureFile("tiny_a.config.json"), " --inputs ",
                                   in, " --out ", out),
                      dir),
              0)
        << c;
    auto got = SafetensorsFile::Open(out);
    auto ref = SafetensorsFile::Open(in);
    const bool encode = c.rfind("enc", 0) == 0;
    for (const std::string name : encode ? std::vector<std::string>{"mu", "log_var", "mu_raw"}
                                         : std::vector<std::string>{"video_raw", "video"}) {
      ASSERT_TRUE(got->contains(name)) << c << " " << name;
      EXPECT_EQ(got->at(name).dtype, SafetensorsDType::kF32);
      EXPECT_EQ(got->at(name).shape, ref->at(name).shape) << c << " " << name;
      const double err = RelL2(LoadFixtureTensor(*got, name), LoadFixtureTensor(*ref, name));
      EXPECT_LE(err, 1e-5) << c << " " << name;
      std::printf("[parity] vae tool %s %s: rel L2 %.3g\n", c.c_str(), name.c_str(), err);
    }
  }
}

TEST(VaeToolTest, ReadsVaeConfigNextToTheWeightsAndRunsF64) {
  SDPO_SKIP_WITHOUT_VAE_FIXTURES();
  namespace fs = std::filesystem;
  const std::string dir = ::sdpo::testing::FreshTmpDir("vae_tool_folder");
  fs::copy_file(VaeFixtureFile("tiny_a.weights.safetensors"), dir + "/vae.safetensors");
  fs::copy_file(VaeFixtureFile("tiny_a.config.json"), dir + "/vae_config.json");
  const std::string in = VaeFixtureFile("tiny_a.dec2.safetensors");
  ASSERT_EQ(RunTool(absl::StrCat("--weights=", dir, "/vae.safetensors --inputs=", in, " --out=",
                                 dir, "/out.safetensors --dtype f64 --nochunked --threads 1"),
                    dir),
            0);
  auto got = SafetensorsFile::Open(dir + "/out.safetensors");
  EXPECT_EQ(got->at("video_raw").dtype, SafetensorsDType::kF64);
  EXPECT_LE(RelL2(LoadFixtureTensor(*got, "video_raw", kF64),
                  LoadFixtureTensor(*SafetensorsFile::Open(in), "video_raw_f64", kF64)),
            1e-9);
}

TEST(VaeToolTest, ReportsBadInputs) {
  SDPO_SKIP_WITHOUT_VAE_FIXTURES();
  const std::string dir = ::sdpo::testing::FreshTmpDir("vae_tool_errors");
  // The released config does not fit the tiny weights: the error names a key
  // and both shapes.
  EXPECT_NE(RunTool(absl::StrCat("--weights ", VaeFixtureFile("tiny_a.weights.safetensors"),
                                 " --inputs ", VaeFixtureFile("tiny_a.dec1.safetensors"), " --out ",
                                 dir, "/o.safetensors"),
                    dir),
            0);
  std::FILE* f = std::fopen((dir + "/stderr.txt").c_str(), "r");
  ASSERT_NE(f, nullptr);
  char buf[4096] = {0};
  std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  EXPECT_NE(std::string(buf).find("shape mismatch"), std::string::npos) << buf;
  EXPECT_NE(RunTool("--weights x --inputs y", dir), 0);  // no --out
}

TEST(VaeToolTest, ANonFiniteOutputIsAnErrorAndNothingIsWritten) {
  SDPO_SKIP_WITHOUT_VAE_FIXTURES();
  const std::string dir = ::sdpo::testing::FreshTmpDir("vae_tool_nan");
  // A latent with one NaN: the decoded video is not finite.
  auto in = SafetensorsFile::Open(VaeFixtureFile("tiny_a.dec1.safetensors"));
  std::vector<float> z = ReadAsF32(in->at("z"));
  z[0] = std::nanf("");
  const std::string nan_case = dir + "/nan.case.safetensors", out = dir + "/nan.out.safetensors";
  WriteSafetensors(nan_case, {{"z", SafetensorsDType::kF32, in->at("z").shape, z.data(),
                               z.size() * sizeof(float)}});
  EXPECT_NE(RunTool(absl::StrCat("--weights ", VaeFixtureFile("tiny_a.weights.safetensors"),
                                 " --config=", VaeFixtureFile("tiny_a.config.json"), " --inputs ",
                                 nan_case, " --out ", out),
                    dir),
            0);
  std::FILE* f = std::fopen((dir + "/stderr.txt").c_str(), "r");
  ASSERT_NE(f, nullptr);
  char buf[4096] = {0};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  EXPECT_NE(std::string(buf, n).find("has a non-finite value"), std::string::npos) << buf;
  EXPECT_EQ(std::fopen(out.c_str(), "r"), nullptr);
}

}  // namespace
}  // namespace sdpo::wan21
