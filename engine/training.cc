#include "engine/training.h"

#include "absl/strings/str_cat.h"
#include "io/json.h"
#include "nn/lr_schedule.h"

namespace sdpo::engine {

Training::Training(Model& policy, const PairSource& pairs, const TrainOptions& options,
                   Model* reference)
    : policy_(policy) {
  Runtime::Scope pool(policy.runtime());
  SDPO_CHECK(reference != nullptr || policy.has_lora(),
             "engine::Training: the policy needs LoRA adapters (Model::AttachLora), or pass a "
             "frozen reference model for full fine-tuning");
  trainers::TrainerConfig c;
  c.objective = options.objective;
  c.timesteps.sampling = ParseTimestepSampling(options.timestep_sampling);
  c.timesteps.min_timestep = c.objective.min_timestep;
  c.timesteps.max_timestep = c.objective.max_timestep;
  c.steps = options.steps;
  c.batch = options.batch;
  c.grad_accum = options.grad_accum;
  c.lr.kind = nn::ParseLrScheduleKind(options.lr_schedule);
  c.lr.base_lr = options.lr;
  c.lr.warmup_steps = options.warmup;
  c.lr.total_steps = options.steps;
  c.weight_decay = options.weight_decay;
  c.max_grad_norm = options.max_grad_norm;
  c.seed = options.seed;
  c.max_bad_steps = options.max_bad_steps;
  c.out_dir = options.out_dir;
  c.progress = false;
  c.device = policy.runtime().device();
  c.compute_dtype = policy.runtime().compute_dtype();
  c.description =
      absl::StrCat("{\"engine\": true, \"family\": ", json::Quote(policy.family()),
                   ", \"objective\": ", json::Quote(DescribeObjectiveConfig(c.objective)), "}");
  models::DiffusionModel& model = policy.diffusion_model();
  trainer_ = std::make_unique<trainers::Trainer>(
      c, policy.noise_schedule(), model,
      reference != nullptr ? &reference->diffusion_model() : nullptr, pairs, nullptr);
}

Training::~Training() = default;

StepRecord Training::Step() {
  Runtime::Scope pool(policy_.runtime());
  return trainer_->Step();
}

int64_t Training::step() const { return trainer_->step(); }
const std::vector<StepRecord>& Training::history() const { return trainer_->history(); }

void Training::Save(const std::string& path) const {
  Runtime::Scope pool(policy_.runtime());
  trainer_->SaveCheckpoint(path);
}

void Training::Resume(const std::string& path) {
  Runtime::Scope pool(policy_.runtime());
  trainer_->Resume(path);
}

}  // namespace sdpo::engine
