#include "trainers/validation.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "autograd/grad_mode.h"
#include "io/json.h"
#include "io/video.h"
#include "sdpo/metrics.h"
#include "tensor/ops.h"
#include "tensor/philox.h"
#include "trainers/preference_step.h"
#include "trainers/report.h"

namespace sdpo::trainers {

namespace fs = std::filesystem;

namespace {

// Streams of their own, so that held-out draws never coincide with training draws.
constexpr uint64_t kSplitSalt = 0x4f1bbcdcbfa53e0bull;
constexpr uint64_t kHeldOutTimestepSalt = 0x6a09e667f3bcc909ull;
constexpr uint64_t kHeldOutNoiseSalt = 0xbb67ae8584caa73bull;

std::vector<double> Slice(const std::vector<double>& v, size_t begin, size_t count) {
  return {v.begin() + static_cast<std::ptrdiff_t>(begin),
          v.begin() + static_cast<std::ptrdiff_t>(begin + count)};
}

void Append(std::vector<double>& to, const std::vector<double>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

}  // namespace

PairSubset::PairSubset(const data::PairDataset& source, std::vector<int64_t> indices)
    : source_(source), indices_(std::move(indices)) {
  for (int64_t i : indices_) {
    SDPO_CHECK(i >= 0 && i < source_.size(), "PairSubset: index ", i, " outside the ",
               source_.size(), " pairs");
  }
}

data::PreferencePair PairSubset::Get(int64_t index) const {
  SDPO_CHECK(index >= 0 && index < size(), "PairSubset: pair ", index, " of ", size());
  return source_.Get(indices_[static_cast<size_t>(index)]);
}

PairSplit SplitPairs(int64_t num_pairs, double fraction, uint64_t seed) {
  SDPO_CHECK(std::isfinite(fraction) && fraction > 0 && fraction < 1, "--val_fraction=", fraction,
             ": expected a fraction of the pairs to hold out, 0 < F < 1");
  const int64_t heldout =
      static_cast<int64_t>(std::ceil(fraction * static_cast<double>(num_pairs)));
  SDPO_CHECK(heldout < num_pairs, "--val_fraction=", fraction, " holds out ", heldout, " of the ",
             num_pairs, " pairs and leaves none to train on; lower it or add pairs");
  // Fisher-Yates with counter-based draws: the permutation is a function of (seed, num_pairs).
  std::vector<int64_t> order(static_cast<size_t>(num_pairs));
  std::iota(order.begin(), order.end(), 0);
  for (int64_t i = num_pairs - 1; i > 0; --i) {
    const double u = PhiloxUniform(static_cast<uint64_t>(i), seed ^ kSplitSalt);
    const int64_t j = std::min<int64_t>(i, static_cast<int64_t>(u * static_cast<double>(i + 1)));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  PairSplit split;
  split.heldout.assign(order.begin(), order.begin() + heldout);
  split.train.assign(order.begin() + heldout, order.end());
  std::sort(split.heldout.begin(), split.heldout.end());
  std::sort(split.train.begin(), split.train.end());
  return split;
}

void RecordOrCheckSplit(const std::string& path, const PairSplit& split, double fraction,
                        uint64_t seed, const std::vector<std::string>& ids, bool resume) {
  std::vector<std::string> heldout_ids;
  for (int64_t i : split.heldout) heldout_ids.push_back(json::Quote(ids[static_cast<size_t>(i)]));
  const int64_t pairs = static_cast<int64_t>(split.train.size() + split.heldout.size());
  if (resume && fs::exists(path)) {
    const json::Value saved = json::ParseFile(path);
    std::vector<std::string> saved_ids;
    for (const json::Value& id : saved.at("heldout_ids").as_array()) {
      saved_ids.push_back(json::Quote(id.as_string()));
    }
    const bool same = saved.at("pairs").as_int() == pairs && saved_ids == heldout_ids;
    SDPO_CHECK(same, "--resume: ", path, " records a held-out split of ",
               saved.at("pairs").as_int(), " pairs with ", saved_ids.size(),
               " held out, but this run's data and --val_fraction/--seed give ", pairs,
               " pairs with ", heldout_ids.size(), " held out",
               saved_ids.size() == heldout_ids.size() ? " (other pairs)" : "",
               "; resume with the same --data, --val_fraction and --seed");
    return;
  }
  WriteFileAtomic(path,
                  absl::StrCat("{\"val_fraction\": ", absl::StrFormat("%.9g", fraction),
                               ", \"seed\": ", seed, ", \"pairs\": ", pairs, ", \"heldout_ids\": [",
                               absl::StrJoin(heldout_ids, ", "), "]}\n"));
}

HeldOutEvaluator::HeldOutEvaluator(const data::PairDataset& pairs, const NoiseSchedule& schedule,
                                   models::DiffusionModel* reference, ObjectiveConfig objective,
                                   TimestepSamplerConfig timesteps, PredictionType target,
                                   int64_t batch, uint64_t seed)
    : pairs_(pairs),
      reference_(reference),
      objective_(std::move(objective)),
      sampler_(schedule, timesteps),
      target_(target),
      batch_(std::max<int64_t>(1, batch)),
      seed_(seed) {
  SDPO_CHECK(pairs_.size() > 0, "held-out evaluation: no held-out pairs");
  objective_.weight_source = WeightSource::kClosedForm;
}

EvalResult HeldOutEvaluator::Evaluate(models::DiffusionModel& policy) {
  NoGradGuard no_grad;
  const Device device = ModelDevice(policy);
  PairBatch all;
  for (int64_t first = 0; first < pairs_.size(); first += batch_) {
    const int64_t count = std::min(batch_, pairs_.size() - first);
    PairTensors pairs;
    std::vector<TimePoint> timepoints;
    std::vector<Tensor> noise;
    for (int64_t k = first; k < first + count; ++k) {
      const data::PreferencePair p = pairs_.Get(k);
      pairs.winners.push_back(ops::To(p.winner, device));
      pairs.losers.push_back(ops::To(p.loser, device));
      pairs.contexts.push_back(ops::To(p.context, device));
      pairs.weights.push_back(p.weight);
      // Fixed per held-out pair: the same draws at every evaluation.
      const uint64_t index = static_cast<uint64_t>(k);
      timepoints.push_back(sampler_.Sample(PhiloxUniform(index, seed_ ^ kHeldOutTimestepSalt)));
      noise.push_back(ops::RandomNormal(p.winner.shape(), seed_ ^ kHeldOutNoiseSalt,
                                        index * static_cast<uint64_t>(p.winner.numel()), kF32,
                                        device));
    }
    const NoisedPairs noised = NoisePairs(pairs, timepoints, noise, target_);
    const PairErrors errors = ComputePairErrors(policy, reference_, noised);
    const std::vector<double> pol = errors.policy.ToVector();
    const std::vector<double> ref = errors.reference.ToVector();
    const size_t b = static_cast<size_t>(count);
    Append(all.policy_winner, Slice(pol, 0, b));
    Append(all.policy_loser, Slice(pol, b, b));
    Append(all.reference_winner, Slice(ref, 0, b));
    Append(all.reference_loser, Slice(ref, b, b));
    Append(all.pair_weights, pairs.weights);
    all.timepoints.insert(all.timepoints.end(), timepoints.begin(), timepoints.end());
  }
  const ObjectiveResult result = EvaluateObjective(objective_, all);
  const StepMetrics m = ComputeStepMetrics(all, result);
  return EvalResult{{{"val_loss", m.loss},
                     {"val_reward_accuracy", m.reward_accuracy},
                     {"val_reward_margin", m.reward_margin},
                     {"val_pairs", static_cast<double>(all.size())}}};
}

std::vector<ValidationPrompt> ReadValidationPrompts(const std::string& path,
                                                    const std::string& default_negative) {
  std::ifstream in(path);
  SDPO_CHECK(in.good(), "--validation_prompts=", path, ": cannot open");
  std::vector<ValidationPrompt> prompts;
  int jsonl = -1;  // unknown until the first non-blank line
  int64_t line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string trimmed(absl::StripAsciiWhitespace(line));
    if (trimmed.empty()) continue;
    if (jsonl < 0) jsonl = trimmed[0] == '{';
    const std::string where = absl::StrCat("--validation_prompts=", path, " line ", line_number);
    ValidationPrompt p;
    p.seed = prompts.size();
    p.negative = default_negative;
    if (jsonl == 1) {
      const json::Value v = json::Parse(trimmed, where);
      SDPO_CHECK(v.is_object(), where, ": expected a JSON object with \"prompt\"");
      for (const auto& [key, value] : v.as_object()) {
        SDPO_CHECK(key == "prompt" || key == "seed" || key == "negative_prompt", where,
                   ": unknown key \"", key, "\" (expected prompt, seed, negative_prompt)");
      }
      const json::Value* text = v.find("prompt");
      SDPO_CHECK(text != nullptr && text->is_string(), where,
                 ": \"prompt\" must be present and a string");
      p.text = text->as_string();
      if (const json::Value* seed = v.find("seed")) {
        SDPO_CHECK(seed->is_int() && seed->as_int() >= 0, where,
                   ": \"seed\" must be an integer >= 0");
        p.seed = static_cast<uint64_t>(seed->as_int());
      }
      if (const json::Value* negative = v.find("negative_prompt")) {
        SDPO_CHECK(negative->is_string(), where, ": \"negative_prompt\" must be a string");
        p.negative = negative->as_string();
      }
    } else {
      SDPO_CHECK(trimmed[0] != '{', where,
                 ": a JSON line in a file of plain-text prompts (its "
                 "first prompt line is text); use one prompt per line or JSON Lines throughout");
      p.text = trimmed;
    }
    SDPO_CHECK(!absl::StripAsciiWhitespace(p.text).empty(), where, ": empty prompt");
    prompts.push_back(std::move(p));
  }
  SDPO_CHECK(!prompts.empty(), "--validation_prompts=", path, ": no prompts");
  return prompts;
}

ValidationVideoEvaluator::ValidationVideoEvaluator(std::vector<ValidationPrompt> prompts,
                                                   std::vector<Tensor> contexts,
                                                   std::vector<Tensor> negatives,
                                                   std::unique_ptr<VideoRenderer> renderer,
                                                   ValidationVideoOptions options)
    : prompts_(std::move(prompts)),
      contexts_(std::move(contexts)),
      negatives_(std::move(negatives)),
      renderer_(std::move(renderer)),
      options_(std::move(options)) {
  SDPO_CHECK(contexts_.size() == prompts_.size() && negatives_.size() == prompts_.size(),
             "validation videos: ", prompts_.size(), " prompts but ", contexts_.size(),
             " embeddings and ", negatives_.size(), " negative embeddings");
  SDPO_CHECK(renderer_ != nullptr, "validation videos: no renderer (sampler and VAE)");
  const fs::path dir = fs::path(options_.out_dir) / "validation";
  fs::create_directories(dir);
  std::string listing;
  for (size_t k = 0; k < prompts_.size(); ++k) {
    absl::StrAppend(&listing, "{\"name\": \"p", k,
                    "\", \"prompt\": ", json::Quote(prompts_[k].text),
                    ", \"negative_prompt\": ", json::Quote(prompts_[k].negative),
                    ", \"seed\": ", prompts_[k].seed, "}\n");
  }
  WriteFileAtomic((dir / "prompts.jsonl").string(), listing);
  // Folders of evaluations that a kill interrupted.
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    if (e.is_directory() && e.path().filename().string().find(".tmp.") != std::string::npos) {
      fs::remove_all(e.path());
    }
  }
}

std::string ValidationVideoEvaluator::StepDir(const std::string& out_dir, int64_t step) {
  return (fs::path(out_dir) / "validation" / absl::StrFormat("step_%06d", step)).string();
}

EvalResult ValidationVideoEvaluator::EvaluateAt(models::DiffusionModel& policy, int64_t step) {
  const std::string final_dir = StepDir(options_.out_dir, step);
  const double count = static_cast<double>(prompts_.size());
  if (fs::is_directory(final_dir)) return EvalResult{{{"validation_videos", count}}};
  const std::string tmp_dir = absl::StrCat(final_dir, ".tmp.", ::getpid());
  fs::remove_all(tmp_dir);
  fs::create_directories(tmp_dir);
  NoGradGuard no_grad;
  for (size_t k = 0; k < prompts_.size(); ++k) {
    SamplingContexts contexts;
    contexts.prompts = {contexts_[k]};
    contexts.negative = negatives_[k];
    // Fixed noise: the prompt's seed, the same at every evaluation.
    const Tensor video = renderer_->Render(policy, contexts, options_.latent_shape,
                                           prompts_[k].seed, options_.progress);
    const std::string stem = (fs::path(tmp_dir) / absl::StrCat("p", k)).string();
    video::WriteOptions wo;
    wo.fps = options_.fps;
    video::WriteMp4(stem + ".mp4", video, wo);
    video::WriteGif(stem + ".gif", video, options_.fps);
  }
  fs::rename(tmp_dir, final_dir);
  return EvalResult{{{"validation_videos", count}}};
}

namespace {

class WanRenderer final : public VideoRenderer {
 public:
  WanRenderer(std::unique_ptr<WanVideoDecoder> decoder, samplers::FlowSampleOptions sampling)
      : decoder_(std::move(decoder)), sampling_(std::move(sampling)) {}
  Tensor Render(models::DiffusionModel& policy, const SamplingContexts& contexts,
                const Shape& latent_shape, uint64_t seed, bool progress) override {
    VideoSampleRequest request;
    request.latent_shape = latent_shape;
    request.seed = seed;
    request.options = sampling_;
    request.progress = progress;
    return decoder_->Decode(SampleLatentVideos(policy, contexts, request).front());
  }

