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
#include "io/json.h"
#include "models/checkpoint_util.h"
#include "nn/checkpoint_io.h"
#include "nn/lora.h"
#include "tensor/kernels.h"
#include "tensor/philox.h"
#include "trainers/config_check.h"
#include "trainers/progress.h"
#include "trainers/report.h"
#include "trainers/weight_inputs.h"

namespace sdpo::trainers {
namespace {

// Distinct counter-based streams (seed ^ salt) so that resumed runs redraw identical numbers.
constexpr uint64_t kTimestepSalt = 0x7153a1d2e4b6c8f0ull;
constexpr uint64_t kNoiseSalt = 0x2b992ddfa23249d6ull;
constexpr uint64_t kPrevNoiseSalt = 0x5c1e0f3a9d27b481ull;  // weight_source sampled: x_prev's z
constexpr uint64_t kCurveSalt = 0x93d4a7e2c05b16f8ull;      // timestep_curve's measurement
constexpr char kStateFormat[] = "sdpo-train-state-v1";

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// A batch tensor on the training device (data loading stays on the CPU).
Tensor OnDevice(const Tensor& t, Device device) {
  return t.device() == device ? t : ops::To(t, device);
}

}  // namespace

Device ModelDevice(const models::DiffusionModel& model) {
  const auto params = model.module().NamedParameters();
  return params.empty() ? Device::CPU() : params.front().second.device();
}

void PlaceModels(models::DiffusionModel& policy, models::DiffusionModel* reference, Device device,
                 DType compute_dtype) {
  SDPO_CHECK(compute_dtype == kF32 || compute_dtype == kBF16,
             "trainer: compute dtype must be f32 or bf16, found ", DTypeName(compute_dtype));
  SDPO_CHECK(compute_dtype == kF32 || !device.is_cpu(), "trainer: bf16 compute needs a CUDA "
             "device (the CPU path is f32), found device ", device.str());
  if (!device.is_cpu()) KernelsFor(device);  // a clear error when there is no backend / GPU
  policy.module().ToDevice(device);  // master weights keep their dtype (f32)
  policy.module().SetComputeDType(compute_dtype);
  if (reference != nullptr) {
    // The frozen reference holds its weights in the compute dtype: cast first (on the CPU, if it
    // is there) so that only the compute-dtype copy crosses to the device.
    reference->module().CastParameters(compute_dtype);
    reference->module().ToDevice(device);
    reference->module().SetComputeDType(compute_dtype);
    reference->module().SetRequiresGrad(false);
  }
}

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
      local_comm_(config_.comm != nullptr
                      ? nullptr
                      : std::make_unique<distributed::LocalCommunicator>(config_.device)),
      comm_(config_.comm != nullptr ? config_.comm : local_comm_.get()),
      schedule_(std::move(schedule)),
      sampler_(schedule_, config_.timesteps),
      policy_(policy),
      reference_(reference),
      data_(data),
      // The sampler shards every global batch: this rank takes pairs
      // [rank * batch, (rank + 1) * batch) of it.
      data_order_(data.size(), std::max<int64_t>(1, config_.batch) * comm_->world_size(),
                  config_.seed, comm_->rank(), comm_->world_size()),
      evaluator_(evaluator),
      profile_(10, schedule_.max_timestep()) {
  CheckTrainerConfig(config_);
  SDPO_CHECK(data_.size() > 0, "trainer: the pair source is empty");
  SDPO_CHECK(config_.device.is_cpu() || config_.zero_stage == 0,
             "trainer: ZeRO-1 (zero_stage 1) keeps its shards on the CPU and needs device cpu, "
             "found device ", config_.device.str(), " (use zero_stage 0 on CUDA)");
  // The gradients' collectives run on the training device: a GPU's need NCCL.
  SDPO_CHECK(config_.device.is_cpu() || comm_->world_size() == 1 || comm_->name() == "nccl",
             "trainer: device ", config_.device.str(), " with ", comm_->world_size(),
             " ranks needs the nccl communicator, found ", comm_->name(),
             " (distributed::MakeCommunicatorFor(device))");
  PlaceModels(policy_, reference_, config_.device, config_.compute_dtype);
  if (config_.objective.weight_source == WeightSource::kTimestepCurve) {
    // Deterministic (the reference's errors on fixed noise): a resumed run measures the same.
    curve_ = MeasureTimestepCurve(policy_, reference_, schedule_, data_, config_.objective,
                                  config_.target, /*num_buckets=*/10, /*num_pairs=*/16,
                                  config_.seed ^ kCurveSalt);
  }
  auto named = policy_.module().NamedTrainableParameters();
  SDPO_CHECK(!named.empty(),
             "trainer: the policy has no trainable parameters (attach LoRA or unfreeze them)");
  for (const auto& [name, p] : named) params_.push_back(p);
  nn::AdamWOptions opt;
  opt.lr = config_.lr.At(0);
  opt.weight_decay = config_.weight_decay;
  if (!config_.out_dir.empty() && is_root()) std::filesystem::create_directories(config_.out_dir);
  if (comm_->world_size() > 1) {
    CheckRanksAgree();
    // Identical starting weights on every rank, whatever each rank's initialisation did.
    comm_->Broadcast(params_, 0);
  }
  if (config_.zero_stage == 1) {
    zero_ = std::make_unique<distributed::ZeroAdamW>(named, opt, *comm_);
  } else {
    optimizer_ = std::make_unique<nn::AdamW>(named, opt);
  }
}

void Trainer::CheckRanksAgree() {
  int64_t trainable = 0;
  for (const Tensor& p : params_) trainable += p.numel();
  const std::vector<std::pair<std::string, uint64_t>> fields = {
      {"description", Fnv1a(config_.description)},
      {"objective", Fnv1a(DescribeObjectiveConfig(config_.objective))},
      {"dataset_size", static_cast<uint64_t>(data_.size())},
      {"batch", static_cast<uint64_t>(config_.batch)},
      {"grad_accum", static_cast<uint64_t>(config_.grad_accum)},
      {"steps", static_cast<uint64_t>(config_.steps)},
      {"seed", config_.seed},
      {"max_grad_norm", Fnv1a(absl::StrCat(config_.max_grad_norm))},
      {"lr", Fnv1a(absl::StrCat(config_.lr.base_lr, "/", config_.lr.At(config_.steps / 2)))},
      {"trainable_parameters", static_cast<uint64_t>(trainable)},
      {"trainable_tensors", params_.size()},
      {"zero_stage", static_cast<uint64_t>(config_.zero_stage)},
      {"device_type", static_cast<uint64_t>(config_.device.type)},
      {"compute_dtype", static_cast<uint64_t>(config_.compute_dtype)},
  };
  std::vector<uint64_t> root(fields.size());
  for (size_t i = 0; i < fields.size(); ++i) root[i] = fields[i].second;
  comm_->Broadcast(root, 0);
  // Per field, the number of ranks that disagree with rank 0: every rank learns the verdict, so
  // all of them stop together instead of leaving some waiting in the next collective.
  std::vector<double> mismatches(fields.size(), 0.0);
  for (size_t i = 0; i < fields.size(); ++i) mismatches[i] = root[i] != fields[i].second;
  comm_->AllReduceSum(mismatches);
  std::string bad;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (mismatches[i] == 0) continue;
    absl::StrAppend(&bad, bad.empty() ? "" : ", ", fields[i].first, " (", mismatches[i],
                    " rank(s) differ from rank 0");
    if (root[i] != fields[i].second) {
      absl::StrAppend(&bad, "; rank ", comm_->rank(), " has ", fields[i].second, ", rank 0 ",
                      root[i]);
    }
    absl::StrAppend(&bad, ")");
  }
  SDPO_CHECK(bad.empty(), "trainer (rank ", comm_->rank(), " of ", comm_->world_size(),
             "): the ranks' configurations differ: ", bad);
}

