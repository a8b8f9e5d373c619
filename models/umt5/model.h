// The T5 encoder of Wan2.1 (umT5-XXL) and CogVideoX (T5 v1.1-XXL): one code
// path, module names and parameter layout of the official Wan `T5Encoder`
// (wan/modules/t5.py):
//
//   token_embedding.weight                      [vocab, dim]
//   pos_embedding.embedding.weight              [num_buckets, heads]
//   (shared_pos only) blocks.N.norm1.weight, blocks.N.norm2.weight [dim]
//   blocks.N.attn.{q,k,v}.weight                [dim_attn, dim]
//   blocks.N.attn.o.weight                      [dim, dim_attn]
//   blocks.N.ffn.gate.0.weight, ffn.fc1.weight  [dim_ffn, dim]
//   blocks.N.ffn.fc2.weight                     [dim, dim_ffn]
//   blocks.N.pos_embedding.embedding.weight     [num_buckets, heads]   (umT5:
//   per block) norm.weight                                 [dim]
//
// Per block: x += attn(norm1(x)); x += ffn(norm2(x)); then out = norm(x). Norms
// are T5's RMS norm (eps 1e-6, no mean, no bias); attention is unscaled (no
// 1/sqrt(d)) with an additive relative position bias and masked keys set to the
// dtype's lowest value (padded query rows are computed like any other); the FFN
// is fc2(fc1(h) * gelu_tanh(gate(h))).
//
// Precision: parameters live in the dtype they were built with (bf16 for
// the 5.7B checkpoint, so the weights take 11.4 GB); each projection converts
// its weight to the compute dtype (f32 by default; bf16, or f64 for the oracle
// tests) as the product uses it, a cache-sized panel at a time; or, with ProjectionInputs::kBF16,
// multiplies bf16-rounded inputs by the bf16 weights (f32 accumulation). The encoder is built
// without random initialisation: load its weights (models/umt5/checkpoint.h).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/umt5/config.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace sdpo::umt5 {

// Bucket of every (query, key) pair, i64 [lq, lk]: for r = key - query, half of
// the buckets for r > 0; |r| below num_buckets/4 exact, larger distances
// logarithmic up to max_distance (float32 log, truncated, as t5.py), clamped to
// the last bucket of the direction.
Tensor RelativePositionBuckets(int64_t lq, int64_t lk, int64_t num_buckets, int64_t max_distance);

// A lookup table module with one parameter `weight` [rows, cols] (PyTorch's
// nn.Embedding).
class Embedding : public nn::Module {
 public:
  Embedding(int64_t rows, int64_t cols, DType dtype);
  std::string TypeName() const override { return "Embedding"; }
  // ids (i64, any shape, values in [0, rows)) -> [..., cols] in the compute
  // dtype.
  Tensor Forward(const Tensor& ids) const;
  const Tensor& weight() const { return weight_; }

 private:
  int64_t rows_, cols_;
  Tensor weight_;
};

// The relative position bias: `embedding.weight` [num_buckets, heads] indexed
// by the buckets.
class RelativeEmbedding : public nn::Module {
 public:
  RelativeEmbedding(const T5Config& config, DType dtype);
  std::string TypeName() const override { return "T5RelativeEmbedding"; }
  // [1, heads, lq, lk] in the compute dtype.
  Tensor Forward(int64_t lq, int64_t lk) const;

 private:
  int64_t num_buckets_, max_distance_;
  Embedding* embedding_;
};

// How the projections multiply (docs/text.md), under f32 compute:
//   kF32   x and W in f32 (a bf16 W converted as the product reads it): the fixtures' numerics;
//   kBF16  x rounded to bf16, W in bf16 (as stored, else rounded), products accumulated in f32
//          and returned in f32 (ops::Matmul(x, W^T, kF32): oneDNN's bf16 matmul on the CPU).
// Norms, softmax, GELU and the residual stream stay in the compute dtype either way.
enum class ProjectionInputs { kF32, kBF16 };
const char* ProjectionInputsName(ProjectionInputs inputs);  // "f32" | "bf16"
// "f32" | "bf16" (the tools' --compute / --text_compute); an error naming `flag` otherwise.
ProjectionInputs ParseProjectionInputs(const std::string& value, const std::string& flag);

