#include "trainers/distributed/zero.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace sdpo::distributed {
namespace {

int64_t TotalNumel(const nn::NamedTensors& params) {
  int64_t n = 0;
  for (const auto& [name, p] : params) n += p.numel();
  return n;
}

}  // namespace

ZeroAdamW::ZeroAdamW(nn::NamedTensors params, const nn::AdamWOptions& options, Communicator& comm)
    : params_(std::move(params)),
      options_(options),
      comm_(comm),
      layout_(TotalNumel(params_), comm.world_size()),
      steps_(params_.size(), 0) {
  SDPO_CHECK(!params_.empty(), "ZeRO-1: no parameters to optimise");
  const int64_t shard_begin = layout_.begin(comm_.rank());
  const int64_t shard_end = layout_.end(comm_.rank());
  int64_t offset = 0;
  for (size_t k = 0; k < params_.size(); ++k) {
    const auto& [name, p] = params_[k];
    SDPO_CHECK(p.defined() && p.device().is_cpu() && p.dtype() == kF32 && p.is_contiguous(),
               "ZeRO-1: parameter '", name, "' must be a contiguous CPU f32 tensor, found ",
               p.defined() ? absl::StrCat(DTypeName(p.dtype()), " on ", p.device().str())
                           : std::string("an undefined tensor"));
    offsets_.push_back(offset);
    const int64_t a = std::max(offset, shard_begin), b = std::min(offset + p.numel(), shard_end);
    if (a < b) {
      segments_.push_back(
          {k, a - offset, a - shard_begin, b - a, !options_.decays || options_.decays(name)});
    }
    offset += p.numel();
  }
  master_ = Tensor::Zeros({layout_.shard_size}, kF32);
  exp_avg_ = Tensor::Zeros({layout_.shard_size}, kF32);
  exp_avg_sq_ = Tensor::Zeros({layout_.shard_size}, kF32);
  RefreshMaster();
}

void ZeroAdamW::RefreshMaster() {
  float* master = master_.data<float>();
  for (const Segment& s : segments_) {
    std::memcpy(master + s.shard_begin, params_[s.param].second.data<float>() + s.param_begin,
                sizeof(float) * static_cast<size_t>(s.length));
  }
}

ZeroAdamW::StepResult ZeroAdamW::Step(double lr, double max_grad_norm) {
  NoGradGuard no_grad;
  // The gradients, packed into the padded flat layout, then reduce-scattered.
  Tensor flat = Tensor::Zeros({layout_.padded_numel}, kF32);
  float* f = flat.data<float>();
  for (size_t k = 0; k < params_.size(); ++k) {
    Tensor g = params_[k].second.grad();
    if (!g.defined()) continue;
    g = ops::Contiguous(ops::Cast(g, kF32));
    std::memcpy(f + offsets_[k], g.data<float>(), sizeof(float) * static_cast<size_t>(g.numel()));
  }
  Tensor grad = Tensor::Empty({layout_.shard_size}, kF32);
  comm_.ReduceScatterSum(flat, grad);
  flat = Tensor();

  // One all-reduce: whether any rank saw NaN/Inf, and the squared norm.
  const float* g = grad.data<float>();
  double bad = 0, sumsq = 0;
  for (int64_t i = 0; i < layout_.shard_size; ++i) {
    if (!std::isfinite(g[i])) bad = 1;
    sumsq += static_cast<double>(g[i]) * static_cast<double>(g[i]);
  }
  std::vector<double> reduced = {bad, sumsq};
  comm_.AllReduceSum(reduced);
  StepResult result;
  result.grad_norm = std::sqrt(reduced[1]);
  result.finite = reduced[0] == 0 && std::isfinite(result.grad_norm);
  if (!result.finite) return result;
  // nn::ClipGradNorm's rule and arithmetic, on the shard.
  if (max_grad_norm > 0 && result.grad_norm > max_grad_norm) {
    grad = ops::MulScalar(grad, max_grad_norm / (result.grad_norm + 1e-6));
    g = grad.data<float>();
  }

  ++step_;
  for (int64_t& s : steps_) ++s;
  float* master = master_.data<float>();
  float* m = exp_avg_.data<float>();
  float* v = exp_avg_sq_.data<float>();
  for (const Segment& s : segments_) {
    nn::AdamWUpdate(master + s.shard_begin, g + s.shard_begin, m + s.shard_begin, v + s.shard_begin,
                    s.length, options_, lr, steps_[s.param], s.decay);
  }

  // Every rank's updated shard into every rank's parameters.
  Tensor weights = AllGatherShards(comm_, master_, layout_.numel);
  const float* w = weights.data<float>();
  for (size_t k = 0; k < params_.size(); ++k) {
    Tensor& p = params_[k].second;
    std::memcpy(p.data<float>(), w + offsets_[k], sizeof(float) * static_cast<size_t>(p.numel()));
  }
  return result;
}

nn::TensorMap ZeroAdamW::GatherStateDict() {
  Tensor m = AllGatherShards(comm_, exp_avg_, layout_.numel);
  Tensor v = AllGatherShards(comm_, exp_avg_sq_, layout_.numel);
  nn::TensorMap out;
  out["step"] = Tensor::Scalar(static_cast<double>(step_), kI64);
  for (size_t k = 0; k < params_.size(); ++k) {
    const auto& [name, p] = params_[k];
    out[absl::StrCat(name, ".step")] = Tensor::Scalar(static_cast<double>(steps_[k]), kI64);
    if (steps_[k] == 0) continue;  // as nn::AdamW: no moments before the first update
    out[absl::StrCat(name, ".exp_avg")] =
        ops::Reshape(ops::Narrow(m, 0, offsets_[k], p.numel()), p.shape());
    out[absl::StrCat(name, ".exp_avg_sq")] =
        ops::Reshape(ops::Narrow(v, 0, offsets_[k], p.numel()), p.shape());
  }
  return out;
}

void ZeroAdamW::LoadStateDict(const nn::TensorMap& state) {
  // nn::AdamW validates (keys, shapes, strictness) and converts; this rank keeps its shard.
  nn::AdamW full(params_, options_);
  full.LoadStateDict(state);
  nn::TensorMap loaded = full.StateDict();
  step_ = full.step();
  exp_avg_ = Tensor::Zeros({layout_.shard_size}, kF32);
  exp_avg_sq_ = Tensor::Zeros({layout_.shard_size}, kF32);
  for (size_t k = 0; k < params_.size(); ++k) {
    steps_[k] = static_cast<int64_t>(
        std::llround(loaded.at(absl::StrCat(params_[k].first, ".step")).item()));
  }
  for (const Segment& s : segments_) {
    const std::string& name = params_[s.param].first;
    for (auto [slot, shard] : {std::pair<const char*, Tensor*>{"exp_avg", &exp_avg_},
                               std::pair<const char*, Tensor*>{"exp_avg_sq", &exp_avg_sq_}}) {
      auto it = loaded.find(absl::StrCat(name, ".", slot));
      if (it == loaded.end()) continue;  // no update yet: zeros
      Tensor t = ops::Contiguous(ops::Cast(it->second, kF32));
      std::memcpy(shard->data<float>() + s.shard_begin, t.data<float>() + s.param_begin,
                  sizeof(float) * static_cast<size_t>(s.length));
    }
  }
  RefreshMaster();
}

}  // namespace sdpo::distributed
