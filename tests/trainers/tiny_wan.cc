#include "tests/trainers/tiny_wan.h"

#include <string>

#include "nn/init.h"
#include "nn/lora.h"
#include "tensor/ops.h"

namespace sdpo::trainers::testing {

wan21::WanConfig TinyWanConfig(int64_t num_layers, int64_t ffn_dim, int64_t text_len) {
  wan21::WanConfig c;
  c.in_dim = c.out_dim = 4;
  c.dim = 32;
  c.ffn_dim = ffn_dim;
  c.freq_dim = 16;
  c.text_dim = 8;
  c.text_len = text_len;
  c.num_heads = 2;
  c.num_layers = num_layers;
  return c;
}

std::unique_ptr<wan21::WanModel> MakeTinyLoraModel() {
  nn::SetInitSeed(5);
  auto model = std::make_unique<wan21::WanModel>(TinyWanConfig());
  nn::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 4;
  lora.targets = {"blocks.*.self_attn.{q,k,v,o}", "blocks.*.ffn.{0,2}"};
  nn::AttachLora(*model, lora);
  return model;
}

TrainerConfig TinyRunConfig(const std::string& out, int64_t steps) {
  TrainerConfig c;
  c.steps = steps;
  c.batch = 2;
  c.lr.base_lr = 1e-3;
  c.seed = 11;
  c.out_dir = out;
  c.progress = false;
  c.objective.beta = 50;
  return c;
}

cogvideox::CogVideoXConfig TinyCogVideoXConfig() {
  cogvideox::CogVideoXConfig c;
  c.in_channels = c.out_channels = 4;
  c.num_attention_heads = 2;
  c.attention_head_dim = 8;
  c.text_embed_dim = 8;
  c.time_embed_dim = 16;
  c.num_layers = 1;
  c.sample_width = c.sample_height = 4;
  c.sample_frames = 5;  // 2 latent frames
  c.max_text_seq_length = 4;
  return c;
}

data::PreferencePair SyntheticPairs::Get(int64_t i) const {
  data::PreferencePair p;
  p.id = std::to_string(i);
  p.winner = ops::MulScalar(ops::RandomNormal({4, 2, 4, 4}, 77, i * 128), 0.5);
  p.loser = ops::Add(p.winner, ops::RandomNormal({4, 2, 4, 4}, 78, i * 128));
  p.context = ops::RandomNormal({3, 8}, 79, i * 24);
  return p;
}

}  // namespace sdpo::trainers::testing
