// The trainer on a CUDA device, run on the EMULATED device (linked with //tensor/cuda:cuda_emu:
// the CUDA kernels compiled for the CPU), on a tiny Wan2.1: an f32 run matches the same run on
// the CPU to f32 rounding (losses, gradient norms, final weights), bf16 runs (bf16 compute, f32
// master weights; full fine-tuning against a frozen bf16 reference copy, and LoRA) train, and
// checkpoints cross devices both ways (a CUDA run resumes on the CPU and a CPU run on CUDA), and
// the demo's sampling and evaluation run on the device.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/wan21/model.h"
#include "nn/init.h"
#include "nn/lora.h"
#include "tensor/cuda/cuda_available.h"
#include "tests/trainers/tiny_wan.h"
#include "trainers/demo_setup.h"
#include "trainers/trainer.h"

namespace sdpo::trainers {
namespace {

using ::testing::HasSubstr;

constexpr double kLr = 1e-3;
using testing::SyntheticPairs;

// 1 block of width 32; latents [4, 2, 4, 4] are 2 x 2 x 2 = 8 tokens.
wan21::WanConfig TinyConfig() { return testing::TinyWanConfig(1, 32, 4); }



// The policy and, for full fine-tuning, its reference (the same initial weights), on the CPU.
struct Models {
  std::unique_ptr<wan21::WanModel> policy, reference;
};

Models MakeModels(bool lora) {
  Models m;
  nn::SetInitSeed(5);
  m.policy = std::make_unique<wan21::WanModel>(TinyConfig());
  if (lora) {
    m.policy->SetRequiresGrad(false);
    nn::LoraConfig c;
    c.rank = 4;
    c.alpha = 4;
    c.targets = {"blocks.*.self_attn.{q,k,v,o}", "blocks.*.ffn.{0,2}"};
    nn::AttachLora(*m.policy, c);
  } else {
    nn::SetInitSeed(5);
    m.reference = std::make_unique<wan21::WanModel>(TinyConfig());
  }
  return m;
}

TrainerConfig Config(const std::string& out, int64_t steps, Device device, DType dtype) {
  TrainerConfig c;
  c.steps = steps;
  c.batch = 2;
  c.grad_accum = 2;
  c.lr.base_lr = kLr;
  c.lr.warmup_steps = 0;
  c.seed = 11;
  c.out_dir = out;
  c.progress = false;
  c.objective.beta = 50;
  c.device = device;
  c.compute_dtype = dtype;
  return c;
}

std::string TempDir(const std::string& name) {
  auto p = std::filesystem::path(::testing::TempDir()) / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

NoiseSchedule Flow() { return NoiseSchedule::Flow(FlowScheduleConfig::Wan21()); }

std::vector<std::vector<double>> Params(const Trainer& t) {
  std::vector<std::vector<double>> out;
  for (const auto& [name, p] : t.TrainableParameters()) out.push_back(p.ToVector());
  return out;
}

// Two runs of `steps` AdamW steps at learning rate `lr` from the same state end with close
// weights. The tolerance follows from the update rule, not from one machine: an AdamW step moves
// a weight by lr * m / (sqrt(v) + eps), about lr * g / (|g| + eps) on the first steps, so for a
// gradient element with |g| near eps (1e-8) a rounding difference of g (another BLAS kernel, the
// device's summation order) changes the update by up to a fraction of lr. Those few elements are
// bounded by 5% of the largest possible movement, lr * steps; a real bug (a wrong gradient, a
// skipped update) moves most weights by about lr, so the median difference must stay at
// rounding level: 1e-3 of lr * steps.
void ExpectWeightsClose(const std::vector<std::vector<double>>& a,
                        const std::vector<std::vector<double>>& b, double lr, int steps) {
  ASSERT_EQ(a.size(), b.size());
  std::vector<double> diffs;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size()) << i;
    for (size_t k = 0; k < a[i].size(); ++k) diffs.push_back(std::abs(a[i][k] - b[i][k]));
  }
  ASSERT_FALSE(diffs.empty());
  const double movement = lr * steps;
  std::sort(diffs.begin(), diffs.end());
  const double worst = diffs.back(), median = diffs[diffs.size() / 2];
  std::printf("weight differences: largest %.3g (bound %.3g), median %.3g (bound %.3g)\n", worst,
              0.05 * movement, median, 1e-3 * movement);
  EXPECT_LE(worst, 0.05 * movement);
  EXPECT_LE(median, 1e-3 * movement);
}

void ExpectHistoriesClose(const Trainer& cpu, const Trainer& cuda) {
  ASSERT_EQ(cpu.history().size(), cuda.history().size());
  for (size_t i = 0; i < cpu.history().size(); ++i) {
    const StepRecord& c = cpu.history()[i];
    const StepRecord& g = cuda.history()[i];
    std::printf("step %lld: loss cpu %.9g cuda %.9g, grad norm cpu %.9g cuda %.9g\n",
                static_cast<long long>(c.step), c.metrics.loss, g.metrics.loss, c.grad_norm,
                g.grad_norm);
    ASSERT_FALSE(c.skipped || g.skipped) << i;
    EXPECT_NEAR(g.metrics.loss, c.metrics.loss, 1e-5 * std::abs(c.metrics.loss) + 1e-6) << i;
    EXPECT_NEAR(g.grad_norm, c.grad_norm, 1e-4 * c.grad_norm + 1e-7) << i;
    EXPECT_NEAR(g.metrics.reward_margin, c.metrics.reward_margin,
                1e-4 * std::abs(c.metrics.reward_margin) + 1e-5)
        << i;
  }
}

class TrainerCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) GTEST_SKIP() << CudaUnavailableReason();
  }
};

