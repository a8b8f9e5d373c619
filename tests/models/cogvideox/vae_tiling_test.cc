// Tiled encode and decode reproduce diffusers' `tiled_encode` / `tiled_decode`
// (testdata/tiled: the tiny_a model through the official methods, made by
// bench/peers/cogvideox_vae_peer.py --tiled_cases) within relative L2 1e-5 in f32 (the untiled
// fixtures' bound; the blends add two roundings per blended value), tiles change the numbers
// (so the comparison can fail), inputs that fit one tile run untiled, and tiling specs that
// cannot tile are refused.
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "tensor/ops.h"
#include "tests/error_testing.h"
#include "tests/models/cogvideox/vae_test_util.h"

namespace sdpo::cogvideox {
namespace {

using ::sdpo::testing::ExpectErrorContains;
using ::sdpo::testing::LoadFixtureTensor;
using ::sdpo::testing::RelL2;

constexpr char kTiledDir[] = "tests/models/cogvideox/testdata/tiled/";

std::unique_ptr<SafetensorsFile> OpenTiledCase(const std::string& name) {
  return SafetensorsFile::Open(std::string(kTiledDir) + "tiny_a." + name + ".safetensors");
}

// The tiling the cases were made with (their metadata says it too).
VaeRunOptions CaseTiling(const SafetensorsFile& f) {
  VaeRunOptions options;
  options.tiling = ParseVaeTiling(f.metadata().at("tiling"));
  EXPECT_EQ(options.tiling->str(), "32x40:16x24");
  return options;
}

TEST(CogVideoXVaeTilingTest, TiledEncodeMatchesTheOfficialTiledEncode) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  std::unique_ptr<CogVideoXVae> vae = testing::TinyVae();
  auto f = OpenTiledCase("tiled_enc");
  const Tensor x = LoadFixtureTensor(*f, "x");
  const VaeEncoding e = vae->Encode(x, CaseTiling(*f));
  for (const auto& [name, got] :
       std::map<std::string, Tensor>{{"mean", e.mean}, {"logvar", e.logvar}}) {
    const Tensor ref = LoadFixtureTensor(*f, name);
    ASSERT_EQ(got.shape(), ref.shape()) << name;
    const double err = RelL2(got, ref);
    EXPECT_LE(err, 1e-5) << name;
    std::printf("[parity] cogvideox vae tiled encode %s: rel L2 %.3g\n", name.c_str(), err);
  }
  // The same clip untiled is another result: the comparison above sees the tiles.
  EXPECT_GT(RelL2(vae->Encode(x).mean, LoadFixtureTensor(*f, "mean")), 1e-3);
}

TEST(CogVideoXVaeTilingTest, TiledDecodeMatchesTheOfficialTiledDecode) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  std::unique_ptr<CogVideoXVae> vae = testing::TinyVae();
  auto f = OpenTiledCase("tiled_dec");
  const Tensor z = LoadFixtureTensor(*f, "z");
  const Tensor ref = LoadFixtureTensor(*f, "video");
  const Tensor got = vae->DecodeUnscaled(z, CaseTiling(*f));
  ASSERT_EQ(got.shape(), ref.shape());
  const double err = RelL2(got, ref);
  EXPECT_LE(err, 1e-5);
  std::printf("[parity] cogvideox vae tiled decode video: rel L2 %.3g\n", err);
  EXPECT_GT(RelL2(vae->DecodeUnscaled(z), ref), 1e-3);
}

TEST(CogVideoXVaeTilingTest, F64TiledDecodeAgreesWithTheF32Official) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  std::unique_ptr<CogVideoXVae> vae = testing::TinyVae(kF64);
  auto f = OpenTiledCase("tiled_dec");
  const Tensor got = vae->DecodeUnscaled(LoadFixtureTensor(*f, "z", kF64), CaseTiling(*f));
  EXPECT_EQ(got.dtype(), kF64);
  // f32 against f64: the official f32 outputs are within ~1.5e-6 of f64 on the untiled cases.
  EXPECT_LE(RelL2(ops::Cast(got, kF32), LoadFixtureTensor(*f, "video")), 1e-5);
}

TEST(CogVideoXVaeTilingTest, InputsThatFitOneTileRunUntiled) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  std::unique_ptr<CogVideoXVae> vae = testing::TinyVae();
  auto f = OpenTiledCase("tiled_dec");
  // 5x7 latent cells = 40x56 pixels: one 40x56 tile holds it whole.
  VaeRunOptions one_tile;
  one_tile.tiling = ParseVaeTiling("40x56:16x24");
  const Tensor z = LoadFixtureTensor(*f, "z");
  EXPECT_EQ(RelL2(vae->DecodeUnscaled(z, one_tile), vae->DecodeUnscaled(z)), 0.0);
}

TEST(CogVideoXVaeTilingTest, SpecsParseAndBadOnesAreRefusedWithTheRule) {
  EXPECT_FALSE(ParseVaeTiling("off").has_value());
  EXPECT_EQ(ParseVaeTiling("on")->str(), "240x360:200x288");
  EXPECT_EQ(ParseVaeTiling("256x256:192x192")->str(), "256x256:192x192");
  ExpectErrorContains([] { ParseVaeTiling("256x256"); }, {"TILE_HxTILE_W:STRIDE_HxSTRIDE_W"});
  ExpectErrorContains([] { ParseVaeTiling("256xabc:192x192"); }, {"VAE tiling=256xabc:192x192"});
  ExpectErrorContains([] { ParseVaeTiling("252x256:192x192"); }, {"multiples of 8"});
  ExpectErrorContains([] { ParseVaeTiling("256x256:192x264"); }, {"stride <= tile"});
  ExpectErrorContains([] { ParseVaeTiling("0x256:0x192"); }, {"positive"});
}

TEST(CogVideoXVaeTilingTest, StageCaptureWithTilesIsRefused) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  std::unique_ptr<CogVideoXVae> vae = testing::TinyVae();
  auto f = OpenTiledCase("tiled_dec");
  std::map<std::string, Tensor> capture;
  VaeRunOptions options = CaseTiling(*f);
  options.capture = &capture;
  ExpectErrorContains([&] { vae->DecodeUnscaled(LoadFixtureTensor(*f, "z"), options); },
                      {"not available with tiling"});
}

}  // namespace
}  // namespace sdpo::cogvideox
