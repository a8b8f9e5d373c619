// Helpers for the data tests: temporary directories and small synthetic pairs.
#pragma once

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tensor/ops.h"
#include "trainers/data/preference_dataset.h"

namespace sdpo::data::testing {

// A fresh directory under TEST_TMPDIR.
inline std::string TempDir(const std::string& name) {
  const char* root = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(root ? root : "/tmp") + "/" + name;
  std::system(("rm -rf '" + dir + "'").c_str());
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

inline const DatasetSpec& SmallSpec() {
  static const DatasetSpec spec{/*channels=*/4, /*frames=*/3,
                                /*height=*/4,   /*width=*/5,
                                /*text_dim=*/8, /*max_text_len=*/6};
  return spec;
}

// Pair i: random latents [4, 3, 4, 5] and a context [2 + i % 3, 8] shared by prompts i % 4.
inline PreferencePair MakePair(int i, const Shape& latent = {4, 3, 4, 5}) {
  PreferencePair p;
  p.id = "pair-" + std::to_string(i);
  p.prompt = "prompt " + std::to_string(i % 4);
  p.winner = ops::RandomNormal(latent, 1000 + i, 0);
  p.loser = ops::RandomNormal(latent, 2000 + i, 0);
  p.context = ops::RandomNormal({2 + (i % 4) % 3, 8}, 3000 + i % 4, 0);
  p.weight = 1.0 + 0.25 * (i % 3);
  return p;
}

inline bool BitEqual(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.shape() == b.shape() && a.ToVector() == b.ToVector();
}

}  // namespace sdpo::data::testing
