// The config files of the released THUDM/CogVideoX-2b and -5b diffusers folders
// (tests/trainers/testdata/CogVideoX-{2b,5b}/; testdata/README.md says where each value comes
// from) through our readers: the transformer, VAE, T5 and scheduler configs give the released
// sizes and schedules, and a folder's scheduler that does not match --model is refused.
#include <cmath>
#include <fstream>

#include "gtest/gtest.h"
#include "models/cogvideox/config.h"
#include "models/cogvideox/vae_config.h"
#include "models/schedules.h"
#include "models/umt5/config.h"
#include "tests/error_testing.h"
#include "trainers/cogvideox_folder.h"

namespace sdpo::trainers {
namespace {

using testing::ExpectErrorContains;

constexpr char kData[] = "tests/trainers/testdata/";

std::string Data(const std::string& file) { return kData + file; }

TEST(CogVideoXOfficialConfigs, The2BTransformerIs30LayersOf30HeadsWithSinCosPositions) {
  const auto c = cogvideox::CogVideoXConfig::FromFile(Data("CogVideoX-2b/transformer/config.json"));
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.num_attention_heads, 30);
  EXPECT_EQ(c.attention_head_dim, 64);
  EXPECT_EQ(c.inner_dim(), 1920);
  EXPECT_FALSE(c.use_rotary_positional_embeddings);
  EXPECT_EQ(c.text_embed_dim, 4096);
  EXPECT_EQ(c.max_text_seq_length, 226);
  EXPECT_EQ(c.sample_frames, 49);
  EXPECT_EQ(c, cogvideox::CogVideoXConfig::Preset("2b"));
  EXPECT_EQ(cogvideox::NumParameters(c), 1693783872);
}

TEST(CogVideoXOfficialConfigs, The5BTransformerIs42LayersOf48HeadsWithRope) {
  const auto c = cogvideox::CogVideoXConfig::FromFile(Data("CogVideoX-5b/transformer/config.json"));
  EXPECT_EQ(c.num_layers, 42);
  EXPECT_EQ(c.num_attention_heads, 48);
  EXPECT_EQ(c.attention_head_dim, 64);
  EXPECT_EQ(c.inner_dim(), 3072);
  EXPECT_TRUE(c.use_rotary_positional_embeddings);
  EXPECT_EQ(c, cogvideox::CogVideoXConfig::Preset("5b"));
  EXPECT_EQ(cogvideox::NumParameters(c), 5570283072);
}

TEST(CogVideoXOfficialConfigs, TheVaesDifferOnlyInScalingFactor) {
  const auto two = cogvideox::CogVideoXVaeConfig::FromFile(Data("CogVideoX-2b/vae/config.json"));
  const auto five = cogvideox::CogVideoXVaeConfig::FromFile(Data("CogVideoX-5b/vae/config.json"));
  EXPECT_EQ(two.scaling_factor, 1.15258426);
  EXPECT_EQ(five.scaling_factor, 0.7);
  EXPECT_EQ(two.block_out_channels, std::vector<int64_t>({128, 256, 256, 512}));
  EXPECT_EQ(two.latent_channels, 16);
  EXPECT_EQ(two.temporal_compression_ratio, 4);
  EXPECT_EQ(two.spatial_factor(), 8);
  EXPECT_TRUE(two == cogvideox::CogVideoXVaeConfig::CogVideoX2B());
  EXPECT_TRUE(five == cogvideox::CogVideoXVaeConfig::CogVideoX5B());
}

TEST(CogVideoXOfficialConfigs, TheTextEncoderIsT5V11XxlAt226Tokens) {
  for (const char* size : {"2b", "5b"}) {
    SCOPED_TRACE(size);
    const auto c = umt5::T5Config::FromFile(
        Data(std::string("CogVideoX-") + size + "/text_encoder/config.json"));
    auto want = umt5::T5Config::T5V11Xxl();
    want.tokenizer.clear();  // the preset names the folder's tokenizer; config.json does not
    EXPECT_EQ(c.vocab, 32128);
    EXPECT_EQ(c.dim, 4096);
    EXPECT_EQ(c.dim_attn, 4096);
    EXPECT_EQ(c.dim_ffn, 10240);
    EXPECT_EQ(c.num_heads, 64);
    EXPECT_EQ(c.num_layers, 24);
    EXPECT_TRUE(c.shared_pos);
    EXPECT_EQ(c.text_len, 226);
    EXPECT_EQ(c.ToJson(), want.ToJson());
  }
}

// The schedules read back match the built-in ones and the values computed from the diffusers
// scheduler (research/models.md 3.6: abar_0 = 0.99745433 with shift 3, 0.99915 with shift 1,
// abar_999 = 0 after the zero-terminal-SNR rescale).
TEST(CogVideoXOfficialConfigs, TheSchedulersAreVPredictionWithSnrShift3And1) {
  const DdpmScheduleConfig two =
      ReadCogVideoXScheduler(Data("CogVideoX-2b/scheduler/scheduler_config.json"));
  const DdpmScheduleConfig five =
      ReadCogVideoXScheduler(Data("CogVideoX-5b/scheduler/scheduler_config.json"));
  EXPECT_EQ(two.snr_shift_scale, 3.0);
  EXPECT_EQ(five.snr_shift_scale, 1.0);
  for (const DdpmScheduleConfig* c : {&two, &five}) {
    EXPECT_EQ(c->num_steps, 1000);
    EXPECT_EQ(c->beta_start, 0.00085);
    EXPECT_EQ(c->beta_end, 0.012);
    EXPECT_EQ(c->beta_schedule, BetaSchedule::kScaledLinear);
    EXPECT_TRUE(c->rescale_zero_terminal_snr);
    EXPECT_TRUE(c->set_alpha_to_one);
  }
  const std::vector<double> abar2 = NoiseSchedule::Ddpm(two).alphas_cumprod();
  const std::vector<double> abar5 = NoiseSchedule::Ddpm(five).alphas_cumprod();
  EXPECT_EQ(abar2, NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B()).alphas_cumprod());
  EXPECT_EQ(abar5, NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX5B()).alphas_cumprod());
  // The reference values carry 8 significant digits.
  EXPECT_NEAR(abar2[0], 0.99745433, 5e-9);
  EXPECT_NEAR(abar5[0], 0.99915000, 5e-9);
  EXPECT_NEAR(abar2[999], 0.0, 1e-15);
}