// y = x W^T for a bias-free projection. Without gradients a weight narrower than the compute
// dtype (bf16 under f32) goes to the matmul as it is stored, which converts it panel by panel
// (ops::Matmul); with kBF16 inputs (f32 compute, no gradients) the product is a bf16 one;
// otherwise nn::Linear::Forward.
Tensor Project(const nn::Linear& layer, const Tensor& x,
               ProjectionInputs inputs = ProjectionInputs::kF32);

class Attention : public nn::Module {
 public:
  explicit Attention(const T5Config& config);
  std::string TypeName() const override { return "T5Attention"; }
  // x [B, L, dim]; bias [B or 1, heads, L, L] additive (position bias with the key mask).
  Tensor Forward(const Tensor& x, const Tensor& bias) const;
  void set_projection_inputs(ProjectionInputs inputs) { inputs_ = inputs; }

 private:
  int64_t num_heads_, head_dim_;
  nn::Linear *q_, *k_, *v_, *o_;
  ProjectionInputs inputs_ = ProjectionInputs::kF32;
};

class FeedForward : public nn::Module {
 public:
  explicit FeedForward(const T5Config& config);
  std::string TypeName() const override { return "T5FeedForward"; }
  Tensor Forward(const Tensor& x) const;
  void set_projection_inputs(ProjectionInputs inputs) { inputs_ = inputs; }

 private:
  nn::Linear *gate_, *fc1_, *fc2_;
  ProjectionInputs inputs_ = ProjectionInputs::kF32;
};

// Tensors recorded during a forward, by the fixtures' names without the "act."
// prefix: token_embedding, [blocks.0.]pos_embedding,
// blocks.N.{norm1,attn,norm2,ffn}, blocks.N, norm.
using Activations = std::map<std::string, Tensor>;

class Block : public nn::Module {
 public:
  Block(const T5Config& config, DType dtype);
  std::string TypeName() const override { return "T5SelfAttention"; }
  // key_mask: [B, 1, 1, L] bool (true = masked key) or undefined; shared_bias:
  // the encoder's [1, heads, L, L] bias (shared_pos) or undefined (the block's
  // own table).
  Tensor Forward(const Tensor& x, const Tensor& key_mask, const Tensor& shared_bias,
                 Activations* record, const std::string& prefix) const;
  void SetProjectionInputs(ProjectionInputs inputs);

 private:
  nn::RMSNorm *norm1_, *norm2_;
  Attention* attn_;
  FeedForward* ffn_;
  RelativeEmbedding* pos_embedding_ = nullptr;
};

class T5Encoder : public nn::Module {
 public:
  // Parameters in `dtype` (zeros until loaded), compute dtype f32.
  explicit T5Encoder(const T5Config& config, DType dtype = kF32);
  std::string TypeName() const override { return "T5Encoder"; }
  const T5Config& config() const { return config_; }

  // ids [B, L] (i64 in [0, vocab)); mask [B, L] (nonzero = token) or undefined
  // (every key attended to, as CogVideoX calls T5 v1.1). Returns hidden [B, L,
  // dim] in the compute dtype, padded rows included. `record`, when given,
  // receives the intermediates.
  Tensor Forward(const Tensor& ids, const Tensor& mask, Activations* record = nullptr) const;

  // Every block's projections (default kF32). kBF16 needs f32 compute (SetComputeDType).
  void SetProjectionInputs(ProjectionInputs inputs);
  ProjectionInputs projection_inputs() const { return inputs_; }

 private:
  T5Config config_;
  ProjectionInputs inputs_ = ProjectionInputs::kF32;
  Embedding* token_embedding_;
  RelativeEmbedding* pos_embedding_ = nullptr;
  nn::ModuleList* blocks_;
  nn::RMSNorm* norm_;
};

// What the Wan pipeline hands to the DiT: hidden[i, :n_i] for n_i = the number
// of nonzero entries of mask[i] (T5EncoderModel.__call__'s trim).
std::vector<Tensor> TrimToTokens(const Tensor& hidden, const Tensor& mask);

}  // namespace sdpo::umt5