Trainer::~Trainer() {
  if (loader_) loader_->Stop();
}

void Trainer::WaitForRoot() {
  if (comm_->world_size() == 1) return;
  // Rank 0 may have evaluated for longer than the collective timeout: wait without it.
  const distributed::CommOptions saved = comm_->options();
  distributed::CommOptions patient = saved;
  patient.timeout_s = 0;
  comm_->set_options(patient);
  comm_->Barrier();
  comm_->set_options(saved);
}

void Trainer::ZeroGrads() {
  for (Tensor& p : params_) p.zero_grad();
}

std::vector<std::pair<std::string, Tensor>> Trainer::TrainableParameters() const {
  return policy_.module().NamedTrainableParameters();
}

uint64_t Trainer::DrawBase(int64_t micro) const {
  const int64_t global_batch = config_.batch * comm_->world_size();
  return static_cast<uint64_t>((step_ * config_.grad_accum + micro) * global_batch +
                               comm_->rank() * config_.batch);
}

NoisedPairs Trainer::LoadMicroBatch(int64_t micro) {
  // Draws are a pure function of (seed, step, micro-batch, GLOBAL pair index): resume is
  // bit-exact, and N ranks x b pairs draw exactly what 1 rank x N*b pairs draws.
  const uint64_t draw_base = DrawBase(micro);
  if (!loader_) loader_ = std::make_unique<data::PrefetchingLoader>(data_, data_order_);
  data::PreferenceBatch loaded = loader_->Next();
  data_order_.set_cursor(loaded.cursor);
  PairTensors pairs;
  std::vector<TimePoint> tps;
  std::vector<Tensor> noise;
  const Device device = config_.device;
  for (size_t i = 0; i < loaded.pairs.size(); ++i) {
    const data::PreferencePair& p = loaded.pairs[i];
    pairs.winners.push_back(OnDevice(p.winner, device));
    pairs.losers.push_back(OnDevice(p.loser, device));
    pairs.contexts.push_back(OnDevice(p.context, device));
    pairs.weights.push_back(p.weight);
    pairs.generators.push_back(p.generator);
    tps.push_back(sampler_.Sample(PhiloxUniform(draw_base + i, config_.seed ^ kTimestepSalt)));
    // Drawn on the device: Philox gives the same stream on every device.
    noise.push_back(ops::RandomNormal(p.winner.shape(), config_.seed ^ kNoiseSalt,
                                      (draw_base + i) * static_cast<uint64_t>(p.winner.numel()),
                                      kF32, device));
  }
  return NoisePairs(pairs, tps, noise, config_.target);
}

