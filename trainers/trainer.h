// The preference trainer: Diffusion-DPO / DPO-C&M / SDPO fine-tuning of a DiffusionModel on
// winner/loser pairs, with LoRA (reference = the same weights with adapters off) or full
// fine-tuning (reference = a frozen copy), gradient accumulation, clipping, AdamW, NaN guards,
// metrics, evaluation and atomic, bit-exact resumable checkpoints, on the CPU (f32) or on a CUDA
// device (f32, or bf16 compute with f32 master weights).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/diffusion_model.h"
#include "models/schedules.h"
#include "nn/lr_schedule.h"
#include "nn/optim.h"
#include "sdpo/importance.h"
#include "sdpo/metrics.h"
#include "sdpo/objectives.h"
#include "trainers/data/loader.h"
#include "trainers/data/preference_dataset.h"
#include "trainers/data/sampler.h"
#include "trainers/distributed/communicator.h"
#include "trainers/distributed/zero.h"
#include "trainers/metrics_log.h"
#include "trainers/preference_step.h"

namespace sdpo::trainers {

// Named numbers from an evaluation (e.g. held-out reward, win rate against the base model).
struct EvalResult {
  std::vector<std::pair<std::string, double>> values;
  double Get(const std::string& name) const;  // NaN when absent
};

class Evaluator {
 public:
  virtual ~Evaluator() = default;
  virtual EvalResult Evaluate(models::DiffusionModel& policy) = 0;
  // The trainer's call: `step` is the optimizer step the policy is at (0: before training).
  // Evaluators that write files per evaluation (validation videos) override it.
  virtual EvalResult EvaluateAt(models::DiffusionModel& policy, int64_t step) {
    (void)step;
    return Evaluate(policy);
  }
};

struct TrainerConfig {
  ObjectiveConfig objective = ObjectiveConfig::Sdpo();
  TimestepSamplerConfig timesteps;
  PredictionType target = PredictionType::kV;  // what the model predicts (flow: v)
  int64_t steps = 100;
  int64_t batch = 4;       // pairs per micro-batch on each rank (global: batch * world_size)
  int64_t grad_accum = 1;  // micro-batches per optimizer step
  nn::LrSchedule lr;       // lr.base_lr is the peak learning rate
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;  // <= 0: no clipping
  uint64_t seed = 0;
  int64_t eval_every = 0;  // 0: evaluate only before and after
  int64_t save_every = 0;  // 0: save only at the end
  int64_t max_bad_steps = 5;  // consecutive NaN/Inf steps before stopping
  std::string out_dir;     // metrics.jsonl, checkpoint, report
  bool progress = true;    // progress bar on stderr
  std::string description;  // the run's configuration as JSON (summary.json)
  // Data parallelism (docs/distributed.md): the ranks' collectives, or null for one process.
  // Not owned; must outlive the Trainer. Every rank trains on its slice of each global batch;
  // gradients are summed over ranks, so the run equals one rank with batch * world_size pairs.
  // Only rank 0 writes metrics, checkpoints and reports and runs the evaluator.
  distributed::Communicator* comm = nullptr;
  // 0: every rank holds the whole AdamW state and the gradients are all-reduced. 1: ZeRO-1
  // (trainers/distributed/zero.h): master weights and moments sharded over the ranks, gradients
  // reduce-scattered, weights all-gathered. Checkpoints are the same either way.
  int zero_stage = 0;
  // Where the models, the optimizer state and the batches live (PlaceModels below). Data loading
  // stays on the CPU: every batch is copied to the device; losses and metrics come back as
  // doubles; checkpoints are written from CPU copies in the same format (a CUDA run resumes on
  // the CPU and vice versa). With a CUDA device, `comm` (if set) must be a communicator for
  // that device (NCCL, or LocalCommunicator(device)); ZeRO-1 needs the CPU.
  Device device = Device::CPU();
  // The forward/backward compute dtype: kF32, or kBF16 on CUDA (master weights and AdamW state
  // stay f32; a full fine-tuning reference is a frozen bf16 copy).
  DType compute_dtype = kF32;
  // Polled before every step (e.g. trainers/signals.h's StopRequested): when it returns true on
  // any rank, Run() writes the checkpoint and returns early with interrupted() set. Null: never.
  std::function<bool()> stop_requested;
  // The trainable parameters (by name) of the policies that generated pairs, keyed by
  // PreferencePair::generator (weight_source=generator; an empty id is the reference model).
  std::map<std::string, nn::TensorMap> generators;
};

// Puts the policy (master weights in their own dtype, usually f32; LoRA adapters included: attach
// them before) and the reference (full fine-tuning: cast to compute_dtype, frozen) on `device`
// and sets their compute dtype, as bench/cuda/wan_step.cc does. Idempotent: the Trainer calls it
// with its configuration; callers may call it earlier (e.g. to generate demo pairs on the GPU).
// Throws when the device has no kernels (a build without CUDA, or no GPU) or when bf16 is asked
// for on the CPU.
void PlaceModels(models::DiffusionModel& policy, models::DiffusionModel* reference, Device device,
                 DType compute_dtype);

// The device of a model's parameters (the first parameter's; the CPU for a model without any).
Device ModelDevice(const models::DiffusionModel& model);

// Per-step record (one line of metrics.jsonl).
struct StepRecord {
  int64_t step = 0;
  double lr = 0, grad_norm = 0, seconds = 0;
  bool skipped = false;  // NaN/Inf loss or gradient
  StepMetrics metrics;
};

class Trainer {
 public:
  // policy: the model being trained (its trainable parameters are those requiring grad, e.g.
  // LoRA adapters). reference: a frozen copy for full fine-tuning, or null to use the policy
  // with its LoRA adapters switched off.
  Trainer(TrainerConfig config, NoiseSchedule schedule, models::DiffusionModel& policy,
          models::DiffusionModel* reference, const data::PairDataset& data, Evaluator* evaluator);
  ~Trainer();

