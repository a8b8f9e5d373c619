// Test helper: writes a tiny CogVideoX-2B-architecture checkpoint and a small preference
// dataset on disk, for the end-to-end test of `//trainers:sdpo --model=cogvideox-2b`.
//   make_tiny_cogvideox --out=DIR   ->  DIR/model.safetensors, DIR/data/
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "io/command_line.h"
#include "models/cogvideox/checkpoint.h"
#include "nn/init.h"
#include "tensor/ops.h"
#include "trainers/data/preference_dataset.h"

ABSL_FLAG(std::string, out, "", "output directory (required)");

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv,
                         "--out=DIR: writes a tiny CogVideoX-2B-architecture "
                         "checkpoint (DIR/model.safetensors) and preference pairs (DIR/data/)");
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "make_tiny_cogvideox: --out=DIR is required\n");
    return 2;
  }
  sdpo::cogvideox::CogVideoXConfig c;
  c.in_channels = c.out_channels = 4;
  c.num_attention_heads = 2;
  c.attention_head_dim = 8;
  c.text_embed_dim = 8;
  c.time_embed_dim = 16;
  c.num_layers = 1;
  c.sample_width = c.sample_height = 4;
  c.sample_frames = 5;  // 2 latent frames
  c.max_text_seq_length = 4;
  sdpo::nn::SetInitSeed(7);
  sdpo::cogvideox::SaveWeights(sdpo::cogvideox::CogVideoXModel(c), out + "/model.safetensors");
  sdpo::data::PreferenceDatasetWriter writer(out + "/data");
  for (int i = 0; i < 6; ++i) {
    sdpo::data::PreferencePair p;
    p.id = "pair" + std::to_string(i);
    p.prompt = "prompt " + std::to_string(i % 3);
    p.winner = sdpo::ops::MulScalar(sdpo::ops::RandomNormal({4, 2, 4, 4}, 1, i * 128), 0.5);
    p.loser = sdpo::ops::Add(p.winner, sdpo::ops::RandomNormal({4, 2, 4, 4}, 2, i * 128));
    p.context = sdpo::ops::RandomNormal({3, 8}, 3, (i % 3) * 24);
    writer.Add(p);
  }
  writer.Finish();
  return 0;
}
