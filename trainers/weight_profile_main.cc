// weight_profile: sweep t over a schedule and write the importance-weight profile
// (mean and spread of log w per t-bucket, winners and losers) as CSV and SVG.
//
//   bazel run //trainers:weight_profile -- --family=ddpm --out=/tmp/wp
//
// Demo mode (the only mode for now): a synthetic predictor-error model instead of a network.
// At every grid point t and for each of --pairs_per_step pairs, the policy's per-element
// epsilon-MSE is drawn as
//   e_winner = demo_mse * exp(demo_spread * z - demo_spread^2 / 2),   z ~ N(0, 1)
//   e_loser  = demo_loser_ratio * demo_mse * exp(demo_spread * z' - demo_spread^2 / 2)
// (log-normal around a level that does not depend on t: the "comparable eps-errors across t"
// assumption of paper.md section 3.3; losers are worse fitted, like off-policy samples), and
// log w = -D_eff * k_eps(t) * e (sdpo::LogImportanceWeight with epsilon errors).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "io/command_line.h"
#include "io/json.h"
#include "models/schedules.h"
#include "nn/checkpoint_io.h"
#include "nn/lora.h"
#include "sdpo/importance.h"
#include "sdpo/metrics.h"
#include "tensor/error.h"
#include "trainers/data/preference_dataset.h"
#include "trainers/demo/rounds.h"
#include "trainers/demo_setup.h"
#include "trainers/measured_profile.h"
#include "trainers/model_factory.h"
#include "trainers/report/svg.h"
#include "trainers/weight_inputs.h"

ABSL_FLAG(std::string, family, "", "schedule family: flow | ddpm (required)");
ABSL_FLAG(std::string, out, "",
          "output directory (required; created; relative to the cwd of bazel run)");
ABSL_FLAG(std::string, ddpm_preset, "cogvideox-2b",
          "DDPM schedule: cogvideox-2b | cogvideox-5b (snr shift 3, ZTSNR)");
ABSL_FLAG(std::string, checkpoint, "",
          "trained adapters (a //trainers:sdpo run folder or its adapters.safetensors): the "
          "profile of that policy on preference pairs (see Modes above)");
ABSL_FLAG(std::string, model, "wan21", "--checkpoint: wan21 | cogvideox-2b | cogvideox-5b");
ABSL_FLAG(std::string, base, "",
          "--checkpoint: the base model the adapters were trained on (file, index or folder; "
          "default: the demo base model)");
ABSL_FLAG(std::string, data, "",
          "--checkpoint: a preference dataset directory (docs/data.md); default: with the demo "
          "base model, one demo pair per training prompt sampled from it with --seed");
ABSL_FLAG(std::string, pairs, "",
          "--checkpoint: a round file of a --rounds run (RUN/rounds/roundK_pairs.safetensors) "
          "instead of --data");
ABSL_FLAG(int, num_pairs, 16, "--checkpoint: pairs measured at every bucket (the first N)");
ABSL_FLAG(double, flow_shift, 5.0, "flow training-grid shift (Wan2.1: 5)");
ABSL_FLAG(int, buckets, 20, "number of t-buckets over [0, 1000]");
ABSL_FLAG(int, pairs_per_step, 8, "demo pairs drawn at every grid point");
ABSL_FLAG(double, demo_mse, 1.0, "demo winner per-element eps-MSE level");
ABSL_FLAG(double, demo_loser_ratio, 1.25, "loser error level / winner error level");
ABSL_FLAG(double, demo_spread, 0.25, "log-normal spread of the demo errors");
ABSL_FLAG(double, effective_elements, 1.0, "normalisation D_eff of log w (1: per-element weight)");
ABSL_FLAG(double, calibrate_timestep, -1.0,
          "instead of --effective_elements: choose D_eff so that a winner with the median demo "
          "error has weight tau at this grid timestep (e.g. 63; < 0: off)");
