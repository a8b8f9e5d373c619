// Test helper: a tiny CogVideoX checkpoint in the diffusers layout (trainers/cogvideox_folder.h)
// made from the shared fixtures: transformer/ (the tiny_2b or tiny_5b DiT architecture with the
// tiny T5's text width 48 and 226 text tokens, random weights from a fixed seed), vae/ (the
// cogvideox_vae tiny_a weights), text_encoder/ (t5 tiny_a under transformers names, with a
// transformers config.json) and tokenizer/spiece.model (the umt5 fixtures' tiny SentencePiece
// model, vocab 300 like the tiny T5).
#pragma once

#include <cstdint>
#include <string>

namespace sdpo::testing {

struct TinyCogVideoXOptions {
  bool five_b = false;    // the 5B architecture (3-D RoPE) instead of 2B (sin-cos table)
  int64_t text_dim = 48;  // the DiT's text_embed_dim (48 = the tiny T5's)
  int64_t frames = 9;     // the DiT's sample size (its sin-cos table / RoPE base grid)
  int64_t height = 32, width = 32;
};

// Writes the folder under `dir` from the fixtures in `fixtures` (the shared/fixtures folder).
void WriteTinyCogVideoXFolder(const std::string& dir, const std::string& fixtures,
                              const TinyCogVideoXOptions& options = {});

}  // namespace sdpo::testing
