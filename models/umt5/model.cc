#include "models/umt5/model.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "nn/init.h"
#include "tensor/ops.h"

namespace sdpo::umt5 {
namespace {

// The lowest finite value of a float dtype (torch.finfo(dtype).min), the masked
// keys' score.
double LowestValue(DType dtype) {
  switch (dtype) {
    case kF64:
      return std::numeric_limits<double>::lowest();
    case kBF16:
      return -3.3895313892515355e38;
    case kF16:
      return -65504.0;
    default:
      return std::numeric_limits<float>::lowest();
  }
}

void Record(Activations* record, const std::string& name, const Tensor& t) {
  if (record != nullptr) (*record)[name] = t;
}

}  // namespace

Tensor RelativePositionBuckets(int64_t lq, int64_t lk, int64_t num_buckets, int64_t max_distance) {
  SDPO_CHECK(lq > 0 && lk > 0 && num_buckets % 4 == 0 && max_distance > num_buckets / 4,
             "RelativePositionBuckets: bad arguments lq ", lq, ", lk ", lk, ", num_buckets ",
             num_buckets, ", max_distance ", max_distance);
  const int64_t half = num_buckets / 2, max_exact = half / 2;
  // t5.py evaluates the logarithmic part in float32 and truncates it toward
  // zero.
  const float log_range = static_cast<float>(
      std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
  std::vector<int64_t> buckets(static_cast<size_t>(lq * lk));
  for (int64_t i = 0; i < lq; ++i) {
    for (int64_t j = 0; j < lk; ++j) {
      const int64_t r = j - i, n = std::abs(r);
      int64_t b = r > 0 ? half : 0;
      if (n < max_exact) {
        b += n;
      } else {
        const float ratio = static_cast<float>(n) / static_cast<float>(max_exact);
        const float scaled = std::log(ratio) / log_range * static_cast<float>(half - max_exact);
        b += std::min<int64_t>(max_exact + static_cast<int64_t>(scaled), half - 1);
      }
      buckets[static_cast<size_t>(i * lk + j)] = b;
    }
  }
  return Tensor::FromVector(buckets, {lq, lk}, kI64);
}

// -----------------------------------------------------------------------------
// Embedding

Embedding::Embedding(int64_t rows, int64_t cols, DType dtype) : rows_(rows), cols_(cols) {
  weight_ = RegisterParameter("weight", Tensor::Zeros({rows, cols}, dtype), false);
}

Tensor Embedding::Forward(const Tensor& ids) const {
  SDPO_CHECK(ids.defined() && ids.dtype() == kI64, "Embedding: ids must be i64, found ",
             ids.defined() ? ids.str() : "nothing");
  Tensor flat = ops::Contiguous(ops::Reshape(ops::To(ids, Device::CPU()), {ids.numel()}));
  const int64_t* p = flat.data<int64_t>();
  for (int64_t i = 0; i < flat.numel(); ++i) {
    SDPO_CHECK(p[i] >= 0 && p[i] < rows_, "Embedding: id ", p[i], " at position ", i,
               " is outside the table [0, ", rows_, ")");
  }
  Shape shape = ids.shape();
  shape.push_back(cols_);
  Tensor rows = index_select(weight_, 0, ops::To(flat, weight_.device()));
  return reshape(ToCompute(rows), shape);
}

// -----------------------------------------------------------------------------
// position bias

RelativeEmbedding::RelativeEmbedding(const T5Config& config, DType dtype)
    : num_buckets_(config.num_buckets), max_distance_(config.max_distance) {
  embedding_ = RegisterModule(
      "embedding", std::make_unique<Embedding>(config.num_buckets, config.num_heads, dtype));
}

Tensor RelativeEmbedding::Forward(int64_t lq, int64_t lk) const {
  Tensor buckets = RelativePositionBuckets(lq, lk, num_buckets_, max_distance_);
  // Gathered from the transposed table [heads, num_buckets] so that the bias comes out
  // contiguous in [heads, lq * lk] (the attention reads it row by row), converted while small.
  Tensor table = transpose(ToCompute(embedding_->weight()), 0, 1);
  Tensor bias = index_select(table, 1, ops::To(ops::Reshape(buckets, {lq * lk}), table.device()));
  return reshape(bias, {1, table.size(0), lq, lk});
}

// -----------------------------------------------------------------------------
// attention, FFN

const char* ProjectionInputsName(ProjectionInputs inputs) {
  return inputs == ProjectionInputs::kBF16 ? "bf16" : "f32";
}

ProjectionInputs ParseProjectionInputs(const std::string& value, const std::string& flag) {
  SDPO_CHECK(value == "f32" || value == "bf16", flag, " must be f32 or bf16, got '", value, "'");
  return value == "bf16" ? ProjectionInputs::kBF16 : ProjectionInputs::kF32;
}

Tensor Project(const nn::Linear& layer, const Tensor& x, ProjectionInputs inputs) {
  const Tensor& w = layer.weight();
  const DType dt = layer.compute_dtype();
  if (inputs == ProjectionInputs::kBF16 && dt == kF32 && !GradEnabled()) {
    return ops::Matmul(ops::Cast(x, kBF16), ops::Transpose(ops::Cast(w, kBF16), 0, 1), kF32);
  }
  const bool narrower =
      w.dtype() != dt && (dt == kF64 || (dt == kF32 && IsReducedFloat(w.dtype())));
  if (!narrower || GradEnabled()) return layer.Forward(x);
  return ops::Matmul(ops::Cast(x, dt), ops::Transpose(w, 0, 1));
}

Attention::Attention(const T5Config& config)
    : num_heads_(config.num_heads), head_dim_(config.head_dim()) {
  q_ = RegisterModule("q", std::make_unique<nn::Linear>(config.dim, config.dim_attn, false));
  k_ = RegisterModule("k", std::make_unique<nn::Linear>(config.dim, config.dim_attn, false));
  v_ = RegisterModule("v", std::make_unique<nn::Linear>(config.dim, config.dim_attn, false));
  o_ = RegisterModule("o", std::make_unique<nn::Linear>(config.dim_attn, config.dim, false));
}

Tensor Attention::Forward(const Tensor& x, const Tensor& bias) const {
  const int64_t b = x.size(0), l = x.size(1);
  auto heads = [&](const nn::Linear* proj) {  // [B, L, H*D] -> [B, H, L, D]
    return permute(reshape(Project(*proj, x, inputs_), {b, l, num_heads_, head_dim_}),
                   {0, 2, 1, 3});
  };
  Tensor out = attention(heads(q_), heads(k_), heads(v_), bias, 1.0);  // T5: unscaled
  return Project(*o_, reshape(permute(out, {0, 2, 1, 3}), {b, l, num_heads_ * head_dim_}), inputs_);
}

FeedForward::FeedForward(const T5Config& config) {
  gate_ =
      RegisterModuleAt("gate.0", std::make_unique<nn::Linear>(config.dim, config.dim_ffn, false));
  fc1_ = RegisterModule("fc1", std::make_unique<nn::Linear>(config.dim, config.dim_ffn, false));
  fc2_ = RegisterModule("fc2", std::make_unique<nn::Linear>(config.dim_ffn, config.dim, false));
}

Tensor FeedForward::Forward(const Tensor& x) const {
  Tensor gated = gelu_tanh(Project(*gate_, x, inputs_));
  return Project(*fc2_, mul(Project(*fc1_, x, inputs_), gated), inputs_);
}

// -----------------------------------------------------------------------------
// block

Block::Block(const T5Config& config, DType dtype) {
  nn::SkipInitGuard skip_init;  // the weights come from a checkpoint
  norm1_ = RegisterModule("norm1", std::make_unique<nn::RMSNorm>(config.dim, config.eps));
  attn_ = RegisterModule("attn", std::make_unique<Attention>(config));
  norm2_ = RegisterModule("norm2", std::make_unique<nn::RMSNorm>(config.dim, config.eps));
  ffn_ = RegisterModule("ffn", std::make_unique<FeedForward>(config));
  // Converted now, one block at a time: the f32 copy of a full-size block is
  // 0.9 GB.
  CastParameters(dtype);
  if (!config.shared_pos) {
    pos_embedding_ =
        RegisterModule("pos_embedding", std::make_unique<RelativeEmbedding>(config, dtype));
  }
}

void Block::SetProjectionInputs(ProjectionInputs inputs) {
  attn_->set_projection_inputs(inputs);
  ffn_->set_projection_inputs(inputs);
}

Tensor Block::Forward(const Tensor& x, const Tensor& key_mask, const Tensor& shared_bias,
                      Activations* record, const std::string& prefix) const {
  Tensor bias = shared_bias;
  if (pos_embedding_ != nullptr) {
    bias = pos_embedding_->Forward(x.size(1), x.size(1));
    Record(record, prefix + ".pos_embedding", bias);
  }
  if (key_mask.defined()) {
    // The fill replaces bias and mask at masked keys (t5.py's masked_fill_).
    bias = where(key_mask, ops::ScalarLike(LowestValue(bias.dtype()), bias), bias);
  }
  Tensor h = norm1_->Forward(x);
  Record(record, prefix + ".norm1", h);
  Tensor a = attn_->Forward(h, bias);
  Record(record, prefix + ".attn", a);
  Tensor y = add(x, a);
  h = norm2_->Forward(y);
  Record(record, prefix + ".norm2", h);
  Tensor f = ffn_->Forward(h);
  Record(record, prefix + ".ffn", f);
  return add(y, f);
}

// -----------------------------------------------------------------------------
// encoder

T5Encoder::T5Encoder(const T5Config& config, DType dtype) : config_(config) {
  config_.Validate();
  SDPO_CHECK(IsFloating(dtype), "T5Encoder: parameters need a float dtype, got ", DTypeName(dtype));
  token_embedding_ = RegisterModule("token_embedding",
                                    std::make_unique<Embedding>(config.vocab, config.dim, dtype));
  if (config.shared_pos) {
    pos_embedding_ =
        RegisterModule("pos_embedding", std::make_unique<RelativeEmbedding>(config, dtype));
  }
  blocks_ = RegisterModule("blocks", std::make_unique<nn::ModuleList>());
  for (int64_t i = 0; i < config.num_layers; ++i) {
    blocks_->Append(std::make_unique<Block>(config, dtype));
  }
  norm_ = RegisterModule("norm", std::make_unique<nn::RMSNorm>(config.dim, config.eps));
  norm_->CastParameters(dtype);
}

void T5Encoder::SetProjectionInputs(ProjectionInputs inputs) {
  inputs_ = inputs;
  for (int64_t i = 0; i < blocks_->size(); ++i) blocks_->at<Block>(i)->SetProjectionInputs(inputs);
}

Tensor T5Encoder::Forward(const Tensor& ids, const Tensor& mask, Activations* record) const {
  SDPO_CHECK(ids.defined() && ids.dim() == 2 && ids.size(0) > 0 && ids.size(1) > 0,
             "T5Encoder: ids must be [B, L] with B, L > 0, found ",
             ids.defined() ? ids.str() : "nothing");
  SDPO_CHECK(inputs_ == ProjectionInputs::kF32 || compute_dtype() == kF32,
             "T5Encoder: bf16 projection inputs need f32 compute, found ",
             DTypeName(compute_dtype()));
  const int64_t b = ids.size(0), l = ids.size(1);
  Tensor key_mask;  // [B, 1, 1, L], true at padded keys
  if (mask.defined()) {
    SDPO_CHECK(mask.shape() == ids.shape(), "T5Encoder: mask ", mask.str(),
               " must have the shape of ids ", ids.str());
    Tensor m = ops::To(mask, token_embedding_->weight().device());
    key_mask =
        ops::Reshape(ops::Compare(ops::CompareOp::kEq, m, ops::ScalarLike(0, m)), {b, 1, 1, l});
  }
  Tensor x = token_embedding_->Forward(ids);
  Record(record, "token_embedding", x);
  Tensor shared_bias;
  if (pos_embedding_ != nullptr) {
    shared_bias = pos_embedding_->Forward(l, l);
    Record(record, "pos_embedding", shared_bias);
  }
  for (int64_t i = 0; i < blocks_->size(); ++i) {
    const std::string name = absl::StrCat("blocks.", i);
    x = blocks_->at<Block>(i)->Forward(x, key_mask, shared_bias, record, name);
    Record(record, name, x);
  }
  x = norm_->Forward(x);
  Record(record, "norm", x);
  return x;
}

std::vector<Tensor> TrimToTokens(const Tensor& hidden, const Tensor& mask) {
  SDPO_CHECK(hidden.dim() == 3 && mask.dim() == 2 && mask.size(0) == hidden.size(0) &&
                 mask.size(1) == hidden.size(1),
             "TrimToTokens: hidden ", hidden.str(), " must be [B, L, dim] for mask ", mask.str());
  std::vector<Tensor> out;
  const std::vector<double> m = mask.ToVector();
  const int64_t l = mask.size(1);
  for (int64_t i = 0; i < mask.size(0); ++i) {
    int64_t n = 0;
    for (int64_t j = 0; j < l; ++j) n += m[static_cast<size_t>(i * l + j)] > 0 ? 1 : 0;
    out.push_back(ops::Narrow(ops::Select(hidden, 0, i), 0, 0, n));
  }
  return out;
}

}  // namespace sdpo::umt5