TEST(CogVideoXOfficialConfigs, TheDiffusersFolderFindsItsSchedulerAndChecksItAgainstTheModel) {
  const CogVideoXFolder two = FindCogVideoXCheckpoint(Data("CogVideoX-2b"));
  EXPECT_EQ(two.scheduler, Data("CogVideoX-2b/scheduler/scheduler_config.json"));
  EXPECT_EQ(two.vae, Data("CogVideoX-2b/vae"));
  EXPECT_EQ(two.text_encoder, Data("CogVideoX-2b/text_encoder"));
  EXPECT_EQ(two.tokenizer, "");  // spiece.model is not part of the test data
  CheckCogVideoXScheduler(two, DdpmScheduleConfig::CogVideoX2B(), "cogvideox-2b");
  const CogVideoXFolder five = FindCogVideoXCheckpoint(Data("CogVideoX-5b"));
  CheckCogVideoXScheduler(five, DdpmScheduleConfig::CogVideoX5B(), "cogvideox-5b");
  ExpectErrorContains(
      [&] { CheckCogVideoXScheduler(five, DdpmScheduleConfig::CogVideoX2B(), "cogvideox-2b"); },
      {"CogVideoX-5b/scheduler/scheduler_config.json", "--model=cogvideox-2b",
       "snr_shift_scale 1 (cogvideox-2b: 3)"});
  // Without a scheduler config there is nothing to check.
  CogVideoXFolder bare = two;
  bare.scheduler.clear();
  CheckCogVideoXScheduler(bare, DdpmScheduleConfig::CogVideoX5B(), "cogvideox-5b");
}

TEST(CogVideoXOfficialConfigs, SchedulersThisImplementationDoesNotFollowAreNamed) {
  const std::string dir = testing::FreshTmpDir("cog_scheduler_configs");
  auto read = [&](const std::string& text) {
    const std::string path = dir + "/scheduler_config.json";
    std::ofstream(path) << text;
    return ReadCogVideoXScheduler(path);
  };
  const std::string base =
      R"("_class_name": "CogVideoXDDIMScheduler", "prediction_type": "v_prediction", )"
      R"("clip_sample": false)";
  EXPECT_EQ(read("{" + base + "}").snr_shift_scale, 3.0);  // the diffusers default
  // The DPM scheduler's config describes the same schedule.
  EXPECT_EQ(read(R"({"_class_name": "CogVideoXDPMScheduler", "prediction_type": "v_prediction",)"
                 R"( "clip_sample": false, "snr_shift_scale": 1.0})")
                .snr_shift_scale,
            1.0);
  ExpectErrorContains([&] { read(R"({"_class_name": "DDIMScheduler"})"); },
                      {"scheduler_config.json", "_class_name", "DDIMScheduler"});
  ExpectErrorContains([&] { read(R"({"prediction_type": "epsilon", "clip_sample": false})"); },
                      {"prediction_type", "epsilon", "v_prediction"});
  ExpectErrorContains([&] { read("{" + base + R"(, "trained_betas": [0.1, 0.2]})"); },
                      {"trained_betas"});
  ExpectErrorContains([&] { read(R"({"prediction_type": "v_prediction"})"); }, {"clip_sample"});
  ExpectErrorContains([&] { read("{" + base + R"(, "beta_schedule": "squaredcos_cap_v2"})"); },
                      {"beta_schedule", "squaredcos_cap_v2"});
  ExpectErrorContains([&] { read("{" + base + R"(, "snr_shift_scale": "3"})"); },
                      {"snr_shift_scale", "must be a number"});
  ExpectErrorContains([&] { read("{" + base + R"(, "steps_offset": 1})"); }, {"steps_offset"});
  ExpectErrorContains([&] { read("[1, 2]"); }, {"expected a JSON object"});
}

}  // namespace
}  // namespace sdpo::trainers
