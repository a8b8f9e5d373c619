#include "trainers/demo_setup.h"

#include <cmath>

#include "nn/lora.h"

namespace sdpo::trainers {

wan21::WanConfig DemoModelConfig(const DemoWorld& world) {
  wan21::WanConfig c;
  c.in_dim = c.out_dim = world.config().channels;
  c.dim = 64;
  c.ffn_dim = 256;
  c.freq_dim = 64;
  c.num_heads = 4;
  c.num_layers = 3;
  c.text_dim = world.config().text_dim;
  c.text_len = world.config().text_len;
  return c;
}

samplers::FlowSampleOptions DemoSampleOptions() {
  samplers::FlowSampleOptions o;
  o.solver = samplers::FlowSolver::kEuler;
  o.steps = 16;
  o.shift = 5.0;
  o.guide_scale = 1.0;  // the demo model is trained without prompt dropout
  return o;
}

std::vector<Tensor> SampleDemo(models::DiffusionModel& model, const DemoWorld& world,
                               const std::vector<DemoPrompt>& prompts,
                               const std::vector<uint64_t>& seeds,
                               const samplers::FlowSampleOptions& options) {
  SDPO_CHECK(prompts.size() == seeds.size(), "SampleDemo: ", prompts.size(), " prompts, ",
             seeds.size(), " seeds");
  // The sampler runs where the model is (the noise is drawn there: Philox gives the same values
  // on every device); the samples come back to the CPU, where the world scores them.
  const Device device = ModelDevice(model);
  std::vector<Tensor> noise, contexts;
  for (size_t i = 0; i < prompts.size(); ++i) {
    noise.push_back(ops::RandomNormal(world.latent_shape(), seeds[i], 0, kF32, device));
    contexts.push_back(world.EncodeText(prompts[i]));
  }
  std::vector<Tensor> samples = samplers::SampleFlow(model, noise, contexts, {}, options);
  for (Tensor& s : samples) {
    if (!s.device().is_cpu()) s = ops::To(s, Device::CPU());
  }
  return samples;
}

std::vector<data::PreferencePair> GenerateDemoPairs(models::DiffusionModel& base, const DemoWorld& world,
                                int pairs_per_prompt, double min_gap, uint64_t seed,
                                DemoPairStats* stats) {
  std::vector<DemoPrompt> prompts;
  std::vector<uint64_t> seeds;
  uint64_t next = seed * 1000003ull + 17;
  for (const DemoPrompt& p : world.train_prompts()) {
    for (int k = 0; k < 2 * pairs_per_prompt; ++k) {
      prompts.push_back(p);
      seeds.push_back(next++);
    }
  }
  std::vector<Tensor> samples = SampleDemo(base, world, prompts, seeds, DemoSampleOptions());
  std::vector<data::PreferencePair> pairs;
  DemoPairStats s;
  for (size_t i = 0; i + 1 < samples.size(); i += 2) {
    double ra = world.Reward(prompts[i], samples[i]);
    double rb = world.Reward(prompts[i + 1], samples[i + 1]);
    if (std::abs(ra - rb) < min_gap) continue;
    data::PreferencePair tp;
    tp.id = prompts[i].text + " #" + std::to_string(i / 2);
    tp.prompt = prompts[i].text;
    bool a_wins = ra > rb;
    tp.winner = a_wins ? samples[i] : samples[i + 1];
    tp.loser = a_wins ? samples[i + 1] : samples[i];
    tp.context = world.EncodeText(prompts[i]);
    s.mean_reward_winner += std::max(ra, rb);
    s.mean_reward_loser += std::min(ra, rb);
    s.mean_gap += std::abs(ra - rb);
    pairs.push_back(std::move(tp));
  }
  s.pairs = pairs.size();
  if (s.pairs > 0) {
    s.mean_reward_winner /= s.pairs;
    s.mean_reward_loser /= s.pairs;
    s.mean_gap /= s.pairs;
  }
  if (stats) *stats = s;
  return pairs;
}

DemoEvaluator::DemoEvaluator(const DemoWorld& world, int samples_per_prompt, uint64_t seed)
    : world_(world) {
  uint64_t next = seed * 7919ull + 1000000007ull;
  for (const DemoPrompt& p : world.heldout_prompts()) {
    for (int k = 0; k < samples_per_prompt; ++k) {
      prompts_.push_back(p);
      seeds_.push_back(next++);
    }
  }
}

EvalResult DemoEvaluator::Evaluate(models::DiffusionModel& policy) {
  if (base_rewards_.empty()) {
    nn::LoraDisabledScope base(policy.module());
    std::vector<Tensor> s = SampleDemo(policy, world_, prompts_, seeds_, DemoSampleOptions());
    for (size_t i = 0; i < s.size(); ++i) base_rewards_.push_back(world_.Reward(prompts_[i], s[i]));
  }
  std::vector<Tensor> s = SampleDemo(policy, world_, prompts_, seeds_, DemoSampleOptions());
  double mean = 0, wins = 0, base_mean = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    double r = world_.Reward(prompts_[i], s[i]);
    mean += r;
    base_mean += base_rewards_[i];
    const double tie = 1e-6 * std::max(1.0, std::abs(r));  // float noise between equal models
    wins += r > base_rewards_[i] + tie ? 1.0 : (std::abs(r - base_rewards_[i]) <= tie ? 0.5 : 0.0);
  }
  const double n = static_cast<double>(s.size());
  return EvalResult{{{"heldout_reward", mean / n},
                     {"base_heldout_reward", base_mean / n},
                     {"win_rate_vs_base", wins / n}}};
}

}  // namespace sdpo::trainers
