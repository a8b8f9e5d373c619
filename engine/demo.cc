#include "engine/demo.h"

#include "nn/lora.h"
#include "trainers/demo_setup.h"

namespace sdpo::engine {

Demo::Demo() : world_(std::make_unique<demo::DemoWorld>()) {}
Demo::~Demo() = default;

std::string Demo::BaseModelPath() { return trainers::kDemoBaseModelPath; }

namespace {
std::vector<std::string> Texts(const std::vector<demo::DemoPrompt>& prompts) {
  std::vector<std::string> out;
  for (const demo::DemoPrompt& p : prompts) out.push_back(p.text);
  return out;
}
}  // namespace

std::vector<std::string> Demo::train_prompts() const { return Texts(world_->train_prompts()); }
std::vector<std::string> Demo::heldout_prompts() const { return Texts(world_->heldout_prompts()); }
std::vector<int64_t> Demo::latent_shape() const { return world_->latent_shape(); }
Tensor Demo::EncodeText(const std::string& prompt) const { return world_->EncodeText(prompt); }

SampleOptions Demo::sample_options() const {
  const samplers::FlowSampleOptions demo = trainers::DemoSampleOptions();
  SampleOptions o;
  o.solver = samplers::FlowSolverName(demo.solver);
  o.steps = demo.steps;
  o.shift = demo.shift;
  o.guidance = demo.guide_scale;
  return o;
}

double Demo::Reward(const std::string& prompt, const Tensor& latent) const {
  return world_->Reward(world_->Find(prompt), latent);
}

std::unique_ptr<PairSource> Demo::MakePairs(Model& base, int pairs_per_prompt,
                                            uint64_t seed) const {
  Runtime::Scope pool(base.runtime());
  SDPO_CHECK(base.family() == "wan21", "engine::Demo::MakePairs: the demo model is wan21, got ",
             base.family());
  models::DiffusionModel& model = base.diffusion_model();
  nn::LoraDisabledScope adapters_off(model.module());
  std::vector<data::PreferencePair> pairs =
      trainers::GenerateDemoPairs(model, *world_, pairs_per_prompt, 0.02, seed, nullptr);
  return std::make_unique<InMemoryPairs>(std::move(pairs));
}

Demo::Evaluation Demo::Evaluate(Model& policy, int samples_per_prompt, uint64_t seed) const {
  Runtime::Scope pool(policy.runtime());
  trainers::DemoEvaluator evaluator(*world_, samples_per_prompt, seed);
  const trainers::EvalResult r = evaluator.Evaluate(policy.diffusion_model());
  return {r.Get("heldout_reward"), r.Get("base_heldout_reward"), r.Get("win_rate_vs_base")};
}

}  // namespace sdpo::engine