// f32 LoRA: the same run on the CPU and on the device, then each checkpoint resumed on the
// other device.
TEST_F(TrainerCudaTest, F32LoraMatchesCpuAndCheckpointsCrossDevices) {
  SyntheticPairs data(6);
  const std::string cpu_dir = TempDir("cpu"), cuda_dir = TempDir("cuda");
  Models cm = MakeModels(true), gm = MakeModels(true);
  Trainer cpu(Config(cpu_dir, 2, Device::CPU(), kF32), Flow(), *cm.policy, nullptr, data, nullptr);
  Trainer cuda(Config(cuda_dir, 2, Device::CUDA(0), kF32), Flow(), *gm.policy, nullptr, data,
               nullptr);
  for (const auto& [name, p] : cuda.TrainableParameters()) {
    ASSERT_TRUE(p.device().is_cuda()) << name;
    ASSERT_EQ(p.dtype(), kF32) << name;
  }
  cpu.Run();
  cuda.Run();  // both write checkpoint.safetensors at step 2
  ExpectHistoriesClose(cpu, cuda);
  ExpectWeightsClose(Params(cpu), Params(cuda), kLr, 2);

  // The device's checkpoint resumes on the CPU (same format: weights copied exactly), and the
  // CPU's on the device; one more step each, continued from the same state on both devices.
  Models rc = MakeModels(true), rg = MakeModels(true);
  Trainer cpu_from_cuda(Config(TempDir("cpu2"), 3, Device::CPU(), kF32), Flow(), *rc.policy,
                        nullptr, data, nullptr);
  cpu_from_cuda.Resume(Trainer::CheckpointPath(cuda_dir));
  EXPECT_EQ(cpu_from_cuda.step(), 2);
  EXPECT_EQ(Params(cpu_from_cuda), Params(cuda));
  Trainer cuda_from_cpu(Config(TempDir("cuda2"), 3, Device::CUDA(0), kF32), Flow(), *rg.policy,
                        nullptr, data, nullptr);
  cuda_from_cpu.Resume(Trainer::CheckpointPath(cpu_dir));
  EXPECT_EQ(Params(cuda_from_cpu), Params(cpu));
  const StepRecord a = cpu_from_cuda.Step(), b = cuda_from_cpu.Step();
  ASSERT_FALSE(a.skipped || b.skipped);
  EXPECT_EQ(a.step, 3);
  EXPECT_NEAR(a.metrics.loss, b.metrics.loss, 1e-5 * std::abs(a.metrics.loss) + 1e-6);
  ExpectWeightsClose(Params(cpu_from_cuda), Params(cuda_from_cpu), kLr, 1);
}

// f32 full fine-tuning: the frozen reference copy is placed on the device too.
TEST_F(TrainerCudaTest, F32FullFineTuningMatchesCpu) {
  SyntheticPairs data(4);
  Models cm = MakeModels(false), gm = MakeModels(false);
  TrainerConfig cc = Config("", 2, Device::CPU(), kF32), gc = Config("", 2, Device::CUDA(0), kF32);
  cc.grad_accum = gc.grad_accum = 1;
  Trainer cpu(cc, Flow(), *cm.policy, cm.reference.get(), data, nullptr);
  Trainer cuda(gc, Flow(), *gm.policy, gm.reference.get(), data, nullptr);
  cpu.Run();
  cuda.Run();
  ExpectHistoriesClose(cpu, cuda);
  ExpectWeightsClose(Params(cpu), Params(cuda), kLr, 2);
}

