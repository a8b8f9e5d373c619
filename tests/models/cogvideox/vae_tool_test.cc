// The command-line parity tool (//models/cogvideox:vae) reproduces the fixtures from the command
// line: an encode case (x -> mean, logvar, latents) and a decode case (z -> video) in f32, a
// decode in f64 with the config read from a diffusers-style vae/ folder, a tiled decode
// (--tiling) against the official tiled_decode, and bad inputs fail with a nonzero exit and a
// message.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/error_testing.h"
#include "tests/models/cogvideox/vae_test_util.h"

namespace sdpo::cogvideox {
namespace {

using ::sdpo::testing::LoadFixtureTensor;
using ::sdpo::testing::RelL2;
using testing::VaeFixtureFile;

int RunTool(const std::string& args, const std::string& dir) {
  const std::string cmd = absl::StrCat("models/cogvideox/vae ", args, " 2>", dir, "/stderr.txt");
  return std::system(cmd.c_str());
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(CogVideoXVaeToolTest, ReproducesAnEncodeAndADecodeCase) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  const std::string dir = ::sdpo::testing::FreshTmpDir("cog_vae_tool");
  for (const std::string c : {"enc4", "dec5"}) {
    const std::string in = VaeFixtureFile("tiny_a." + c + ".safetensors");
    const std::string out = dir + "/" + c + ".safetensors";
    ASSERT_EQ(RunTool(absl::StrCat("--weights ", VaeFixtureFile("tiny_a.weights.safetensors"),
                                   " --config=", VaeFixtureFile("tiny_a.config.json"), " --inputs ",
                                   in, " --out ", out),
                      dir),
              0)
        << c << ": " << ReadFile(dir + "/stderr.txt");
    auto got = SafetensorsFile::Open(out);
    auto ref = SafetensorsFile::Open(in);
    const bool encode = c.rfind("enc", 0) == 0;
    for (const std::string name : encode ? std::vector<std::string>{"mean", "logvar", "latents"}
                                         : std::vector<std::string>{"video"}) {
      ASSERT_TRUE(got->contains(name)) << c << " " << name;
      EXPECT_EQ(got->at(name).dtype, SafetensorsDType::kF32);
      EXPECT_EQ(got->at(name).shape, ref->at(name).shape) << c << " " << name;
      const double err = RelL2(LoadFixtureTensor(*got, name), LoadFixtureTensor(*ref, name));
      EXPECT_LE(err, 1e-5) << c << " " << name;
      std::printf("[parity] cogvideox vae tool %s %s: rel L2 %.3g\n", c.c_str(), name.c_str(), err);
    }
  }
}

TEST(CogVideoXVaeToolTest, ReadsADiffusersFolderAndRunsF64) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  namespace fs = std::filesystem;
  const std::string dir = ::sdpo::testing::FreshTmpDir("cog_vae_tool_folder");
  fs::create_directories(dir + "/vae");
  fs::copy_file(VaeFixtureFile("tiny_a.weights.safetensors"),
                dir + "/vae/diffusion_pytorch_model.safetensors");
  fs::copy_file(VaeFixtureFile("tiny_a.config.json"), dir + "/vae/config.json");
  const std::string in = VaeFixtureFile("tiny_a.dec2.safetensors");
  ASSERT_EQ(RunTool(absl::StrCat("--weights=", dir, "/vae --inputs=", in, " --out=", dir,
                                 "/out.safetensors --dtype f64 --threads 1"),
                    dir),
            0)
      << ReadFile(dir + "/stderr.txt");
  auto got = SafetensorsFile::Open(dir + "/out.safetensors");
  EXPECT_EQ(got->at("video").dtype, SafetensorsDType::kF64);
  EXPECT_LE(RelL2(LoadFixtureTensor(*got, "video", kF64),
                  LoadFixtureTensor(*SafetensorsFile::Open(in), "video_f64", kF64)),
            1e-9);
}

TEST(CogVideoXVaeToolTest, TilingReproducesTheOfficialTiledDecode) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  const std::string dir = ::sdpo::testing::FreshTmpDir("cog_vae_tool_tiled");
  const std::string in = "tests/models/cogvideox/testdata/tiled/tiny_a.tiled_dec.safetensors";
  const std::string weights = VaeFixtureFile("tiny_a.weights.safetensors");
  const std::string config = VaeFixtureFile("tiny_a.config.json");
  ASSERT_EQ(RunTool(absl::StrCat("--weights=", weights, " --config=", config, " --inputs=", in,
                                 " --out=", dir, "/out.safetensors --tiling=32x40:16x24"),
                    dir),
            0)
      << ReadFile(dir + "/stderr.txt");
  auto got = SafetensorsFile::Open(dir + "/out.safetensors");
  EXPECT_EQ(got->metadata().at("tiling"), "32x40:16x24");
  EXPECT_LE(RelL2(LoadFixtureTensor(*got, "video"),
                  LoadFixtureTensor(*SafetensorsFile::Open(in), "video")),
            1e-5);
  // A spec that cannot tile is refused before any work, naming the rule.
  EXPECT_NE(RunTool(absl::StrCat("--weights=", weights, " --config=", config, " --inputs=", in,
                                 " --out=", dir, "/bad.safetensors --tiling=30x40:16x24"),
                    dir),
            0);
  EXPECT_NE(ReadFile(dir + "/stderr.txt").find("multiples of 8"), std::string::npos);
}

TEST(CogVideoXVaeToolTest, ReportsBadInputs) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  const std::string dir = ::sdpo::testing::FreshTmpDir("cog_vae_tool_errors");
  // The 2B defaults do not fit the tiny weights: the error names a key and both shapes.
  EXPECT_NE(RunTool(absl::StrCat("--weights ", VaeFixtureFile("tiny_a.weights.safetensors"),
                                 " --inputs ", VaeFixtureFile("tiny_a.dec1.safetensors"), " --out ",
                                 dir, "/o.safetensors"),
                    dir),
            0);
  EXPECT_NE(ReadFile(dir + "/stderr.txt").find("encoder.conv_in.conv.weight"), std::string::npos);
  // A file with neither x nor z.
  EXPECT_NE(RunTool(absl::StrCat("--weights ", VaeFixtureFile("tiny_a.weights.safetensors"),
                                 " --config ", VaeFixtureFile("tiny_a.config.json"), " --inputs ",
                                 VaeFixtureFile("tiny_a.weights.safetensors"), " --out ", dir,
                                 "/o.safetensors"),
                    dir),
            0);
  EXPECT_NE(ReadFile(dir + "/stderr.txt").find("neither x"), std::string::npos);
}

}  // namespace
}  // namespace sdpo::cogvideox
