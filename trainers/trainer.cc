#include "trainers/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "models/json.h"
#include "nn/checkpoint_io.h"
#include "nn/lora.h"
#include "tensor/philox.h"
#include "trainers/preference_step.h"
#include "trainers/progress.h"
#include "trainers/report.h"

namespace sdpo::trainers {
namespace {

// Distinct counter-based streams (seed ^ salt) so that resumed runs redraw identical numbers.
constexpr uint64_t kTimestepSalt = 0x7153a1d2e4b6c8f0ull;
constexpr uint64_t kNoiseSalt = 0x2b992ddfa23249d6ull;
constexpr char kStateFormat[] = "sdpo-train-state-v1";

bool AllFinite(const std::vector<Tensor>& params) {
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    for (double v : g.ToVector()) {
      if (!std::isfinite(v)) return false;
    }
  }
  return true;
}

}  // namespace

double EvalResult::Get(const std::string& name) const {
  for (const auto& [k, v] : values) {
    if (k == name) return v;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

std::string Trainer::CheckpointPath(const std::string& out_dir) {
  return (std::filesystem::path(out_dir) / "checkpoint.safetensors").string();
}

Trainer::Trainer(TrainerConfig config, NoiseSchedule schedule, models::DiffusionModel& policy,
                 models::DiffusionModel* reference, const data::PairDataset& data,
                 Evaluator* evaluator)
    : config_(std::move(config)),
      schedule_(std::move(schedule)),
      sampler_(schedule_, config_.timesteps),
      policy_(policy),
      reference_(reference),
      data_(data),
      data_order_(data.size(), config_.batch, config_.seed),
      evaluator_(evaluator),
      profile_(10, schedule_.max_timestep()) {
  ValidateObjectiveConfig(config_.objective);
  config_.lr.Validate();
  SDPO_CHECK(config_.steps > 0 && config_.batch > 0 && config_.grad_accum > 0,
             "trainer: steps (", config_.steps, "), batch (", config_.batch, ") and grad_accum (",
             config_.grad_accum, ") must be positive");
  SDPO_CHECK(data_.size() > 0, "trainer: the pair source is empty");
  auto named = policy_.module().NamedTrainableParameters();
  SDPO_CHECK(!named.empty(),
             "trainer: the policy has no trainable parameters (attach LoRA or unfreeze them)");
  for (const auto& [name, p] : named) params_.push_back(p);
  nn::AdamWOptions opt;
  opt.lr = config_.lr.At(0);
  opt.weight_decay = config_.weight_decay;
  optimizer_ = std::make_unique<nn::AdamW>(named, opt);
  if (!config_.out_dir.empty()) std::filesystem::create_directories(config_.out_dir);
}

Trainer::~Trainer() {
  if (loader_) loader_->Stop();
}

std::vector<std::pair<std::string, Tensor>> Trainer::TrainableParameters() const {
  return policy_.module().NamedTrainableParameters();
}

StepRecord Trainer::Step() {
  auto t0 = std::chrono::steady_clock::now();
  StepRecord record;
  record.step = step_ + 1;
  record.lr = config_.lr.At(step_);
  optimizer_->set_lr(record.lr);
  optimizer_->ZeroGrad();

  PairBatch all_pairs;
  ObjectiveResult all_results;
  double loss_sum = 0;
  bool finite = true;
  const double micro_scale = 1.0 / static_cast<double>(config_.grad_accum);
  for (int64_t micro = 0; micro < config_.grad_accum; ++micro) {
    // Draws are a pure function of (seed, step, micro-batch): resume is bit-exact.
    const uint64_t draw_base =
        static_cast<uint64_t>((step_ * config_.grad_accum + micro) * config_.batch);
    if (!loader_) loader_ = std::make_unique<data::PrefetchingLoader>(data_, data_order_);
    data::PreferenceBatch loaded = loader_->Next();
    data_order_.set_cursor(loaded.cursor);
    PairTensors pairs;
    std::vector<TimePoint> tps;
    std::vector<Tensor> noise;
    for (size_t i = 0; i < loaded.pairs.size(); ++i) {
      const data::PreferencePair& p = loaded.pairs[i];
      pairs.winners.push_back(p.winner);
      pairs.losers.push_back(p.loser);
      pairs.contexts.push_back(p.context);
      pairs.weights.push_back(p.weight);
      tps.push_back(sampler_.Sample(PhiloxUniform(draw_base + i, config_.seed ^ kTimestepSalt)));
      noise.push_back(ops::RandomNormal(p.winner.shape(), config_.seed ^ kNoiseSalt,
                                        (draw_base + i) * static_cast<uint64_t>(p.winner.numel())));
    }
    NoisedPairs batch = NoisePairs(pairs, tps, noise, config_.target);

    std::vector<Tensor> policy_pred = policy_.ForwardList(batch.inputs, batch.timesteps, batch.contexts);
    Tensor policy_err = PerSampleMse(policy_pred, batch.targets);
    Tensor reference_err;
    {
      NoGradGuard no_grad;
      if (reference_ != nullptr) {
        reference_err = PerSampleMse(
            reference_->ForwardList(batch.inputs, batch.timesteps, batch.contexts), batch.targets);
      } else {
        nn::LoraDisabledScope adapters_off(policy_.module());
        reference_err = PerSampleMse(
            policy_.ForwardList(batch.inputs, batch.timesteps, batch.contexts), batch.targets);
      }
    }
    bool errors_finite = true;
    for (const Tensor* e : {&policy_err, &reference_err}) {
      for (double v : e->ToVector()) errors_finite = errors_finite && std::isfinite(v);
    }
    if (!errors_finite) {
      finite = false;
      break;
    }
    PreferenceLoss loss = ComputePreferenceLoss(config_.objective, tps, policy_err, reference_err);
    if (!std::isfinite(loss.result.loss)) {
      finite = false;
      break;
    }
    loss_sum += loss.result.loss * micro_scale;
    Backward(mul(loss.loss, micro_scale));
    // Accumulate what the metrics need across micro-batches.
    auto append = [](std::vector<double>& a, const std::vector<double>& b) {
      a.insert(a.end(), b.begin(), b.end());
    };
    all_pairs.timepoints.insert(all_pairs.timepoints.end(), tps.begin(), tps.end());
    append(all_pairs.policy_winner, loss.batch.policy_winner);
    append(all_pairs.policy_loser, loss.batch.policy_loser);
    append(all_pairs.reference_winner, loss.batch.reference_winner);
    append(all_pairs.reference_loser, loss.batch.reference_loser);
    all_results.pairs.insert(all_results.pairs.end(), loss.result.pairs.begin(),
                             loss.result.pairs.end());
    all_results.num_active += loss.result.num_active;
    all_results.num_weights_clipped += loss.result.num_weights_clipped;
    all_results.num_weights_to_clip += loss.result.num_weights_to_clip;
  }
  all_results.loss = loss_sum;

  if (finite) finite = AllFinite(params_);
  if (finite) {
    record.grad_norm = config_.max_grad_norm > 0 ? nn::ClipGradNorm(params_, config_.max_grad_norm)
                                                 : nn::GradNorm(params_);
    finite = std::isfinite(record.grad_norm);
  }
  if (finite) {
    optimizer_->Step();
    bad_streak_ = 0;
    record.metrics = ComputeStepMetrics(all_pairs, all_results,
                                        {10, schedule_.max_timestep()});
    for (size_t i = 0; i < all_pairs.timepoints.size(); ++i) {
      profile_.Add(all_pairs.timepoints[i].timestep, all_results.pairs[i].log_weight_winner,
                   all_results.pairs[i].log_weight_loser, all_results.pairs[i].active);
    }
  } else {
    record.skipped = true;
    ++bad_streak_;
    ++bad_total_;
    std::fprintf(stderr, "\nwarning: step %lld skipped: non-finite loss or gradient (%lld in a row)\n",
                 static_cast<long long>(record.step), static_cast<long long>(bad_streak_));
    SDPO_CHECK(bad_streak_ < config_.max_bad_steps, "training stopped: ", bad_streak_,
               " consecutive steps with a NaN/Inf loss or gradient (limit --max-bad-steps=",
               config_.max_bad_steps, "); lower --lr or check the data");
  }
  optimizer_->ZeroGrad();
  ++step_;
  record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  history_.push_back(record);
  AppendMetrics(record);
  return record;
}

void Trainer::AppendMetrics(const StepRecord& r) {
  if (config_.out_dir.empty()) return;
  std::ofstream f(std::filesystem::path(config_.out_dir) / "metrics.jsonl", std::ios::app);
  std::string m = r.skipped ? "{}" : MetricsToJson(r.metrics);
  f << absl::StrFormat("{\"step\": %d, \"lr\": %.9g, \"grad_norm\": %.9g, \"seconds\": %.6f, "
                       "\"skipped\": %s, \"metrics\": %s}\n",
                       r.step, r.lr, r.grad_norm, r.seconds, r.skipped ? "true" : "false", m);
}

void Trainer::SaveCheckpoint(const std::string& path) const {
  nn::TensorMap tensors;
  for (const auto& [name, p] : TrainableParameters()) tensors["param/" + name] = p;
  for (const auto& [key, t] : optimizer_->StateDict()) tensors["optim/" + key] = t;
  std::map<std::string, std::string> meta = {
      {"format", kStateFormat},
      {"step", absl::StrCat(step_)},
      {"data_cursor", json::Serialize(data_order_.SaveState())},
      {"bad_streak", absl::StrCat(bad_streak_)},
      {"bad_total", absl::StrCat(bad_total_)},
      {"seed", absl::StrCat(config_.seed)},
      {"dataset_size", absl::StrCat(data_.size())},
      {"config", config_.description},
  };
  nn::SaveSafetensors(path, tensors, meta);  // atomic: temporary file, fsync, rename
}

void Trainer::Resume(const std::string& path) {
  std::map<std::string, std::string> meta;
  nn::TensorMap tensors = nn::ReadSafetensors(path, &meta);
  auto get = [&](const std::string& key) {
    auto it = meta.find(key);
    SDPO_CHECK(it != meta.end(), "resume: ", path, " lacks metadata key '", key,
               "' (not a training-state checkpoint)");
    return it->second;
  };
  SDPO_CHECK(get("format") == kStateFormat, "resume: ", path, " has format '", get("format"),
             "', expected '", kStateFormat, "'");
  SDPO_CHECK(get("seed") == absl::StrCat(config_.seed), "resume: ", path, " was trained with seed ",
             get("seed"), " but this run has --seed=", config_.seed);
  SDPO_CHECK(get("dataset_size") == absl::StrCat(data_.size()), "resume: ", path, " was trained on ",
             get("dataset_size"), " pairs but the data has ", data_.size());
  nn::TensorMap params, optim;
  for (const auto& [key, t] : tensors) {
    if (key.rfind("param/", 0) == 0) params[key.substr(6)] = t;
    else if (key.rfind("optim/", 0) == 0) optim[key.substr(6)] = t;
  }
  auto named = TrainableParameters();
  for (const auto& [name, p] : named) {
    auto it = params.find(name);
    SDPO_CHECK(it != params.end(), "resume: ", path, " lacks trainable parameter '", name, "'");
    SDPO_CHECK(it->second.shape() == p.shape(), "resume: parameter '", name, "' is ",
               ShapeStr(it->second.shape()), " in ", path, " but ", ShapeStr(p.shape()),
               " in the model");
    ops::CopyInto(p, it->second);
  }
  SDPO_CHECK(params.size() == named.size(), "resume: ", path, " has ", params.size(),
             " trainable parameters, the model ", named.size());
  optimizer_->LoadStateDict(optim);
  step_ = std::stoll(get("step"));
  data_order_.RestoreState(json::Parse(get("data_cursor"), path + " metadata data_cursor"));
  loader_.reset();  // restart prefetching from the restored cursor
  bad_streak_ = std::stoll(get("bad_streak"));
  bad_total_ = std::stoll(get("bad_total"));
}

EvalResult Trainer::Run() {
  auto t0 = std::chrono::steady_clock::now();
  const int64_t first_step = step_;
  EvalResult before;
  if (evaluator_ != nullptr && step_ == 0) {
    before = evaluator_->Evaluate(policy_);
  }
  std::vector<std::pair<int64_t, EvalResult>> evals;
  if (!before.values.empty()) evals.push_back({0, before});
  ProgressBar bar("train", config_.steps, config_.progress);
  while (step_ < config_.steps) {
    StepRecord r = Step();
    bar.Update(step_, r.skipped ? std::string("skipped")
                                : absl::StrFormat("loss %.4f acc %.2f", r.metrics.loss,
                                                  r.metrics.reward_accuracy));
    if (config_.save_every > 0 && step_ % config_.save_every == 0 && step_ < config_.steps &&
        !config_.out_dir.empty()) {
      SaveCheckpoint(CheckpointPath(config_.out_dir));
    }
    if (evaluator_ != nullptr && config_.eval_every > 0 && step_ % config_.eval_every == 0 &&
        step_ < config_.steps) {
      evals.push_back({step_, evaluator_->Evaluate(policy_)});
    }
  }
  bar.Finish();
  EvalResult after;
  if (evaluator_ != nullptr) {
    after = evaluator_->Evaluate(policy_);
    evals.push_back({step_, after});
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!config_.out_dir.empty()) {
    SaveCheckpoint(CheckpointPath(config_.out_dir));
    // The adapters alone, PEFT-named, for //trainers:sample --lora and other tools.
    if (!nn::LoraLayers(policy_.module()).empty()) {
      nn::SaveLora(policy_.module(), (std::filesystem::path(config_.out_dir) / "adapters.safetensors").string());
    }
    RunSummary summary;
    summary.config_json = config_.description;
    summary.steps = step_;
    summary.steps_this_run = step_ - first_step;
    summary.skipped_steps = bad_total_;
    summary.wall_seconds = seconds;
    summary.evals = evals;
    summary.history = history_;
    summary.profile = profile_.Buckets();
    WriteRunOutputs(config_.out_dir, summary);
  }
  return after;
}

}  // namespace sdpo::trainers