// bf16 compute: full fine-tuning against a frozen bf16 copy, and LoRA (reference = adapters
// off). It trains: finite losses, no skipped step, the f32 master weights move.
TEST_F(TrainerCudaTest, Bf16Trains) {
  SyntheticPairs data(4);
  for (bool lora : {false, true}) {
    SCOPED_TRACE(lora ? "lora" : "full");
    Models m = MakeModels(lora);
    TrainerConfig c = Config("", 3, Device::CUDA(0), kBF16);
    c.grad_accum = 1;
    Trainer t(c, Flow(), *m.policy, m.reference.get(), data, nullptr);
    EXPECT_EQ(m.policy->compute_dtype(), kBF16);
    for (const auto& [name, p] : m.policy->NamedParameters()) {
      ASSERT_TRUE(p.device().is_cuda() && p.dtype() == kF32) << name;
    }
    if (!lora) {
      for (const auto& [name, p] : m.reference->NamedParameters()) {
        ASSERT_TRUE(p.device().is_cuda() && p.dtype() == kBF16 && !p.requires_grad()) << name;
      }
    }
    const auto before = Params(t);
    t.Run();
    for (const StepRecord& r : t.history()) {
      EXPECT_FALSE(r.skipped) << r.step;
      EXPECT_TRUE(std::isfinite(r.metrics.loss)) << r.step;
      EXPECT_GT(r.grad_norm, 0) << r.step;
    }
    EXPECT_NE(Params(t), before);
  }
}

// The demo's pair generation and evaluation sample through SampleDemo on the model's device (the
// world scores CPU copies): the same samples as on the CPU, for a tiny model of the demo world's
// latent and text shapes (a full DemoEvaluator pass is too slow for the emulation).
TEST_F(TrainerCudaTest, DemoSamplingRunsOnTheDevice) {
  DemoWorld world;
  auto make = [&] {
    wan21::WanConfig c = TinyConfig();
    c.in_dim = c.out_dim = world.config().channels;
    c.text_dim = world.config().text_dim;
    c.text_len = world.config().text_len;
    nn::SetInitSeed(7);
    auto m = std::make_unique<wan21::WanModel>(c);
    m->SetRequiresGrad(false);
    nn::LoraConfig lora;
    lora.rank = 2;
    lora.alpha = 2;
    lora.targets = {"blocks.*.ffn.{0,2}"};
    nn::AttachLora(*m, lora);
    return m;
  };
  auto cpu_model = make(), cuda_model = make();
  PlaceModels(*cuda_model, nullptr, Device::CUDA(0), kF32);
  EXPECT_TRUE(ModelDevice(*cuda_model).is_cuda());
  samplers::FlowSampleOptions o = DemoSampleOptions();
  o.steps = 2;
  const std::vector<DemoPrompt> prompts = {world.heldout_prompts()[0]};
  Tensor a = SampleDemo(*cpu_model, world, prompts, {3}, o)[0];
  Tensor b = SampleDemo(*cuda_model, world, prompts, {3}, o)[0];
  ASSERT_TRUE(b.device().is_cpu());
  std::vector<double> va = a.ToVector(), vb = b.ToVector();
  ASSERT_EQ(va.size(), vb.size());
  for (size_t i = 0; i < va.size(); ++i) ASSERT_NEAR(va[i], vb[i], 1e-4 * (1 + std::abs(va[i])));
}

TEST(TrainerDeviceTest, Bf16OnTheCpuIsRejected) {
  SyntheticPairs data(2);
  Models m = MakeModels(true);
  try {
    Trainer t(Config("", 1, Device::CPU(), kBF16), Flow(), *m.policy, nullptr, data, nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("bf16 compute needs a CUDA device"));
  }
}

TEST_F(TrainerCudaTest, ZeroOneOnCudaIsRejected) {
  SyntheticPairs data(2);
  Models m = MakeModels(true);
  TrainerConfig c = Config("", 1, Device::CUDA(0), kF32);
  c.zero_stage = 1;
  try {
    Trainer t(c, Flow(), *m.policy, nullptr, data, nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("ZeRO-1"));
  }
}

}  // namespace
}  // namespace sdpo::trainers