ABSL_FLAG(double, tau, 0.9, "DPO-C&M threshold for the mask-rate columns");
ABSL_FLAG(uint64_t, seed, 0, "RNG seed of the demo errors");
ABSL_FLAG(std::string, run, "",
          "a //trainers:sdpo output folder: the profile measured in training (see Modes above)");
ABSL_FLAG(double, window, 0.1, "--run: fraction of the steps at the start and at the end");

namespace sdpo {
namespace {

using trainers::MeasuredProfile;

constexpr char kUsage[] = R"(importance-weight profile over the diffusion schedule.

Usage: bazel run //trainers:weight_profile -- --family=flow|ddpm --out=DIR [flags]
(flags as --name=value or --name value)

Writes DIR/weight_profile.csv (per t-bucket: mean, std, q10/q50/q90 of log w, mean w, mask rate,
for winners and losers), DIR/weight_profile_points.csv (per grid point: KL coefficient and log w
of the median error) and DIR/weight_profile.svg (mean log w per bucket, band = +- 1 std) and
DIR/weight_profile_w.svg (mean w per bucket, band = q10..q90, with the threshold tau).

Modes:
  demo (default)            the synthetic predictor-error model above.
  --run=DIR                 the profile measured while training: reads DIR/metrics.jsonl of a
                            //trainers:sdpo run (its per-step, per-t-bucket weight statistics)
                            and writes OUT/weight_profile_run.csv and OUT/weight_profile_run.svg:
                            mean w per bucket over the first and the last --window of the steps
                            (default 0.1), winners and losers. --family is not needed.
  --checkpoint=RUN|FILE     the profile of a trained policy: the base model (--base, default
                            the demo's) with the adapters of RUN/adapters.safetensors (or FILE)
                            loaded, on the first --num_pairs pairs of --data or --pairs (default:
                            demo pairs of the base model). At the grid point nearest each
                            bucket's centre every pair is noised (noise from --seed) and the
                            policy's error turned into the closed-form log w (errors in v,
                            --effective_elements). Writes OUT/weight_profile.csv and
                            OUT/weight_profile_w.svg in the demo mode's format. --family is not
                            needed (the model's schedule is used).
)";

struct Flags {
  std::string family, out, ddpm_preset, checkpoint, run;
  double window;
  double flow_shift, demo_mse, demo_loser_ratio, demo_spread;
  double effective_elements, tau, calibrate_timestep;
  int buckets, pairs_per_step;
  uint64_t seed;
};

Flags ReadFlags() {
  Flags f;
  f.family = absl::GetFlag(FLAGS_family);
  f.out = absl::GetFlag(FLAGS_out);
  f.ddpm_preset = absl::GetFlag(FLAGS_ddpm_preset);
  f.checkpoint = absl::GetFlag(FLAGS_checkpoint);
  f.flow_shift = absl::GetFlag(FLAGS_flow_shift);
  f.demo_mse = absl::GetFlag(FLAGS_demo_mse);
  f.demo_loser_ratio = absl::GetFlag(FLAGS_demo_loser_ratio);
  f.demo_spread = absl::GetFlag(FLAGS_demo_spread);
  f.effective_elements = absl::GetFlag(FLAGS_effective_elements);
  f.calibrate_timestep = absl::GetFlag(FLAGS_calibrate_timestep);
  f.tau = absl::GetFlag(FLAGS_tau);
  f.buckets = absl::GetFlag(FLAGS_buckets);
  f.pairs_per_step = absl::GetFlag(FLAGS_pairs_per_step);
  f.seed = absl::GetFlag(FLAGS_seed);
  f.run = absl::GetFlag(FLAGS_run);
  f.window = absl::GetFlag(FLAGS_window);
  SDPO_CHECK(!f.out.empty(), "--out=DIR is required (see --help)");
  SDPO_CHECK(f.window > 0.0 && f.window <= 0.5, "--window must lie in (0, 0.5], got ", f.window);
  SDPO_CHECK(f.run.empty() || f.checkpoint.empty(), "--run and --checkpoint exclude each other");
  SDPO_CHECK(f.buckets >= 1 && f.buckets <= 1000, "--buckets must be in [1, 1000], got ",
             f.buckets);
  if (!f.run.empty() || !f.checkpoint.empty()) return f;
  SDPO_CHECK(!f.family.empty(), "--family=flow|ddpm is required (see --help)");
  SDPO_CHECK(f.pairs_per_step >= 1, "--pairs_per_step must be >= 1, got ", f.pairs_per_step);
  SDPO_CHECK(f.demo_mse > 0.0 && f.demo_loser_ratio > 0.0 && f.demo_spread >= 0.0,
             "--demo_mse and --demo_loser_ratio must be > 0 and --demo_spread >= 0");
  SDPO_CHECK(f.tau >= 0.0 && f.tau <= 1.0, "--tau must lie in [0, 1], got ", f.tau);
  return f;
}

std::string Fmt(double v) {
  return std::isfinite(v) ? absl::StrFormat("%.9g", v) : (v < 0 ? "-inf" : (v > 0 ? "inf" : "nan"));
}

void WriteText(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    SDPO_CHECK(out.good(), "cannot open ", tmp, " for writing");
    out << text;
    SDPO_CHECK(out.good(), "failed writing ", tmp);
  }
  SDPO_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path);
}

