// A small data-parallel training job for dp_test.sh: the tiny Wan2.1-architecture model of
// trainer_test with LoRA on synthetic pairs, trained by the Trainer on however many ranks
// mpirun starts (one process without mpirun). Also compares the trainable parameters of two
// checkpoints (--compare).
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "models/wan21/model.h"
#include "nn/checkpoint_io.h"
#include "nn/init.h"
#include "nn/lora.h"
#include "tests/trainers/tiny_wan.h"
#include "trainers/distributed/mpi_communicator.h"
#include "trainers/trainer.h"

ABSL_FLAG(std::string, out, "", "output directory (checkpoint, metrics)");
ABSL_FLAG(int64_t, steps, 4, "optimizer steps");
ABSL_FLAG(int64_t, batch, 2, "pairs per rank per micro-batch");
ABSL_FLAG(int64_t, grad_accum, 1, "micro-batches per step");
ABSL_FLAG(std::string, objective, "sdpo", "sdpo | diffusion_dpo | dpo_cm");
ABSL_FLAG(bool, resume, false, "resume from <out>/checkpoint.safetensors");
ABSL_FLAG(int, die_rank, -1, "this rank exits abruptly (no MPI_Finalize) after --die_step");
ABSL_FLAG(int64_t, die_step, 1, "see --die_rank");
ABSL_FLAG(std::string, die_how, "exit3",
          "exit3 | exit0 (_Exit with that status) | kill (SIGKILL, as the OOM killer)");
ABSL_FLAG(int, hang_rank, -1, "this rank sleeps (alive, in no collective) after --hang_step");
ABSL_FLAG(int64_t, hang_step, 1, "see --hang_rank");
ABSL_FLAG(int, zero, 0, "0: replicated AdamW; 1: ZeRO-1");
ABSL_FLAG(double, collective_timeout_s, 600, "collective timeout (seconds)");
ABSL_FLAG(double, bucket_mb, 25, "all-reduce bucket size in MiB");
ABSL_FLAG(int, stop_rank, -1,
          "this rank alone asks to stop (as a SIGTERM that reached one process) before step "
          "--stop_step + 1");
ABSL_FLAG(int64_t, stop_step, 1, "see --stop_rank");
ABSL_FLAG(int, mismatch_rank, -1, "this rank uses batch + 1 (a configuration mismatch)");
ABSL_FLAG(bool, compare, false, "compare the trainable parameters of the two checkpoints given");
ABSL_FLAG(double, tolerance, 1e-5, "--compare: max |a - b| / max(1e-3, max |a|)");
ABSL_FLAG(bool, optimizer, false, "--compare the optimizer state (optim/*) instead of param/*");

