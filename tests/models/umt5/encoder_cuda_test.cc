// The T5 encoder on the CUDA device against the CPU (the official fixtures' case 3 and 4:
// long sequence, heavy key masking), f32 and bf16 compute. Built twice: encoder_cuda_test
// (a real GPU; skipped without one) and encoder_cuda_emu_test (the CPU emulation of the CUDA
// kernels, run in CI), so an op the encoder needs that the CUDA backend lacks fails here.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "models/umt5/checkpoint.h"
#include "tensor/cuda/cuda_available.h"
#include "tensor/ops.h"
#include "tests/models/fixture_util.h"

namespace sdpo::umt5 {
namespace {

using testing::FixturePath;
using testing::LoadFixtureTensor;
using testing::RelL2;

void CompareOnDevice(DType compute, double tol, const std::vector<std::string>& cases) {
  if (!CudaAvailable()) GTEST_SKIP() << CudaUnavailableReason();
  const std::string weights = FixturePath("umt5/tiny_a.weights.safetensors");
  if (weights.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  LoadOptions options;
  options.config = T5Config::FromFile(FixturePath("umt5/tiny_a.config.json"));
  for (const std::string& c : cases) {
    auto f = testing::OpenFixture("umt5/tiny_a." + c + ".safetensors");
    const Tensor ids = LoadFixtureTensor(*f, "ids"), mask = LoadFixtureTensor(*f, "mask");
    auto cpu = LoadEncoder(weights, options);
    auto gpu = LoadEncoder(weights, options);
    cpu->SetComputeDType(compute);
    gpu->SetComputeDType(compute);
    gpu->ToDevice(Device::CUDA(0));
    NoGradGuard no_grad;
    const Tensor a = ops::Cast(cpu->Forward(ids, mask), kF32);
    const Tensor b = gpu->Forward(ops::To(ids, Device::CUDA(0)), ops::To(mask, Device::CUDA(0)));
    EXPECT_TRUE(b.device() == Device::CUDA(0));
    const double err = RelL2(ops::To(ops::Cast(b, kF32), Device::CPU()), a);
    std::printf("%s %s: cuda vs cpu rel L2 %.2e\n", c.c_str(), DTypeName(compute), err);
    EXPECT_LE(err, tol) << c;
    // and against the official output
    EXPECT_LE(RelL2(ops::To(ops::Cast(b, kF32), Device::CPU()), LoadFixtureTensor(*f, "hidden")),
              compute == kF32 ? 1e-5 : 3e-2)
        << c;
  }
}

// f32: the same math in another summation order (~1e-7 measured on the CPU against f64).
TEST(EncoderCudaTest, F32MatchesTheCpu) { CompareOnDevice(kF32, 1e-5, {"case3", "case4"}); }
// bf16: roundings of 8-bit mantissas (2^-9 = 2e-3 relative each) through 3 blocks.
TEST(EncoderCudaTest, Bf16MatchesTheCpu) { CompareOnDevice(kBF16, 3e-2, {"case4"}); }

}  // namespace
}  // namespace sdpo::umt5
