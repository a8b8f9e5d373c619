// The CogVideoX VAE on Device::CUDA (tiny_a, the fixture weights) against the same VAE on the
// CPU: every encode and decode case with every recorded stage, f32; and bf16 compute on CUDA
// near the official f32 video. vae_cuda_test runs the real kernels (skips without a GPU);
// vae_cuda_emu_test links the CPU emulation of the CUDA kernels (//tensor/cuda:cuda_emu), so an
// op the VAE needs but the CUDA backend lacks (group norm, the spatial norm's resize, the causal
// conv cache), or a kernel that indexes wrongly on the VAE's shapes, fails here rather than on
// the GPU.
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tensor/cuda/cuda_available.h"
#include "tensor/ops.h"
#include "tests/models/cogvideox/vae_test_util.h"

namespace sdpo::cogvideox {
namespace {

using ::sdpo::testing::LoadFixtureTensor;
using ::sdpo::testing::RelL2;
using testing::OpenVaeFixture;

// Encode when the case holds x, else decode; every stage output, as the device left it.
std::map<std::string, Tensor> RunCase(const CogVideoXVae& vae, const SafetensorsFile& f) {
  std::map<std::string, Tensor> got;
  VaeRunOptions options;
  options.capture = &got;
  // The input stays on the host: Encode / DecodeUnscaled move it to the weights' device.
  if (f.contains("x")) {
    vae.Encode(LoadFixtureTensor(f, "x", kF32), options);
  } else {
    vae.DecodeUnscaled(LoadFixtureTensor(f, "z", kF32), options);
  }
  return got;
}

TEST(CogVideoXVaeCudaTest, EveryCaseAndStageOnCudaMatchesTheCpu) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA: " << CudaUnavailableReason();
  std::unique_ptr<CogVideoXVae> cpu = testing::TinyVae();
  std::unique_ptr<CogVideoXVae> gpu = testing::TinyVae();
  gpu->ToDevice(Device::CUDA(0));
  for (const char* name : {"enc1", "enc2", "enc3", "enc4", "enc5", "dec1", "dec2", "dec3", "dec4",
                           "dec5", "dec6", "dec7"}) {
    auto f = OpenVaeFixture(std::string("tiny_a.") + name + ".safetensors");
    std::map<std::string, Tensor> want = RunCase(*cpu, *f), got = RunCase(*gpu, *f);
    ASSERT_EQ(got.size(), want.size()) << name;
    double worst = 0;
    for (const auto& [key, ref] : want) {
      ASSERT_TRUE(got.count(key)) << name << ": no CUDA output for " << key;
      const Tensor& g = got[key];
      ASSERT_TRUE(g.device().is_cuda()) << name << " " << key;
      ASSERT_EQ(g.shape(), ref.shape()) << name << " " << key;
      // The f32 bound of the fixture tests (the official f32 vs f64 spread is <= 1.5e-6): the two
      // devices sum the convolutions' products and the norms' statistics in different orders.
      const double err = RelL2(ops::To(g, Device::CPU()), ref);
      EXPECT_LE(err, 1e-5) << name << " " << key;
      worst = std::max(worst, err);
    }
    std::printf("[parity] cogvideox vae cuda %s: %zu tensors, worst rel L2 %.3g\n", name,
                want.size(), worst);
  }
}

// Without capture the decoder normalises in place where a norm's input dies
// (ops::GroupNormInPlace: out == x in the CUDA kernel); the outputs still match the CPU's.
TEST(CogVideoXVaeCudaTest, InPlaceNormsOnCudaMatchTheCpu) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA: " << CudaUnavailableReason();
  std::unique_ptr<CogVideoXVae> cpu = testing::TinyVae();
  std::unique_ptr<CogVideoXVae> gpu = testing::TinyVae();
  gpu->ToDevice(Device::CUDA(0));
  auto enc = OpenVaeFixture("tiny_a.enc3.safetensors");
  const Tensor x = LoadFixtureTensor(*enc, "x", kF32);
  EXPECT_LE(RelL2(ops::To(gpu->Encode(x).mean, Device::CPU()), cpu->Encode(x).mean), 1e-5);
  auto dec = OpenVaeFixture("tiny_a.dec4.safetensors");
  const Tensor z = LoadFixtureTensor(*dec, "z", kF32);
  const double err = RelL2(ops::To(gpu->DecodeUnscaled(z), Device::CPU()), cpu->DecodeUnscaled(z));
  EXPECT_LE(err, 1e-5);
  std::printf("[parity] cogvideox vae cuda dec4 without capture: rel L2 %.3g\n", err);
}

// Tiles (their cuts, blends and crops are device ops) on CUDA against the official tiled
// decode and encode (testdata/tiled).
TEST(CogVideoXVaeCudaTest, TiledDecodeAndEncodeOnCudaMatchTheOfficialTiledMethods) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA: " << CudaUnavailableReason();
  std::unique_ptr<CogVideoXVae> gpu = testing::TinyVae();
  gpu->ToDevice(Device::CUDA(0));
  const std::string dir = "tests/models/cogvideox/testdata/tiled/";
  VaeRunOptions options;
  options.tiling = ParseVaeTiling("32x40:16x24");
  auto dec = SafetensorsFile::Open(dir + "tiny_a.tiled_dec.safetensors");
  const double dec_err =
      RelL2(ops::To(gpu->DecodeUnscaled(LoadFixtureTensor(*dec, "z"), options), Device::CPU()),
            LoadFixtureTensor(*dec, "video"));
  EXPECT_LE(dec_err, 1e-5);
  auto enc = SafetensorsFile::Open(dir + "tiny_a.tiled_enc.safetensors");
  const double enc_err =
      RelL2(ops::To(gpu->Encode(LoadFixtureTensor(*enc, "x"), options).mean, Device::CPU()),
            LoadFixtureTensor(*enc, "mean"));
  EXPECT_LE(enc_err, 1e-5);
  std::printf("[parity] cogvideox vae cuda tiled: decode rel L2 %.3g, encode mean %.3g\n", dec_err,
              enc_err);
}

TEST(CogVideoXVaeCudaTest, Bf16ComputeOnCudaStaysNearTheF32Result) {
  SDPO_SKIP_WITHOUT_COG_VAE_FIXTURES();
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA: " << CudaUnavailableReason();
  // The bound of the CPU bf16 test (vae_fixture_test): bf16 rounds each op by <= 2^-9 relative,
  // a few percent through ~40 layers with norms.
  std::unique_ptr<CogVideoXVae> vae = testing::TinyVae(kBF16);
  vae->ToDevice(Device::CUDA(0));
  auto f = OpenVaeFixture("tiny_a.dec4.safetensors");
  const Tensor video = vae->DecodeUnscaled(LoadFixtureTensor(*f, "z"));
  EXPECT_EQ(video.dtype(), kF32);
  const double err = RelL2(ops::To(video, Device::CPU()), LoadFixtureTensor(*f, "video"));
  EXPECT_LE(err, 0.05);
  std::printf("[parity] cogvideox vae cuda bf16 dec4 video vs the official f32: rel L2 %.3g\n",
              err);
}

}  // namespace
}  // namespace sdpo::cogvideox
