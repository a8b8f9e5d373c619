// A host program that embeds sdpo through its public API only (//engine, docs/embedding.md):
// loads the demo's base model, makes preference pairs from it, trains LoRA adapters for a few
// SDPO steps, reads the metrics, samples from the result and scores it.
//
//   bazel run //examples/embed -- --steps=5 --adapters=/tmp/adapters.safetensors
#include <cstdio>
#include <exception>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/demo.h"
#include "engine/model.h"
#include "engine/objective.h"
#include "engine/runtime.h"
#include "engine/training.h"

ABSL_FLAG(int, steps, 5, "training steps");
ABSL_FLAG(std::string, adapters, "", "where to save the trained adapters (empty: not saved)");

namespace engine = sdpo::engine;

int Run(int steps, const std::string& adapters_path) {
  engine::RuntimeOptions runtime_options;
  runtime_options.threads = 2;  // this program's own pool (device: CPU, or Device::CUDA(0))
  const engine::Runtime runtime(runtime_options);
  engine::Demo demo;
  std::unique_ptr<engine::Model> model =
      engine::Model::Load(runtime, "wan21", engine::Demo::BaseModelPath());

  // Pairs from the base model, then adapters on it: the reference is the model with them off.
  std::unique_ptr<engine::PairSource> pairs = demo.MakePairs(*model, /*pairs_per_prompt=*/1, 7);
  engine::LoraOptions lora;
  lora.rank = 8;
  model->AttachLora(lora);

  engine::TrainOptions options;
  options.objective = engine::MakeObjective("sdpo", /*beta=*/100);
  options.steps = steps;
  options.batch = 8;
  engine::Training training(*model, *pairs, options);
  for (int i = 0; i < steps; ++i) {
    const engine::StepRecord r = training.Step();
    std::printf("step %lld: loss %.4f reward accuracy %.2f grad norm %.3g%s\n",
                static_cast<long long>(r.step), r.metrics.loss, r.metrics.reward_accuracy,
                r.grad_norm, r.skipped ? " (skipped)" : "");
  }
  if (!adapters_path.empty()) model->SaveAdapters(adapters_path);

  const std::string prompt = demo.heldout_prompts().front();
  const std::vector<sdpo::Tensor> samples =
      model->Sample(demo.latent_shape(), {demo.EncodeText(prompt)}, {}, demo.sample_options());
  std::printf("sample for \"%s\": %s, reward %.4f\n", prompt.c_str(), samples[0].str().c_str(),
              demo.Reward(prompt, samples[0]));
  const engine::Demo::Evaluation eval = demo.Evaluate(*model, /*samples_per_prompt=*/1, 0);
  std::printf("held-out reward %.4f (base %.4f), win rate %.2f\n", eval.reward, eval.base_reward,
              eval.win_rate);
  return 0;
}

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  try {
    return Run(absl::GetFlag(FLAGS_steps), absl::GetFlag(FLAGS_adapters));
  } catch (const std::exception& e) {  // the engine reports failures as sdpo::Error
    std::fprintf(stderr, "embed: %s\n", e.what());
    return 1;
  }
}