// weight_profile.csv (per t-bucket statistics of log w, winners and losers), weight_profile.svg
// (mean log w, band +- 1 std) and weight_profile_w.svg (mean w, band q10..q90, threshold tau).
void WriteBucketProfile(const std::vector<BucketStats>& buckets, double tau,
                        const std::string& source, const std::string& subtitle, bool flow,
                        const std::filesystem::path& out_dir) {
  std::string csv =
      "bucket,t_lo,t_hi,pairs,mask_rate,"
      "winner_mean,winner_std,winner_q10,winner_q50,winner_q90,winner_non_finite,winner_w_mean,"
      "loser_mean,loser_std,loser_q10,loser_q50,loser_q90,loser_non_finite,loser_w_mean\n";
  plot::Series mw{"winner mean log w"}, ml{"loser mean log w"};
  plot::Series ww{"winner mean w"}, wl{"loser mean w"}, tau_line{absl::StrCat("tau = ", tau)};
  tau_line.color = "#555555";
  tau_line.dashed = true;
  for (size_t b = 0; b < buckets.size(); ++b) {
    const BucketStats& bs = buckets[b];
    const double mask_rate = bs.pairs > 0 ? static_cast<double>(bs.masked) / bs.pairs : NAN;
    absl::StrAppend(&csv, b, ",", Fmt(bs.t_lo), ",", Fmt(bs.t_hi), ",", bs.pairs, ",",
                    Fmt(mask_rate));
    for (const LogWeightStats* st : {&bs.winner, &bs.loser}) {
      absl::StrAppend(&csv, ",", Fmt(st->mean), ",", Fmt(st->stddev), ",", Fmt(st->q10), ",",
                      Fmt(st->q50), ",", Fmt(st->q90), ",", st->non_finite, ",",
                      Fmt(st->mean_weight));
    }
    absl::StrAppend(&csv, "\n");
    if (bs.pairs == 0) continue;
    const double x = 0.5 * (bs.t_lo + bs.t_hi);
    for (auto [series, st] : {std::pair{&mw, &bs.winner}, std::pair{&ml, &bs.loser}}) {
      series->x.push_back(x);
      series->y.push_back(st->mean);
      series->band_lo.push_back(st->mean - st->stddev);
      series->band_hi.push_back(st->mean + st->stddev);
    }
    for (auto [series, st] : {std::pair{&ww, &bs.winner}, std::pair{&wl, &bs.loser}}) {
      series->x.push_back(x);
      series->y.push_back(st->mean_weight);
      series->band_lo.push_back(std::exp(st->q10));
      series->band_hi.push_back(std::exp(st->q90));
    }
    tau_line.x.push_back(x);
    tau_line.y.push_back(tau);
  }
  plot::LinePlot log_plot;
  log_plot.title = absl::StrCat("log importance weight per t-bucket (", source, ")");
  log_plot.subtitle = subtitle;
  log_plot.legend = plot::LegendPosition::kBottomLeft;
  log_plot.x_label = flow ? "timestep t = 1000 sigma" : "timestep t";
  log_plot.y_label = "mean log w (band: +- 1 std; -inf excluded)";
  log_plot.width = 960;
  log_plot.series = {mw, ml};
  plot::LinePlot w_plot = log_plot;
  w_plot.title = absl::StrCat("importance weight per t-bucket (", source, ")");
  w_plot.y_label = "mean w (band: q10..q90)";
  w_plot.series = {ww, wl, tau_line};

  WriteText((out_dir / "weight_profile.csv").string(), csv);
  plot::WriteSvg(log_plot, (out_dir / "weight_profile.svg").string());
  plot::WriteSvg(w_plot, (out_dir / "weight_profile_w.svg").string());
}

