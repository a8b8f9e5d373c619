#include "engine/model.h"

#include "autograd/grad_mode.h"
#include "models/samplers/ddpm_samplers.h"
#include "models/samplers/flow_samplers.h"
#include "nn/checkpoint_io.h"
#include "nn/init.h"
#include "nn/lora.h"
#include "tensor/ops.h"
#include "trainers/model_factory.h"
#include "trainers/trainer.h"

namespace sdpo::engine {

struct Model::State {
  trainers::TrainModel loaded;
};

Model::Model(const Runtime& runtime, std::string family, std::unique_ptr<State> state)
    : runtime_(runtime), family_(std::move(family)), state_(std::move(state)) {}

Model::~Model() = default;

std::unique_ptr<Model> Model::Load(const Runtime& runtime, const std::string& family,
                                   const std::string& checkpoint) {
  Runtime::Scope pool(runtime);
  auto state = std::make_unique<State>();
  state->loaded = trainers::LoadTrainModel(family, checkpoint);
  trainers::PlaceModels(*state->loaded.model, nullptr, runtime.device(), runtime.compute_dtype());
  return std::unique_ptr<Model>(new Model(runtime, family, std::move(state)));
}

models::DiffusionModel& Model::diffusion_model() { return *state_->loaded.model; }

int64_t Model::latent_channels() const { return state_->loaded.latent_channels; }
const NoiseSchedule& Model::noise_schedule() const { return *state_->loaded.schedule; }
int64_t Model::text_dim() const { return state_->loaded.text_dim; }
int64_t Model::num_parameters(bool trainable_only) const {
  return state_->loaded.model->module().NumParameters(trainable_only);
}

void Model::AttachLora(const LoraOptions& options) {
  Runtime::Scope pool(runtime_);
  SDPO_CHECK(!has_lora(), "engine::Model::AttachLora: the model already has adapters");
  nn::Module& module = state_->loaded.model->module();
  module.SetRequiresGrad(false);
  nn::LoraConfig lora;
  lora.rank = options.rank;
  lora.alpha = options.alpha;
  lora.targets = options.targets.empty() ? state_->loaded.lora_targets : options.targets;
  nn::SetInitSeed(options.seed);  // the calling thread's initialisation stream
  nn::AttachLora(module, lora);
  // Adapters are created on the CPU in f32: place them with the base weights.
  trainers::PlaceModels(*state_->loaded.model, nullptr, runtime_.device(),
                        runtime_.compute_dtype());
}

bool Model::has_lora() const {
  return !nn::LoraLayers(std::as_const(state_->loaded.model->module())).empty();
}

void Model::SaveAdapters(const std::string& path) const {
  SDPO_CHECK(has_lora(), "engine::Model::SaveAdapters: the model has no adapters");
  nn::SaveLora(state_->loaded.model->module(), path);
}

void Model::LoadAdapters(const std::string& path) {
  Runtime::Scope pool(runtime_);
  nn::LoadLora(state_->loaded.model->module(), path);
  state_->loaded.model->module().SetRequiresGrad(false);
  trainers::PlaceModels(*state_->loaded.model, nullptr, runtime_.device(),
                        runtime_.compute_dtype());
}

std::vector<Tensor> Model::Forward(const std::vector<Tensor>& latents,
                                   const std::vector<double>& timesteps,
                                   const std::vector<Tensor>& contexts) {
  Runtime::Scope pool(runtime_);
  SDPO_CHECK(latents.size() == timesteps.size(), "engine::Model::Forward: ", latents.size(),
             " latents need as many timesteps, got ", timesteps.size());
  const Device device = runtime_.device();
  auto on_device = [&](const std::vector<Tensor>& ts) {
    std::vector<Tensor> out;
    for (const Tensor& t : ts) out.push_back(t.device() == device ? t : ops::To(t, device));
    return out;
  };
  const Tensor t = ops::To(
      Tensor::FromVector(timesteps, {static_cast<int64_t>(timesteps.size())}, kF32), device);
  std::vector<Tensor> out;
  {
    NoGradGuard no_grad;
    out = state_->loaded.model->ForwardList(on_device(latents), t, on_device(contexts));
  }
  for (Tensor& y : out) y = ops::Cast(ops::To(y, Device::CPU()), kF32);
  return out;
}

std::vector<Tensor> Model::Sample(const std::vector<int64_t>& latent_shape,
                                  const std::vector<Tensor>& contexts,
                                  const std::vector<Tensor>& null_contexts,
                                  const SampleOptions& options) {
  Runtime::Scope pool(runtime_);
  const Device device = runtime_.device();
  const Shape shape(latent_shape.begin(), latent_shape.end());
  std::vector<Tensor> noise, ctx, null_ctx;
  for (size_t i = 0; i < contexts.size(); ++i) {
    // Counter-based draws: sample i's noise is the same on every device and thread count.
    noise.push_back(ops::RandomNormal(shape, options.seed, i * NumElements(shape), kF32, device));
    ctx.push_back(ops::To(contexts[i], device));
  }
  for (const Tensor& c : null_contexts) null_ctx.push_back(ops::To(c, device));
  models::DiffusionModel& model = *state_->loaded.model;
  std::vector<Tensor> samples;
  if (model.family() == ScheduleFamily::kFlow) {
    samplers::FlowSampleOptions o;
    o.solver = samplers::ParseFlowSolver(options.solver);
    o.steps = options.steps;
    o.shift = options.shift;
    o.guide_scale = options.guidance;
    samples = samplers::SampleFlow(model, noise, ctx, null_ctx, o);
  } else {
    samplers::DdpmSampleOptions o;
    SDPO_CHECK(options.solver == "ddim" || options.solver == "dpm",
               "engine::Model::Sample: solver '", options.solver,
               "' for a DDPM model: expected ddim or dpm");
    o.solver = options.solver == "dpm" ? samplers::DdpmSolver::kDpm : samplers::DdpmSolver::kDdim;
    o.steps = options.steps;
    o.guidance_scale = options.guidance;
    o.noise_seed = options.seed;
    Tensor batch = samplers::SampleDdpm(model, state_->loaded.schedule->alphas_cumprod(), noise,
                                        ctx, null_ctx, o);
    for (int64_t i = 0; i < batch.size(0); ++i) samples.push_back(select(batch, 0, i));
  }
  for (Tensor& s : samples) s = ops::Cast(ops::To(s, Device::CPU()), kF32);
  return samples;
}

}  // namespace sdpo::engine