  // Restores the full training state from a checkpoint written by SaveCheckpoint (every rank
  // reads the same file). new_data: the pair source changed since the checkpoint (the demo's next
  // round: a larger buffer); the data order starts afresh on it instead of the saved cursor.
  void Resume(const std::string& path, bool new_data = false);
  // Trains until config.steps, evaluating and checkpointing as configured, and writes
  // summary.json and the report. Returns the final evaluation. A run that is already at
  // config.steps (a finished run resumed) changes nothing. When config.stop_requested fires,
  // writes the checkpoint at the step reached and returns without evaluating or reporting
  // (interrupted() is then true).
  EvalResult Run();
  bool interrupted() const { return interrupted_; }
  // One optimizer step (grad_accum micro-batches). Returns its record.
  StepRecord Step();
  // Writes the full training state atomically. Call it on every rank: with ZeRO-1 it gathers the
  // optimizer shards first (a collective); only rank 0 writes.
  void SaveCheckpoint(const std::string& path) const;

  int64_t step() const { return step_; }
  const std::vector<StepRecord>& history() const { return history_; }
  std::vector<std::pair<std::string, Tensor>> TrainableParameters() const;
  static std::string CheckpointPath(const std::string& out_dir);

 private:
  void AppendMetrics(const StepRecord& record);
  // Rank 0 with an out_dir: the evaluations of steps <= step_ that evals.jsonl already holds (a
  // resumed run's earlier ones), and the log that the next ones are appended to.
  std::vector<std::pair<int64_t, EvalResult>> OpenEvalLog();
  // Evaluates at step_ unless `evals` already ends with this step's evaluation; appends to
  // `evals` and evals.jsonl.
  void EvaluateOnce(Evaluator& evaluator, std::vector<std::pair<int64_t, EvalResult>>& evals);
  // Whether config.stop_requested fired on any rank (a collective with several ranks).
  bool StopAgreed();
  // Throws on every rank, naming the fields, when the ranks' configurations differ.
  void CheckRanksAgree();
  bool is_root() const { return comm_->is_root(); }
  void ZeroGrads();
  // Every rank waits (without the collective timeout) for rank 0 to finish its evaluation.
  void WaitForRoot();
  // The next micro-batch of this rank's pairs on the training device, noised.
  // The first counter of this rank's pairs in micro-batch `micro` of the current step.
  uint64_t DrawBase(int64_t micro) const;
  NoisedPairs LoadMicroBatch(int64_t micro);
  // The optimizer update after the micro-batches' backward passes (ReplicatedUpdate or ZeRO-1).
  // finite: every micro-batch's loss was finite. Returns whether the step was applied.
  bool Update(bool finite, StepRecord& record);
  // The all-reduce path (zero_stage 0): sums the gradients over ranks, decides NaN/Inf skips
  // together, clips and steps the replicated AdamW. Returns whether the step was applied.
  bool ReplicatedUpdate(bool finite, StepRecord& record);

  TrainerConfig config_;
  std::unique_ptr<distributed::Communicator> local_comm_;  // when config.comm is null
  distributed::Communicator* comm_;
  NoiseSchedule schedule_;
  TimestepSampler sampler_;
  models::DiffusionModel& policy_;
  models::DiffusionModel* reference_;
  const data::PairDataset& data_;
  // Deterministic epochs. data_order_ sits at the cursor after the last batch trained on (what
  // a checkpoint saves); the loader runs ahead of it on its own copy, in a background thread.
  data::PairSampler data_order_;
  std::unique_ptr<data::PrefetchingLoader> loader_;
  Evaluator* evaluator_;
  std::unique_ptr<nn::AdamW> optimizer_;          // zero_stage 0
  std::unique_ptr<distributed::ZeroAdamW> zero_;  // zero_stage 1
  std::vector<Tensor> params_;
  int64_t step_ = 0;
  int64_t bad_streak_ = 0, bad_total_ = 0;
  std::vector<StepRecord> history_;
  WeightProfile profile_;
  std::unique_ptr<MetricsLog> metrics_;   // rank 0 with an out_dir, opened at the first step
  std::unique_ptr<MetricsLog> eval_log_;  // evals.jsonl: rank 0 with an out_dir and an evaluator
  bool interrupted_ = false;
  TimestepWeightCurve curve_;  // weight_source timestep_curve
};

}  // namespace sdpo::trainers