StepRecord Trainer::Step() {
  auto t0 = std::chrono::steady_clock::now();
  StepRecord record;
  record.step = step_ + 1;
  record.lr = config_.lr.At(step_);
  ZeroGrads();

  PairBatch all_pairs;  // the whole global batch (all ranks, all micro-batches), for metrics
  ObjectiveResult all_results;
  double loss_sum = 0;
  bool finite = true;
  const double micro_scale = 1.0 / static_cast<double>(config_.grad_accum);
  for (int64_t micro = 0; micro < config_.grad_accum; ++micro) {
    const NoisedPairs batch = LoadMicroBatch(micro);
    const WeightSource source = config_.objective.weight_source;
    std::vector<double> generator_errors;
    if (source == WeightSource::kGenerator) {
      // Before the policy's forward with gradient: it swaps the policy's trainable parameters.
      generator_errors = GeneratorErrors(policy_, batch.inputs, batch.timesteps, batch.contexts,
                                         batch.targets, batch.generators, config_.generators);
    }
    PairErrors errors = ComputePairErrors(policy_, reference_, batch);
    if (source == WeightSource::kSampled) {
      errors.noise_dot = NoiseProjections(errors.policy_predictions, batch.targets,
                                          config_.seed ^ kPrevNoiseSalt, DrawBase(micro));
    } else if (source == WeightSource::kGenerator) {
      const std::vector<double> ref = errors.reference.ToVector();
      for (size_t k = 0; k < ref.size(); ++k) {
        if (std::isnan(generator_errors[k])) generator_errors[k] = ref[k];  // the reference's
      }
      errors.generator = std::move(generator_errors);
    }
    // Every rank evaluates the objective on the whole global micro-batch and backpropagates its
    // gradient for its own pairs, so the SUM of the ranks' parameter gradients is the
    // single-rank gradient of the global batch.
    GlobalPairs global = GatherPairs(batch, errors, *comm_);
    if (source == WeightSource::kTimestepCurve) {
      for (const TimePoint& tp : global.batch.timepoints) {
        global.batch.log_weight_winner.push_back(curve_.LogWeight(tp));
        global.batch.log_weight_loser.push_back(curve_.LogWeight(tp));
      }
    }
    const int64_t offset = comm_->rank() * static_cast<int64_t>(batch.timepoints.size());
    const PreferenceLoss loss =
        ComputePreferenceLoss(config_.objective, global, offset, errors.policy);
    if (!loss.finite) {
      finite = false;
      break;
    }
    loss_sum += loss.result.loss * micro_scale;
    Backward(mul(loss.loss, micro_scale));
    // Accumulate what the metrics need across micro-batches.
    auto append = [](std::vector<double>& a, const std::vector<double>& v) {
      a.insert(a.end(), v.begin(), v.end());
    };
    append(all_pairs.policy_winner, global.batch.policy_winner);
    append(all_pairs.policy_loser, global.batch.policy_loser);
    append(all_pairs.reference_winner, global.batch.reference_winner);
    append(all_pairs.reference_loser, global.batch.reference_loser);
    all_pairs.timepoints.insert(all_pairs.timepoints.end(), global.batch.timepoints.begin(),
                                global.batch.timepoints.end());
    const ObjectiveResult& result = loss.result;
    all_results.pairs.insert(all_results.pairs.end(), result.pairs.begin(), result.pairs.end());
    all_results.num_active += result.num_active;
    all_results.num_weights_clipped += result.num_weights_clipped;
    all_results.num_weights_to_clip += result.num_weights_to_clip;
  }
  all_results.loss = loss_sum;

  finite = Update(finite, record);
  if (finite) {
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
    if (is_root()) {
      std::fprintf(stderr,
                   "\nwarning: step %lld skipped: non-finite loss or gradient (%lld in a row)\n",
                   static_cast<long long>(record.step), static_cast<long long>(bad_streak_));
    }
    SDPO_CHECK(bad_streak_ < config_.max_bad_steps, "training stopped: ", bad_streak_,
               " consecutive steps with a NaN/Inf loss or gradient (limit --max_bad_steps=",
               config_.max_bad_steps, "); lower --lr or check the data");
  }
  ZeroGrads();
  ++step_;
  record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  history_.push_back(record);
  AppendMetrics(record);
  return record;
}