int ProfileOfRun(const Flags& f) {
  const MeasuredProfile profile = trainers::MeasureRunProfile(
      (std::filesystem::path(f.run) / "metrics.jsonl").string(), f.window);
  const std::filesystem::path out_dir(f.out);
  std::filesystem::create_directories(out_dir);
  WriteText((out_dir / "weight_profile_run.csv").string(), trainers::MeasuredProfileCsv(profile));
  plot::WriteSvg(trainers::MeasuredProfilePlot(profile, f.run),
                 (out_dir / "weight_profile_run.svg").string());
  std::printf(
      "weight_profile (run %s): %zu steps, window %zu; wrote %s/{weight_profile_run.csv, "
      "weight_profile_run.svg}\n",
      f.run.c_str(), profile.steps, profile.window_steps, out_dir.string().c_str());
  return 0;
}

// --checkpoint: the closed-form profile of the base model with trained adapters, on pairs.
int ProfileOfCheckpoint(const Flags& f) {
  namespace fs = std::filesystem;
  std::string adapters = f.checkpoint;
  if (fs::is_directory(adapters)) adapters = (fs::path(adapters) / "adapters.safetensors").string();
  SDPO_CHECK(fs::is_regular_file(adapters), "--checkpoint=", f.checkpoint, ": no adapters file ",
             adapters, " (a //trainers:sdpo LoRA run writes adapters.safetensors when it ends)");
  const std::string model_name = absl::GetFlag(FLAGS_model);
  const bool demo_base = absl::GetFlag(FLAGS_base).empty();
  const std::string base = demo_base ? trainers::kDemoBaseModelPath : absl::GetFlag(FLAGS_base);
  SDPO_CHECK(
      fs::exists(base), "--base=", base, ": not found",
      demo_base ? " (the demo base model: run from the workspace root or with bazel run)" : "");
  const int num_pairs = absl::GetFlag(FLAGS_num_pairs);
  SDPO_CHECK(num_pairs >= 1, "--num_pairs=", num_pairs, ": must be >= 1");
  const std::string data_dir = absl::GetFlag(FLAGS_data), round_file = absl::GetFlag(FLAGS_pairs);
  SDPO_CHECK(data_dir.empty() || round_file.empty(), "--data and --pairs exclude each other");
  SDPO_CHECK(!data_dir.empty() || !round_file.empty() || (demo_base && model_name == "wan21"),
             "--checkpoint with --base=", base,
             " needs the pairs to measure on: --data=DIR or "
             "--pairs=FILE");

  trainers::TrainModel loaded = trainers::LoadTrainModel(model_name, base);
  models::DiffusionModel& policy = *loaded.model;
  policy.module().SetRequiresGrad(false);
  nn::LoadLora(policy.module(), adapters);
  std::unique_ptr<data::PairDataset> dataset;
  std::string pairs_from;
  if (!round_file.empty()) {
    dataset =
        std::make_unique<data::InMemoryPairDataset>(demo::LoadRoundPairs(round_file, nullptr));
    pairs_from = round_file;
  } else if (!data_dir.empty()) {
    data::DatasetSpec spec;
    spec.channels = loaded.latent_channels;
    spec.text_dim = loaded.text_dim;
    spec.max_text_len = loaded.max_text_len;
    spec.patch = loaded.latent_patch;
    dataset = data::PreferenceDataset::Open(data_dir, spec);
    pairs_from = data_dir;
  } else {
    const demo::DemoWorld world;
    nn::LoraDisabledScope base_model(policy.module());
    dataset = std::make_unique<data::InMemoryPairDataset>(
        trainers::GenerateDemoPairs(policy, world, 1, 0.02, f.seed, nullptr));
    pairs_from = absl::StrCat("demo pairs of seed ", f.seed);
  }
  ObjectiveConfig objective;  // the closed form: errors in v, as the trainer's default
  objective.effective_elements = f.effective_elements;
  const NoiseSchedule& schedule = *loaded.schedule;
  const std::vector<BucketStats> buckets =
      trainers::MeasureWeightProfile(policy, schedule, *dataset, objective, PredictionType::kV,
                                     f.buckets, num_pairs, f.seed, f.tau);
  fs::path out_dir(f.out);
  fs::create_directories(out_dir);
  const int64_t measured = std::min<int64_t>(num_pairs, dataset->size());
  const std::string subtitle =
      absl::StrCat(adapters, " on ", measured, " pairs (", pairs_from, "), ", schedule.Describe(),
                   ", D_eff ", absl::StrFormat("%.4g", f.effective_elements));
  WriteBucketProfile(buckets, f.tau, "trained policy", subtitle,
                     schedule.family() == ScheduleFamily::kFlow, out_dir);
  std::printf("weight_profile (checkpoint): %s\n", subtitle.c_str());
  for (const BucketStats& b : buckets) {
    if (b.pairs == 0) continue;
    std::printf("  t in [%4g, %4g): mean w winner %.6f loser %.6f\n", b.t_lo, b.t_hi,
                b.winner.mean_weight, b.loser.mean_weight);
  }
  std::printf("  wrote %s/{weight_profile.csv, weight_profile.svg, weight_profile_w.svg}\n",
              out_dir.string().c_str());
  return 0;
}

