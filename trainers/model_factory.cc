#include "trainers/model_factory.h"

#include <filesystem>

#include "models/cogvideox/checkpoint.h"
#include "models/wan21/checkpoint.h"
#include "trainers/cogvideox_folder.h"

namespace sdpo::trainers {
namespace {

// Presents a model that takes [F, C, H, W] latents as one that takes [C, F, H, W].
class FrameMajorAdapter final : public models::DiffusionModel {
 public:
  explicit FrameMajorAdapter(std::unique_ptr<models::DiffusionModel> inner)
      : inner_(std::move(inner)) {}
  nn::Module& module() override { return inner_->module(); }
  const nn::Module& module() const override { return inner_->module(); }
  Tensor Forward(const std::vector<Tensor>& latents, const Tensor& timesteps,
                 const std::vector<Tensor>& contexts) override {
    std::vector<Tensor> swapped;
    for (const Tensor& x : latents) swapped.push_back(transpose(x, 0, 1));
    return transpose(inner_->Forward(swapped, timesteps, contexts), 1,
                     2);  // [B, F, C..] -> [B, C, F..]
  }
  ScheduleFamily family() const override { return inner_->family(); }
  void SetRecompute(bool on) override { inner_->SetRecompute(on); }
  bool recompute() const override { return inner_->recompute(); }

 private:
  std::unique_ptr<models::DiffusionModel> inner_;
};

}  // namespace

NoiseSchedule TrainSchedule(const std::string& name) {
  if (name == "wan21") return NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
  if (name == "cogvideox-2b") return NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  if (name == "cogvideox-5b") return NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX5B());
  SDPO_FAIL("--model=", name, ": expected wan21, cogvideox-2b or cogvideox-5b");
}

TrainModel LoadTrainModel(const std::string& name, const std::string& checkpoint) {
  TrainModel t;
  if (name == "wan21") {
    auto m = wan21::LoadModel(checkpoint);
    t.latent_channels = m->config().in_dim;
    t.text_dim = m->config().text_dim;
    t.max_text_len = m->config().text_len;
    t.latent_patch = m->config().patch_size;
    t.model = std::move(m);
    t.schedule = TrainSchedule(name);
    t.lora_targets = {"blocks.*.self_attn.{q,k,v,o}", "blocks.*.cross_attn.{q,k,v,o}",
                      "blocks.*.ffn.{0,2}"};
    return t;
  }
  if (name == "cogvideox-2b" || name == "cogvideox-5b") {
    // A diffusers folder (transformer/, vae/, ...) stands for its transformer/.
    const std::filesystem::path transformer = std::filesystem::path(checkpoint) / "transformer";
    std::error_code ec;
    const bool folder = std::filesystem::is_directory(transformer, ec);
    t.schedule = TrainSchedule(name);
    if (folder) {
      CheckCogVideoXScheduler(FindCogVideoXCheckpoint(checkpoint), t.schedule->ddpm_config(), name);
    }
    auto m = cogvideox::LoadModel(folder ? transformer.string() : checkpoint);
    t.latent_channels = m->config().in_channels;
    t.text_dim = m->config().text_embed_dim;
    t.max_text_len = m->config().max_text_seq_length;
    t.latent_patch = {1, m->config().patch_size, m->config().patch_size};
    t.model = std::make_unique<FrameMajorAdapter>(std::move(m));
    t.lora_targets = {"transformer_blocks.*.attn1.{to_q,to_k,to_v}",
                      "transformer_blocks.*.attn1.to_out.0", "transformer_blocks.*.ff.net.0.proj",
                      "transformer_blocks.*.ff.net.2"};
    return t;
  }
  SDPO_FAIL("--model=", name, ": expected wan21, cogvideox-2b or cogvideox-5b");
}

}  // namespace sdpo::trainers