bool Trainer::Update(bool finite, StepRecord& record) {
  if (zero_ == nullptr) return ReplicatedUpdate(finite, record);
  // ZeRO-1: reduce-scatter, the collective NaN/Inf decision, global-norm clipping, the shard's
  // AdamW update and the all-gather of the weights (trainers/distributed/zero.h). A non-finite
  // loss was decided on gathered values, so every rank skips this together.
  if (!finite) return false;
  const distributed::ZeroAdamW::StepResult z = zero_->Step(record.lr, config_.max_grad_norm);
  record.grad_norm = z.grad_norm;
  return z.finite;
}

bool Trainer::ReplicatedUpdate(bool finite, StepRecord& record) {
  const int64_t world = comm_->world_size();
  if (finite && world > 1) {
    // Sum the trainable parameters' gradients over ranks (see above: no division by world), in
    // buckets of CommOptions::bucket_bytes.
    std::vector<Tensor> grads;
    grads.reserve(params_.size());
    for (Tensor& p : params_) {
      Tensor g = p.grad();
      if (!g.defined()) g = Tensor::Zeros(p.shape(), p.dtype(), p.device());
      grads.push_back(g);
    }
    comm_->AllReduceSum(grads);
    for (size_t i = 0; i < params_.size(); ++i) params_[i].set_grad(grads[i]);
  }
  // The norm is accumulated in f64, where the squares of finite f32/bf16 values cannot overflow:
  // it is finite exactly when every gradient element is. One reduction per device instead of
  // copying the gradients to the host.
  const double norm = finite ? nn::GradNorm(params_) : 0.0;
  if (finite) finite = std::isfinite(norm);
  if (world > 1) {
    // Collective, so that no rank updates while another skips.
    std::vector<double> bad = {finite ? 0.0 : 1.0};
    comm_->AllReduceSum(bad);
    finite = bad[0] == 0.0;
  }
  if (finite) {
    // nn::ClipGradNorm's clipping, with the norm computed above.
    record.grad_norm = norm;
    if (config_.max_grad_norm > 0 && norm > config_.max_grad_norm) {
      nn::ScaleGrads(params_, config_.max_grad_norm / (norm + 1e-6));
    }
  }
  if (finite) {
    optimizer_->set_lr(record.lr);
    optimizer_->Step();
  }
  return finite;
}

