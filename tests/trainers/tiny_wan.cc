#include "tests/trainers/tiny_wan.h"

#include <string>

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

data::PreferencePair SyntheticPairs::Get(int64_t i) const {
  data::PreferencePair p;
  p.id = std::to_string(i);
  p.winner = ops::MulScalar(ops::RandomNormal({4, 2, 4, 4}, 77, i * 128), 0.5);
  p.loser = ops::Add(p.winner, ops::RandomNormal({4, 2, 4, 4}, 78, i * 128));
  p.context = ops::RandomNormal({3, 8}, 79, i * 24);
  return p;
}

}  // namespace sdpo::trainers::testing