 private:
  std::unique_ptr<WanVideoDecoder> decoder_;
  samplers::FlowSampleOptions sampling_;
};

class CogVideoXRenderer final : public VideoRenderer {
 public:
  CogVideoXRenderer(std::unique_ptr<CogVideoXVaeRunner> vae, std::vector<double> alphas_cumprod,
                    samplers::DdpmSampleOptions sampling)
      : vae_(std::move(vae)),
        alphas_cumprod_(std::move(alphas_cumprod)),
        sampling_(std::move(sampling)) {}
  Tensor Render(models::DiffusionModel& policy, const SamplingContexts& contexts,
                const Shape& latent_shape, uint64_t seed, bool progress) override {
    DdpmVideoSampleRequest request;
    request.latent_shape = latent_shape;
    request.seed = seed;
    request.options = sampling_;
    request.progress = progress;
    return vae_->Decode(SampleDdpmLatentVideos(policy, alphas_cumprod_, contexts, request).front());
  }

 private:
  std::unique_ptr<CogVideoXVaeRunner> vae_;
  std::vector<double> alphas_cumprod_;
  samplers::DdpmSampleOptions sampling_;
};

}  // namespace

std::unique_ptr<VideoRenderer> MakeWanRenderer(std::unique_ptr<WanVideoDecoder> decoder,
                                               samplers::FlowSampleOptions sampling) {
  SDPO_CHECK(decoder != nullptr, "validation videos: no Wan2.1 VAE decoder");
  return std::make_unique<WanRenderer>(std::move(decoder), std::move(sampling));
}

std::unique_ptr<VideoRenderer> MakeCogVideoXRenderer(std::unique_ptr<CogVideoXVaeRunner> vae,
                                                     std::vector<double> alphas_cumprod,
                                                     samplers::DdpmSampleOptions sampling) {
  SDPO_CHECK(vae != nullptr, "validation videos: no CogVideoX VAE");
  return std::make_unique<CogVideoXRenderer>(std::move(vae), std::move(alphas_cumprod),
                                             std::move(sampling));
}

EvalResult EvaluatorList::EvaluateAt(models::DiffusionModel& policy, int64_t step) {
  EvalResult all;
  for (const auto& e : evaluators_) {
    const EvalResult r = e->EvaluateAt(policy, step);
    all.values.insert(all.values.end(), r.values.begin(), r.values.end());
  }
  return all;
}

}  // namespace sdpo::trainers