void Trainer::AppendMetrics(const StepRecord& r) {
  if (config_.out_dir.empty() || !is_root()) return;
  if (metrics_ == nullptr) {
    // Lines of steps after the training state (a resumed run redoes them) are dropped.
    metrics_ = std::make_unique<MetricsLog>(
        (std::filesystem::path(config_.out_dir) / "metrics.jsonl").string(), r.step - 1);
  }
  std::string m = r.skipped ? "{}" : MetricsToJson(r.metrics);
  metrics_->Append(absl::StrFormat(
      "{\"step\": %d, \"lr\": %.9g, \"grad_norm\": %.9g, \"seconds\": %.6f, \"skipped\": %s, "
      "\"metrics\": %s}",
      r.step, r.lr, r.grad_norm, r.seconds, r.skipped ? "true" : "false", m));
}

bool Trainer::StopAgreed() {
  bool stop = config_.stop_requested && config_.stop_requested();
  if (comm_->world_size() > 1) {
    std::vector<double> votes = {stop ? 1.0 : 0.0};
    comm_->AllReduceSum(votes);
    stop = votes[0] > 0;
  }
  return stop;
}

void Trainer::SaveCheckpoint(const std::string& path) const {
  // ZeRO-1: every rank takes part in gathering the optimizer shards; rank 0 writes the same
  // complete file as an unsharded run (so either can resume the other, with any world size).
  const nn::TensorMap optim = zero_ != nullptr ? zero_->GatherStateDict() : optimizer_->StateDict();
  if (!is_root()) return;
  nn::TensorMap tensors;
  for (const auto& [name, p] : TrainableParameters()) tensors["param/" + name] = p;
  for (const auto& [key, t] : optim) tensors["optim/" + key] = t;
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

void Trainer::Resume(const std::string& path, bool new_data) {
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
  SDPO_CHECK(new_data || get("dataset_size") == absl::StrCat(data_.size()), "resume: ", path,
             " was trained on ", get("dataset_size"), " pairs but the data has ", data_.size());
  // A NaN/Inf weight or moment would make every step non-finite (and the run skip them all).
  for (const auto& [key, t] : tensors) {
    const auto [index, value] = ckpt::FirstNonFinite(t);
    SDPO_CHECK(index < 0, "resume: ", path, ": tensor \"", key, "\" ", ShapeStr(t.shape()),
               " has a non-finite value (", value, ") at flat index ", index,
               "; the checkpoint is corrupt (resume from an earlier copy)");
  }
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
  if (zero_ != nullptr) {
    zero_->LoadStateDict(optim);  // this rank's shard; the master shard from the restored params
  } else {
    optimizer_->LoadStateDict(optim);
  }
  step_ = std::stoll(get("step"));
  if (!new_data) {
    data_order_.RestoreState(json::Parse(get("data_cursor"), path + " metadata data_cursor"));
  }
  loader_.reset();  // restart prefetching from the restored cursor
  bad_streak_ = std::stoll(get("bad_streak"));
  bad_total_ = std::stoll(get("bad_total"));
}

std::vector<std::pair<int64_t, EvalResult>> Trainer::OpenEvalLog() {
  std::vector<std::pair<int64_t, EvalResult>> evals;
  if (config_.out_dir.empty()) return evals;
  const std::string path = (std::filesystem::path(config_.out_dir) / "evals.jsonl").string();
  // Lines of steps after the training state (a resumed run redoes them) are dropped.
  eval_log_ = std::make_unique<MetricsLog>(path, step_);
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const json::Value v = json::Parse(line, path);
    EvalResult e;
    for (const auto& [name, value] : v.at("values").as_object()) {
      e.values.push_back(
          {name, value.is_null() ? std::numeric_limits<double>::quiet_NaN() : value.as_double()});
    }
    evals.push_back({v.at("step").as_int(), e});
  }
  return evals;
}

