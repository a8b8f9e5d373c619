// //trainers:sample and its library (trainers/sampling.h): the checkpoint folder's files, the
// latent shape of a video size, the context file, and the binary end to end on a tiny
// Wan2.1-shaped checkpoint folder made from the shared fixtures (official file names).
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "io/video.h"
#include "models/wan21/vae.h"
#include "nn/checkpoint_io.h"
#include "tensor/ops.h"
#include "tests/error_testing.h"
#include "tests/fixtures_path.h"
#include "trainers/sampling.h"

namespace sdpo::trainers {
namespace {

namespace fs = std::filesystem;
using sdpo::testing::ExpectErrorContains;
using sdpo::testing::FreshTmpDir;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs //trainers:sample with `flags`; returns its exit code, stdout+stderr in `output`.
int RunSample(const std::string& flags, const std::string& dir, std::string* output) {
  const std::string log = dir + "/sample.log";
  const int rc = std::system(("trainers/sample " + flags + " > " + log + " 2>&1").c_str());
  *output = ReadText(log);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// A Wan2.1 checkpoint folder as released (official file names), from the tiny fixtures: DiT
// tiny_a (in_dim 16, text_dim 48) and VAE tiny_a (z_dim 16, with its vae_config.json).
std::string MakeTinyCheckpointFolder(const std::string& dir) {
  const std::string dit = sdpo::testing::FixturePath("wan21/tiny_a.weights.safetensors");
  const std::string vae = sdpo::testing::FixturePath("wan_vae/tiny_a.weights.safetensors");
  const std::string vae_config = sdpo::testing::FixturePath("wan_vae/tiny_a.config.json");
  if (dit.empty() || vae.empty() || vae_config.empty()) return "";
  const std::string folder = dir + "/Wan2.1-T2V-tiny";
  fs::create_directories(folder);
  fs::create_symlink(dit, folder + "/" + kWanDitFile);
  fs::create_symlink(vae, folder + "/" + kWanVaeSafetensors);
  fs::copy_file(vae_config, folder + "/vae_config.json");
  return folder;
}

void WriteContexts(const std::string& path, int64_t text_dim, bool with_negative) {
  nn::TensorMap t;
  t["context"] = ops::RandomNormal({7, text_dim}, 11, 0);
  if (with_negative) t["negative"] = ops::RandomNormal({5, text_dim}, 12, 0);
  nn::SaveSafetensors(path, t);
}

TEST(SampleTest, LatentShapeOfAVideoSize) {
  EXPECT_EQ(WanLatentShape(16, 81, 480, 832), (Shape{16, 21, 60, 104}));
  EXPECT_EQ(WanLatentShape(16, 1, 16, 32), (Shape{16, 1, 2, 4}));
  ExpectErrorContains([] { WanLatentShape(16, 80, 480, 832); }, {"--frames=80", "1 + 4k"});
  ExpectErrorContains([] { WanLatentShape(16, 81, 488, 832); }, {"--height=488", "16"});
  ExpectErrorContains([] { WanLatentShape(16, 81, 480, 0); }, {"--width=0"});
}

TEST(SampleTest, FindsTheOfficialFilesOfACheckpointFolder) {
  const std::string dir = FreshTmpDir("sample_folder");
  ExpectErrorContains([&] { FindWanCheckpoint(dir + "/none"); }, {"not a directory"});
  ExpectErrorContains([&] { FindWanCheckpoint(dir); }, {dir, kWanDitIndex, kWanDitFile});
  std::ofstream(dir + "/" + kWanDitFile) << "x";
  WanCheckpointFolder f = FindWanCheckpoint(dir);
  EXPECT_EQ(f.dit, dir + "/" + kWanDitFile);
  EXPECT_EQ(f.vae, "");
  std::ofstream(dir + "/" + kWanVaePth) << "x";
  EXPECT_EQ(FindWanCheckpoint(dir).vae, dir + "/" + kWanVaePth);
  std::ofstream(dir + "/" + kWanVaeSafetensors) << "x";  // preferred over the .pth
  EXPECT_EQ(FindWanCheckpoint(dir).vae, dir + "/" + kWanVaeSafetensors);
  std::ofstream(dir + "/" + kWanDitIndex) << "{}";  // sharded weights win
  EXPECT_EQ(FindWanCheckpoint(dir).dit, dir + "/" + kWanDitIndex);
}

TEST(SampleTest, ReadsTheContextFile) {
  const std::string dir = FreshTmpDir("sample_context");
  WriteContexts(dir + "/c.safetensors", 48, true);
  SamplingContexts c = ReadSamplingContexts(dir + "/c.safetensors");
  ASSERT_EQ(c.prompts.size(), 1u);
  EXPECT_EQ(c.prompts[0].shape(), (Shape{7, 48}));
  EXPECT_EQ(c.negative.shape(), (Shape{5, 48}));
  nn::TensorMap several;
  several["context_0"] = Tensor::Zeros({3, 8});
  several["context_1"] = Tensor::Zeros({4, 8});
  nn::SaveSafetensors(dir + "/s.safetensors", several);
  c = ReadSamplingContexts(dir + "/s.safetensors");
  EXPECT_EQ(c.prompts.size(), 2u);
  EXPECT_FALSE(c.negative.defined());
  nn::TensorMap wrong;
  wrong["prompt"] = Tensor::Zeros({3, 8});
  nn::SaveSafetensors(dir + "/w.safetensors", wrong);
  ExpectErrorContains([&] { ReadSamplingContexts(dir + "/w.safetensors"); },
                      {dir + "/w.safetensors", "no 'context'"});
  wrong["context"] = Tensor::Zeros({3, 8, 1});
  nn::SaveSafetensors(dir + "/w.safetensors", wrong);
  ExpectErrorContains([&] { ReadSamplingContexts(dir + "/w.safetensors"); },
                      {"'context' must be a text embedding [L, D]"});
}

TEST(SampleTest, SamplesATinyCheckpointFolderToLatentsAndVideo) {
  const std::string dir = FreshTmpDir("sample_e2e");
  const std::string folder = MakeTinyCheckpointFolder(dir);
  if (folder.empty()) GTEST_SKIP() << sdpo::testing::FixturesNotFoundMessage();
  WriteContexts(dir + "/prompt.safetensors", 48, true);
  const std::string flags = "--model=wan21 --checkpoint=" + folder + " --context=" + dir +
                            "/prompt.safetensors --frames=5 --height=32 --width=32 --steps=3 "
                            "--sampler=unipc --guidance=5 --threads=2 --out=" +
                            dir + "/video.mp4";
  std::string out;
  ASSERT_EQ(RunSample(flags, dir, &out), 0) << out;
  EXPECT_NE(out.find("sample ["), std::string::npos) << out;  // the progress bar
  EXPECT_NE(out.find("ETA"), std::string::npos) << out;
  std::map<std::string, std::string> meta;
  const nn::TensorMap latents = nn::ReadSafetensors(dir + "/video.latents.safetensors", &meta);
  ASSERT_EQ(latents.count("latent_0"), 1u) << out;
  EXPECT_EQ(latents.at("latent_0").shape(), (Shape{16, 2, 4, 4}));
  // The same seed gives the same latents; another seed others.
  ASSERT_EQ(RunSample(flags + " --progress=false --seed=0", dir, &out), 0) << out;
  const Tensor again = nn::ReadSafetensors(dir + "/video.latents.safetensors").at("latent_0");
  EXPECT_EQ(again.ToVector(), latents.at("latent_0").ToVector());

  // The decoded video: 5 frames of 32 x 32 that ffprobe and our reader read, equal to the VAE's
  // decode of the latents up to the H.264 round trip.
  EXPECT_NE(out.find("encoder "), std::string::npos) << out;
  const Tensor video = video::ReadVideo(dir + "/video.mp4");
  EXPECT_EQ(video.shape(), (Shape{3, 5, 32, 32}));
  auto vae = wan21::LoadVae(folder + "/" + kWanVaeSafetensors);
  const Tensor decoded = ops::Select(vae->Decode(ops::Unsqueeze(again, 0)), 0, 0);
  ASSERT_EQ(decoded.shape(), video.shape());
  // H.264 loses much of the random-weight VAE's noise-like texture, so the comparison is with the
  // same frames through the same encoder: the tool's mp4 must be the decode of its latents.
  video::WriteMp4(dir + "/direct.mp4", decoded);
  const Tensor direct = video::ReadVideo(dir + "/direct.mp4");
  const std::vector<float> x = video.ToFloatVector(), y = direct.ToFloatVector();
  double se = 0;
  for (size_t i = 0; i < x.size(); ++i) se += (x[i] - y[i]) * (x[i] - y[i]) * 127.5 * 127.5;
  const double psnr = se == 0 ? 99 : 10 * std::log10(255.0 * 255.0 * x.size() / se);
  EXPECT_GE(psnr, 45.0) << "the mp4 is not the decode of the latents";
  if (std::system("ffprobe -version > /dev/null 2>&1") == 0) {
    const std::string probe = dir + "/probe.txt";
    ASSERT_EQ(std::system(("ffprobe -v error -select_streams v:0 -count_frames -show_entries "
                           "stream=codec_name,width,height,nb_read_frames -of default=nw=1 " +
                           dir + "/video.mp4 > " + probe)
                              .c_str()),
              0);
    const std::string p = ReadText(probe);
    EXPECT_NE(p.find("width=32"), std::string::npos) << p;
    EXPECT_NE(p.find("nb_read_frames=5"), std::string::npos) << p;
  }
}

TEST(SampleTest, AFolderWithoutTheVaeGivesLatentsAndSaysWhy) {
  const std::string dir = FreshTmpDir("sample_no_vae");
  const std::string folder = MakeTinyCheckpointFolder(dir);
  if (folder.empty()) GTEST_SKIP() << sdpo::testing::FixturesNotFoundMessage();
  fs::remove(folder + "/" + kWanVaeSafetensors);
  WriteContexts(dir + "/prompt.safetensors", 48, false);
  std::string out;
  ASSERT_EQ(RunSample("--checkpoint=" + folder + " --context=" + dir + "/prompt.safetensors " +
                          "--frames=1 --height=16 --width=16 --steps=1 --guidance=1 --out=" + dir +
                          "/v.mp4",
                      dir, &out),
            0)
      << out;
  EXPECT_NE(out.find("no video written"), std::string::npos) << out;
  EXPECT_NE(out.find(kWanVaePth), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir + "/v.latents.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/v.mp4"));
}

TEST(SampleTest, TheOfficialPthVaeDecodesToo) {
  const std::string dir = FreshTmpDir("sample_pth_vae");
  const std::string folder = MakeTinyCheckpointFolder(dir);
  if (folder.empty()) GTEST_SKIP() << sdpo::testing::FixturesNotFoundMessage();
  fs::remove(folder + "/" + kWanVaeSafetensors);
  fs::copy_file("tests/io/testdata/wan_vae_tiny_a.pth", folder + "/" + kWanVaePth);
  WriteContexts(dir + "/prompt.safetensors", 48, false);
  std::string out;
  ASSERT_EQ(RunSample("--checkpoint=" + folder + " --context=" + dir + "/prompt.safetensors " +
                          "--frames=5 --height=32 --width=32 --steps=1 --guidance=1 --out=" + dir +
                          "/v.mp4",
                      dir, &out),
            0)
      << out;
  EXPECT_EQ(video::ReadVideo(dir + "/v.mp4").shape(), (Shape{3, 5, 32, 32})) << out;
}

TEST(SampleTest, BadRequestsFailWithAMessage) {
  const std::string dir = FreshTmpDir("sample_bad");
  const std::string folder = MakeTinyCheckpointFolder(dir);
  if (folder.empty()) GTEST_SKIP() << sdpo::testing::FixturesNotFoundMessage();
  WriteContexts(dir + "/positive_only.safetensors", 48, false);
  const std::string base = "--checkpoint=" + folder + " --frames=5 --height=32 --width=32 " +
                           "--steps=1 --progress=false --out=" + dir + "/v.mp4 --context=" + dir;
  std::string out;
  EXPECT_EQ(RunSample(base + "/positive_only.safetensors", dir, &out), 1);
  EXPECT_NE(out.find("needs the negative prompt"), std::string::npos) << out;
  EXPECT_EQ(RunSample(base + "/positive_only.safetensors --guidance=1 --frames=6", dir, &out), 1);
  EXPECT_NE(out.find("--frames=6"), std::string::npos) << out;
  EXPECT_EQ(RunSample(base + "/missing.safetensors --guidance=1", dir, &out), 1);
  EXPECT_NE(out.find("missing.safetensors"), std::string::npos) << out;
  EXPECT_EQ(RunSample("--checkpoint=" + folder + " --out=" + dir + "/v.gif", dir, &out), 1);
  EXPECT_NE(out.find("ending in .mp4"), std::string::npos) << out;
  EXPECT_EQ(RunSample("--checkpoint=" + dir + "/nowhere --out=" + dir + "/v.mp4", dir, &out), 1);
  EXPECT_NE(out.find("nowhere"), std::string::npos) << out;
}

}  // namespace
}  // namespace sdpo::trainers