namespace sdpo {
namespace {

using trainers::testing::SyntheticPairs;
wan21::WanConfig TinyConfig() { return trainers::testing::TinyWanConfig(); }



int Compare(const std::string& a_path, const std::string& b_path) {
  nn::TensorMap a = nn::ReadSafetensors(a_path), b = nn::ReadSafetensors(b_path);
  double max_diff = 0, max_abs = 0;
  int64_t compared = 0;
  const std::string prefix = absl::GetFlag(FLAGS_optimizer) ? "optim/" : "param/";
  double worst_rel = 0;
  for (const auto& [key, ta] : a) {
    if (key.rfind(prefix, 0) != 0) continue;
    auto it = b.find(key);
    SDPO_CHECK(it != b.end(), b_path, " lacks ", key);
    std::vector<double> va = ta.ToVector(), vb = it->second.ToVector();
    SDPO_CHECK(va.size() == vb.size(), key, ": sizes differ");
    double diff_t = 0, abs_t = 0;
    for (size_t i = 0; i < va.size(); ++i) {
      diff_t = std::max(diff_t, std::abs(va[i] - vb[i]));
      abs_t = std::max(abs_t, std::abs(va[i]));
    }
    max_diff = std::max(max_diff, diff_t);
    max_abs = std::max(max_abs, abs_t);
    // The optimizer state per tensor (moments differ in scale by orders of magnitude).
    if (prefix == "optim/") worst_rel = std::max(worst_rel, diff_t / std::max(1e-30, abs_t));
    ++compared;
  }
  SDPO_CHECK(compared > 0, a_path, " has no ", prefix, " tensors");
  int64_t in_b = 0;
  for (const auto& [key, tb] : b) in_b += key.rfind(prefix, 0) == 0;
  SDPO_CHECK(in_b == compared, b_path, " has ", in_b, " ", prefix, " tensors, ", a_path, " ",
             compared);
  const double rel = prefix == "optim/" ? worst_rel : max_diff / std::max(1e-3, max_abs);
  const double tol = absl::GetFlag(FLAGS_tolerance);
  std::printf(
      "compare: %lld %s tensors, max |diff| %.3g, max |value| %.3g, relative %.3g (tolerance "
      "%.3g)\n",
      static_cast<long long>(compared), prefix.c_str(), max_diff, max_abs, rel, tol);
  return rel <= tol ? 0 : 2;
}

int Train(distributed::Communicator& comm) {
  nn::SetInitSeed(5);
  wan21::WanModel model(TinyConfig());
  nn::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 4;
  lora.targets = {"blocks.*.self_attn.{q,k,v,o}", "blocks.*.ffn.{0,2}"};
  nn::AttachLora(model, lora);
  SyntheticPairs data(5);  // odd: batches straddle epochs

  trainers::TrainerConfig c;
  c.steps = absl::GetFlag(FLAGS_steps);
  c.batch = absl::GetFlag(FLAGS_batch);
  if (comm.rank() == absl::GetFlag(FLAGS_mismatch_rank)) ++c.batch;
  c.grad_accum = absl::GetFlag(FLAGS_grad_accum);
  c.lr.base_lr = 1e-3;
  c.seed = 11;
  c.out_dir = absl::GetFlag(FLAGS_out);
  c.progress = false;
  const std::string objective = absl::GetFlag(FLAGS_objective);
  c.objective = objective == "diffusion_dpo" ? ObjectiveConfig::DiffusionDpo()
                : objective == "dpo_cm"      ? ObjectiveConfig::DpoCm()
                                             : ObjectiveConfig::Sdpo();
  c.objective.beta = 50;
  c.description = "dp_train";
  c.comm = &comm;
  c.zero_stage = absl::GetFlag(FLAGS_zero);
  int64_t polls = 0;  // the trainer polls once before each step
  if (comm.rank() == absl::GetFlag(FLAGS_stop_rank)) {
    c.stop_requested = [&polls] { return polls++ >= absl::GetFlag(FLAGS_stop_step); };
  }
  trainers::Trainer t(c, NoiseSchedule::Flow(FlowScheduleConfig::Wan21()), model, nullptr, data,
                      nullptr);
  if (absl::GetFlag(FLAGS_resume)) t.Resume(trainers::Trainer::CheckpointPath(c.out_dir));
  if (absl::GetFlag(FLAGS_die_rank) >= 0 || absl::GetFlag(FLAGS_hang_rank) >= 0) {
    while (t.step() < c.steps) {
      t.Step();
      if (comm.rank() == absl::GetFlag(FLAGS_hang_rank) &&
          t.step() == absl::GetFlag(FLAGS_hang_step)) {
        std::fprintf(stderr, "dp_train: rank %d hangs (sleeps) after step %lld\n", comm.rank(),
                     static_cast<long long>(t.step()));
        std::this_thread::sleep_for(std::chrono::hours(1));
      }
      if (comm.rank() == absl::GetFlag(FLAGS_die_rank) &&
          t.step() == absl::GetFlag(FLAGS_die_step)) {
        const std::string how = absl::GetFlag(FLAGS_die_how);
        std::fprintf(stderr, "dp_train: rank %d dies (%s) after step %lld\n", comm.rank(),
                     how.c_str(), static_cast<long long>(t.step()));
        // No MPI_Finalize, no destructors: a crashed rank.
        if (how == "kill") std::raise(SIGKILL);
        std::_Exit(how == "exit0" ? 0 : 3);
      }
    }
    return 0;
  }
  t.Run();
  if (t.interrupted()) {
    std::printf("dp_train: rank %d interrupted at step %lld\n", comm.rank(),
                static_cast<long long>(t.step()));
    return 0;
  }
  if (comm.is_root()) {
    const trainers::StepRecord& r = t.history().back();
    std::printf("dp_train: %d rank(s), step %lld, loss %.6f, grad_norm %.6f\n", comm.world_size(),
                static_cast<long long>(r.step), r.metrics.loss, r.grad_norm);
  }
  return 0;
}

}  // namespace
}  // namespace sdpo

int main(int argc, char** argv) {
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  try {
    if (absl::GetFlag(FLAGS_compare)) {
      SDPO_CHECK(args.size() == 3, "--compare needs two checkpoint paths");
      return sdpo::Compare(args[1], args[2]);
    }
    sdpo::distributed::CommOptions options;
    options.timeout_s = absl::GetFlag(FLAGS_collective_timeout_s);
    options.bucket_bytes = static_cast<int64_t>(absl::GetFlag(FLAGS_bucket_mb) * (1 << 20));
    std::unique_ptr<sdpo::distributed::Communicator> comm =
        sdpo::distributed::MakeCommunicator(options);
    try {
      return sdpo::Train(*comm);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dp_train: error (rank %d of %d): %s\n", comm->rank(),
                   comm->world_size(), e.what());
      if (comm->world_size() > 1) comm->Abort(1);
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dp_train: error: %s\n", e.what());
    return 1;
  }
}