void Trainer::EvaluateOnce(Evaluator& evaluator,
                           std::vector<std::pair<int64_t, EvalResult>>& evals) {
  if (!evals.empty() && evals.back().first == step_) return;  // done before a resume
  EvalResult e = evaluator.EvaluateAt(policy_, step_);
  if (eval_log_ != nullptr) {
    std::string values;
    for (const auto& [name, v] : e.values) {
      absl::StrAppend(&values, values.empty() ? "" : ", ", json::Quote(name), ": ",
                      std::isfinite(v) ? absl::StrFormat("%.9g", v) : std::string("null"));
    }
    eval_log_->Append(absl::StrCat("{\"step\": ", step_, ", \"values\": {", values, "}}"));
  }
  evals.push_back({step_, std::move(e)});
}

EvalResult Trainer::Run() {
  auto t0 = std::chrono::steady_clock::now();
  const int64_t first_step = step_;
  interrupted_ = false;
  // A finished run (resumed at or past its last step) keeps its checkpoint and reports.
  if (step_ >= config_.steps) return {};
  // Evaluation and outputs are rank 0's (the ranks hold identical weights).
  Evaluator* evaluator = is_root() ? evaluator_ : nullptr;
  // Every evaluation of the run, a resumed run's earlier ones included (evals.jsonl).
  std::vector<std::pair<int64_t, EvalResult>> evals;
  if (evaluator != nullptr) evals = OpenEvalLog();
  const auto due = [&] { return config_.eval_every > 0 && step_ % config_.eval_every == 0; };
  // Before training, and at a resumed run's evaluation point that a kill left unevaluated.
  if (evaluator != nullptr && (step_ == 0 || due())) EvaluateOnce(*evaluator, evals);
  WaitForRoot();
  ProgressBar bar("train", config_.steps, config_.progress && is_root());
  while (step_ < config_.steps) {
    if (StopAgreed()) {
      interrupted_ = true;
      break;
    }
    StepRecord r = Step();
    bar.Update(step_, r.skipped ? std::string("skipped")
                                : absl::StrFormat("loss %.4f acc %.2f", r.metrics.loss,
                                                  r.metrics.reward_accuracy));
    if (config_.save_every > 0 && step_ % config_.save_every == 0 && step_ < config_.steps &&
        !config_.out_dir.empty()) {
      SaveCheckpoint(CheckpointPath(config_.out_dir));
    }
    if (due() && step_ < config_.steps) {
      if (evaluator != nullptr) EvaluateOnce(*evaluator, evals);
      WaitForRoot();
    }
  }
  bar.Finish();
  if (interrupted_) {
    // Checkpoint at the step reached; the evaluation and the report are for finished runs.
    if (!config_.out_dir.empty()) SaveCheckpoint(CheckpointPath(config_.out_dir));  // collective
    return {};
  }
  EvalResult after;
  if (evaluator != nullptr) {
    EvaluateOnce(*evaluator, evals);
    after = evals.back().second;
  }
  WaitForRoot();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!config_.out_dir.empty()) SaveCheckpoint(CheckpointPath(config_.out_dir));  // collective
  if (!config_.out_dir.empty() && is_root()) {
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
