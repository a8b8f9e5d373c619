// //trainers:pretrain: flow-matching pretraining (SFT) of the demo's tiny Wan2.1 model on the
// synthetic blob world. Writes the base model the embedded demo fine-tunes:
//
//   bazel run -c opt //trainers:pretrain -- --out=$PWD/trainers/demo/base_model.safetensors
//
// Only the training prompts are seen (held-out attribute combinations are not), and training is
// kept short on purpose: the base model is good but imperfect, so preference tuning has room.
#include <chrono>
#include <cstdio>

#include "absl/flags/flag.h"
#include "io/command_line.h"
#include "absl/strings/str_format.h"
#include "models/wan21/checkpoint.h"
#include "nn/init.h"
#include "nn/optim.h"
#include "models/schedules.h"
#include "tensor/philox.h"
#include "tensor/thread_pool.h"
#include "trainers/demo_setup.h"
#include "trainers/preference_step.h"
#include "trainers/progress.h"

ABSL_FLAG(std::string, out, "", "output .safetensors (required)");
ABSL_FLAG(int64_t, steps, 1500, "optimizer steps");
ABSL_FLAG(int64_t, batch, 32, "videos per step");
ABSL_FLAG(double, lr, 2e-3, "peak learning rate (cosine schedule with warmup)");
ABSL_FLAG(uint64_t, seed, 1, "seed (initialisation, data, timesteps, noise)");
ABSL_FLAG(int, threads, 0, "CPU threads (0: all)");

namespace sdpo::trainers {
namespace {

int Main() {
  std::string out = absl::GetFlag(FLAGS_out);
  SDPO_CHECK(!out.empty(), "--out is required");
  if (absl::GetFlag(FLAGS_threads) > 0) SetNumThreads(absl::GetFlag(FLAGS_threads));
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  DemoWorld world;
  nn::SetInitSeed(seed);
  wan21::WanModel model(DemoModelConfig(world));
  std::printf("pretraining a %lld-parameter Wan2.1-architecture model on %zu training prompts\n",
              static_cast<long long>(model.NumParameters()), world.train_prompts().size());

  NoiseSchedule schedule = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  TimestepSampler sampler(schedule, {});
  nn::AdamWOptions opt;
  opt.weight_decay = 0.0;
  nn::AdamW optimizer(model.NamedTrainableParameters(), opt);
  nn::LrSchedule lr{nn::LrScheduleKind::kCosineWithWarmup, absl::GetFlag(FLAGS_lr), 50,
                    absl::GetFlag(FLAGS_steps), 0.05};
  std::vector<Tensor> params = model.Parameters();
  const int64_t steps = absl::GetFlag(FLAGS_steps), batch = absl::GetFlag(FLAGS_batch);
  const auto& prompts = world.train_prompts();
  ProgressBar bar("pretrain", steps, true);
  double smoothed = 0;
  for (int64_t step = 0; step < steps; ++step) {
    std::vector<Tensor> inputs, targets, contexts;
    std::vector<double> timesteps;
    for (int64_t i = 0; i < batch; ++i) {
      const uint64_t draw = static_cast<uint64_t>(step * batch + i);
      Philox4 r = Philox4x32(draw, seed ^ 0x9e3779b97f4a7c15ull);
      const DemoPrompt& p = prompts[r.v[0] % prompts.size()];
      Tensor x0 = world.Render(p, (static_cast<uint64_t>(r.v[1]) << 32) | r.v[2]);
      TimePoint tp = sampler.Sample(PhiloxUniform(draw, seed ^ 0x51ed27ull));
      Tensor eps = ops::RandomNormal(x0.shape(), seed ^ 0xabcdefull, draw * x0.numel());
      inputs.push_back(ops::Add(ops::MulScalar(x0, tp.alpha), ops::MulScalar(eps, tp.sigma)));
      targets.push_back(ops::Sub(eps, x0));  // flow matching: v = eps - x0
      contexts.push_back(world.EncodeText(p));
      timesteps.push_back(tp.timestep);
    }
    optimizer.set_lr(lr.At(step));
    Tensor t = Tensor::FromVector(timesteps, {batch}, kF32);
    Tensor loss = mean(PerSampleMse(model.ForwardList(inputs, t, contexts), targets));
    Backward(loss);
    nn::ClipGradNorm(params, 1.0);
    optimizer.Step();
    optimizer.ZeroGrad();
    smoothed = step == 0 ? loss.item() : 0.98 * smoothed + 0.02 * loss.item();
    bar.Update(step + 1, absl::StrFormat("loss %.4f", smoothed));
  }
  bar.Finish();
  wan21::SaveWeights(model, out);
  std::printf("wrote %s (final smoothed flow-matching loss %.4f)\n", out.c_str(), smoothed);
  return 0;
}

}  // namespace
}  // namespace sdpo::trainers

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv, "flow-matching pretraining of the demo's base model");
  try {
    return sdpo::trainers::Main();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pretrain: %s\n", e.what());
    return 1;
  }
}
