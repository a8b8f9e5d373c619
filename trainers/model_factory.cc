#include "trainers/model_factory.h"

#include <filesystem>

#include "models/cogvideox/checkpoint.h"
#include "models/wan21/checkpoint.h"

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

TrainModel LoadTrainModel(const std::string& name, const std::string& checkpoint) {
  TrainModel t;
  if (name == "wan21") {
    auto m = wan21::LoadModel(checkpoint);
    t.latent_channels = m->config().in_dim;
    t.text_dim = m->config().text_dim;
    t.max_text_len = m->config().text_len;
    t.latent_patch = m->config().patch_size;
    t.model = std::move(m);
    t.schedule = NoiseSchedule::Flow(FlowScheduleConfig::Wan21());
    t.lora_targets = {"blocks.*.self_attn.{q,k,v,o}", "blocks.*.cross_attn.{q,k,v,o}",
                      "blocks.*.ffn.{0,2}"};
    return t;
  }
  if (name == "cogvideox-2b" || name == "cogvideox-5b") {
    // A diffusers folder (transformer/, vae/, ...) stands for its transformer/.
    const std::filesystem::path transformer = std::filesystem::path(checkpoint) / "transformer";
    std::error_code ec;
    auto m = cogvideox::LoadModel(
        std::filesystem::is_directory(transformer, ec) ? transformer.string() : checkpoint);
    t.latent_channels = m->config().in_channels;
    t.text_dim = m->config().text_embed_dim;
    t.max_text_len = m->config().max_text_seq_length;
    t.latent_patch = {1, m->config().patch_size, m->config().patch_size};
    t.model = std::make_unique<FrameMajorAdapter>(std::move(m));
    t.schedule = NoiseSchedule::Ddpm(name == "cogvideox-2b" ? DdpmScheduleConfig::CogVideoX2B()
                                                            : DdpmScheduleConfig::CogVideoX5B());
    t.lora_targets = {"transformer_blocks.*.attn1.{to_q,to_k,to_v}",
                      "transformer_blocks.*.attn1.to_out.0", "transformer_blocks.*.ff.net.0.proj",
                      "transformer_blocks.*.ff.net.2"};
    return t;
  }
  SDPO_FAIL("--model=", name, ": expected wan21, cogvideox-2b or cogvideox-5b");
}

}  // namespace sdpo::trainers
