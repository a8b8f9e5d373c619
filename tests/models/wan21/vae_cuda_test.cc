// The Wan2.1 VAE on Device::CUDA (tiny_a, the fixture weights) against the same VAE on the CPU:
// every encode and decode case, f32. vae_cuda_test runs the real kernels (skips without a GPU);
// vae_cuda_emu_test links the CPU emulation of the CUDA kernels (//tensor/cuda:cuda_emu), so an
// op the VAE needs but the CUDA backend lacks, or a kernel that indexes wrongly on the VAE's
// shapes, fails here rather than on the GPU.
#include <cstdio>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tensor/cuda/cuda_available.h"
#include "tensor/ops.h"
#include "tests/models/wan21/vae_test_util.h"

namespace sdpo::wan21 {
namespace {

using ::sdpo::testing::LoadFixtureTensor;
using ::sdpo::testing::RelL2;
using testing::CaseScale;
using testing::OpenVaeFixture;

TEST(VaeCudaTest, EveryCaseOnCudaMatchesTheCpu) {
  SDPO_SKIP_WITHOUT_VAE_FIXTURES();
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA: " << CudaUnavailableReason();
  std::unique_ptr<WanVae> cpu = testing::TinyVae();
  std::unique_ptr<WanVae> gpu = testing::TinyVae();
  gpu->ToDevice(Device::CUDA(0));
  for (const char* name : {"enc1", "enc2", "enc3", "dec1", "dec2", "dec3"}) {
    auto f = OpenVaeFixture(std::string("tiny_a.") + name + ".safetensors");
    const VaeScale scale = CaseScale(*f);
    std::vector<std::pair<std::string, std::pair<Tensor, Tensor>>> outputs;
    if (f->contains("x")) {
      const Tensor x = LoadFixtureTensor(*f, "x", kF32);
      const VaeEncoding want = cpu->Encode(x, scale);
      // The input stays on the host: Encode moves it to the weights' device.
      const VaeEncoding got = gpu->Encode(x, scale);
      outputs = {{"mu", {got.mu, want.mu}}, {"log_var", {got.log_var, want.log_var}}};
    } else {
      const Tensor z = LoadFixtureTensor(*f, "z", kF32);
      outputs = {{"video_raw", {gpu->DecodeRaw(z, scale), cpu->DecodeRaw(z, scale)}}};
    }
    for (const auto& [key, pair] : outputs) {
      const Tensor& got = pair.first;
      ASSERT_TRUE(got.device().is_cuda()) << name << " " << key;
      ASSERT_EQ(got.shape(), pair.second.shape()) << name << " " << key;
      // The f32 bound of the fixture tests (the official f32 vs f64 spread is <= 1.1e-6): the two
      // devices sum the convolutions' products in different orders.
      const double err = RelL2(ops::To(got, Device::CPU()), pair.second);
      EXPECT_LE(err, 1e-5) << name << " " << key;
      std::printf("[parity] vae cuda %s %s: rel L2 %.3g\n", name, key.c_str(), err);
    }
  }
}

}  // namespace
}  // namespace sdpo::wan21