int Run() {
  const Flags f = ReadFlags();
  if (!f.run.empty()) return ProfileOfRun(f);
  if (!f.checkpoint.empty()) return ProfileOfCheckpoint(f);
  const ScheduleFamily family = ParseScheduleFamily(f.family);
  NoiseSchedule schedule = NoiseSchedule::Flow(FlowScheduleConfig{});
  if (family == ScheduleFamily::kFlow) {
    FlowScheduleConfig fc;
    fc.shift = f.flow_shift;
    schedule = NoiseSchedule::Flow(fc);
  } else if (f.ddpm_preset == "cogvideox-2b") {
    schedule = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX2B());
  } else if (f.ddpm_preset == "cogvideox-5b") {
    schedule = NoiseSchedule::Ddpm(DdpmScheduleConfig::CogVideoX5B());
  } else {
    SDPO_FAIL("unknown --ddpm_preset=", f.ddpm_preset, " (expected cogvideox-2b | cogvideox-5b)");
  }

  double d_eff = f.effective_elements;
  if (f.calibrate_timestep >= 0.0) {
    int best = 0;
    for (int i = 0; i < schedule.num_steps(); ++i) {
      if (std::abs(schedule.At(i).timestep - f.calibrate_timestep) <
          std::abs(schedule.At(best).timestep - f.calibrate_timestep)) {
        best = i;
      }
    }
    SDPO_CHECK(f.tau > 0.0 && f.tau < 1.0, "--calibrate_timestep needs --tau in (0, 1)");
    const double median = f.demo_mse * std::exp(-0.5 * f.demo_spread * f.demo_spread);
    d_eff = CalibrateEffectiveElements(schedule.At(best), PredictionType::kEpsilon, median, f.tau);
  }
  SDPO_CHECK(d_eff > 0.0, "--effective_elements must be > 0, got ", d_eff);

  std::filesystem::path out_dir(f.out);
  if (out_dir.is_relative()) {
    if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY"))
      out_dir = std::filesystem::path(wd) / out_dir;
  }
  std::filesystem::create_directories(out_dir);

  std::mt19937_64 rng(f.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  const double s = f.demo_spread;
  WeightProfile profile(f.buckets, 1000.0);
  std::string points =
      "index,timestep,alpha,sigma,snr,snr_prev,kl_coef_eps,kl_coef_x0,log_w_median_winner,log_w_"
      "median_loser\n";
  const double med_w = f.demo_mse * std::exp(-0.5 * s * s);
  const double med_l = f.demo_loser_ratio * med_w;
  for (int i = 0; i < schedule.num_steps(); ++i) {
    const TimePoint tp = schedule.At(i);
    absl::StrAppend(&points, i, ",", Fmt(tp.timestep), ",", Fmt(tp.alpha), ",", Fmt(tp.sigma), ",",
                    Fmt(tp.Snr()), ",", Fmt(tp.SnrPrev()), ",",
                    Fmt(KlCoefficient(tp, PredictionType::kEpsilon)), ",", Fmt(KlCoefficientX0(tp)),
                    ",", Fmt(LogImportanceWeight(tp, PredictionType::kEpsilon, med_w, d_eff)), ",",
                    Fmt(LogImportanceWeight(tp, PredictionType::kEpsilon, med_l, d_eff)), "\n");
    for (int k = 0; k < f.pairs_per_step; ++k) {
      const double e_w = f.demo_mse * std::exp(s * normal(rng) - 0.5 * s * s);
      const double e_l = f.demo_loser_ratio * f.demo_mse * std::exp(s * normal(rng) - 0.5 * s * s);
      const double lw = LogImportanceWeight(tp, PredictionType::kEpsilon, e_w, d_eff);
      const double ll = LogImportanceWeight(tp, PredictionType::kEpsilon, e_l, d_eff);
      const bool active = std::exp(lw) >= f.tau && std::exp(ll) >= f.tau;
      profile.Add(tp.timestep, lw, ll, active);
    }
  }
  const std::vector<BucketStats> buckets = profile.Buckets();

  const std::string subtitle =
      absl::StrCat(schedule.Describe(), ", demo eps-MSE ", f.demo_mse, " (loser x",
                   f.demo_loser_ratio, "), D_eff ", absl::StrFormat("%.4g", d_eff));
  WriteBucketProfile(buckets, f.tau, "synthetic demo errors", subtitle,
                     family == ScheduleFamily::kFlow, out_dir);
  WriteText((out_dir / "weight_profile_points.csv").string(), points);

  // Console summary: where the profile peaks and how much the threshold masks.
  int peak = -1;
  int64_t pairs = 0, masked = 0;
  for (size_t b = 0; b < buckets.size(); ++b) {
    pairs += buckets[b].pairs;
    masked += buckets[b].masked;
    if (buckets[b].pairs > 0 &&
        (peak < 0 || buckets[b].winner.mean_weight > buckets[peak].winner.mean_weight)) {
      peak = static_cast<int>(b);
    }
  }
  std::printf("weight_profile (demo): %s\n", subtitle.c_str());
  if (peak >= 0) {
    std::printf("  highest mean winner weight %.6f in bucket t in [%g, %g)\n",
                buckets[peak].winner.mean_weight, buckets[peak].t_lo, buckets[peak].t_hi);
  }
  std::printf("  mask rate at tau %.3g: %.2f%% of %lld pairs\n", f.tau,
              pairs > 0 ? 100.0 * masked / pairs : 0.0, static_cast<long long>(pairs));
  std::printf(
      "  wrote %s/{weight_profile.csv, weight_profile_points.csv, weight_profile.svg, "
      "weight_profile_w.svg}\n",
      out_dir.string().c_str());
  return 0;
}

}  // namespace
}  // namespace sdpo

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv, sdpo::kUsage);
  try {
    return sdpo::Run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weight_profile: %s\n", e.what());
    return 1;
  }
}
