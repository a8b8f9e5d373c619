#include "trainers/scored_rounds.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "io/json.h"
#include "io/video.h"
#include "tensor/error.h"
#include "trainers/report.h"

namespace sdpo::trainers {
namespace fs = std::filesystem;

std::vector<std::string> RoundVideoPaths(const ScoredRoundRequest& request) {
  std::vector<std::string> paths;
  for (size_t p = 0; p < request.contexts.prompts.size(); ++p) {
    for (int s = 0; s < request.sample.samples_per_prompt; ++s) {
      paths.push_back(
          (fs::path(request.dir) / "videos" / absl::StrCat("p", p, "_s", s, ".mp4")).string());
    }
  }
  return paths;
}

std::vector<std::pair<int64_t, int64_t>> PairsFromScores(const std::vector<double>& scores,
                                                         int64_t samples_per_prompt,
                                                         double min_gap) {
  SDPO_CHECK(samples_per_prompt >= 2 && samples_per_prompt % 2 == 0 &&
                 scores.size() % samples_per_prompt == 0,
             "scored pairs: ", scores.size(), " scores for ", samples_per_prompt,
             " samples per prompt (an even number >= 2)");
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (size_t i = 0; i + 1 < scores.size(); i += 2) {
    const double a = scores[i], b = scores[i + 1];
    if (std::abs(a - b) <= min_gap) continue;
    const int64_t first = static_cast<int64_t>(i);
    pairs.push_back(a > b ? std::pair{first, first + 1} : std::pair{first + 1, first});
  }
  return pairs;
}

namespace {

// scores.json of a round: its scores when it holds `count` of them, else empty.
std::vector<double> ReadScores(const std::string& path, size_t count) {
  if (!fs::exists(path)) return {};
  const json::Value v = json::ParseFile(path);
  SDPO_CHECK(v.is_array() && v.as_array().size() == count, path, ": expected a list of ", count,
             " scores (remove it to score the round's videos again)");
  std::vector<double> scores;
  for (const json::Value& s : v.as_array()) scores.push_back(s.as_double());
  return scores;
}

}  // namespace

std::vector<data::PreferencePair> ScoredRound(models::DiffusionModel& policy,
                                              WanVideoDecoder& decoder, VideoLatentEncoder& encoder,
                                              const RewardCommand& scorer,
                                              const ScoredRoundRequest& request,
                                              ScoredRoundStats* stats) {
  const size_t num_prompts = request.contexts.prompts.size();
  SDPO_CHECK(num_prompts > 0 && request.prompts.size() == num_prompts,
             "scored round: ", request.prompts.size(), " prompt texts for ", num_prompts,
             " embeddings");
  const int per_prompt = request.sample.samples_per_prompt;
  SDPO_CHECK(per_prompt >= 2 && per_prompt % 2 == 0, "--samples_per_prompt=", per_prompt,
             ": must be an even number >= 2 (each two samples of a prompt form a pair)");
  ScoredRoundStats s;
  const std::vector<std::string> videos = RoundVideoPaths(request);
  s.videos = static_cast<int64_t>(videos.size());
  fs::create_directories(fs::path(request.dir) / "videos");

  // 1. The videos: sampled from the policy as it is, decoded, written as mp4.
  bool all_there = true;
  for (const std::string& v : videos) all_there = all_there && fs::exists(v);
  if (!all_there) {
    const std::vector<Tensor> latents =
        SampleLatentVideos(policy, request.contexts, request.sample);
    video::WriteOptions mp4;
    mp4.fps = request.clip.fps;
    for (size_t i = 0; i < latents.size(); ++i) {
      video::WriteMp4(videos[i], decoder.Decode(latents[i]), mp4);
    }
    s.sampled = true;
  }

  // 2. The scores, kept in scores.json once the command gave them all.
  const std::string scores_path = (fs::path(request.dir) / "scores.json").string();
  std::vector<double> scores = ReadScores(scores_path, videos.size());
  if (scores.empty()) {
    std::vector<RewardQuery> queries;
    for (size_t i = 0; i < videos.size(); ++i) {
      queries.push_back({request.prompts[i / per_prompt], fs::absolute(videos[i]).string()});
    }
    scores = scorer.Score(queries);
    json::Value::Array items;
    for (double v : scores) items.push_back(json::Value::Double(v));
    WriteFileAtomic(scores_path, json::Serialize(json::Value::MakeArray(items)) + "\n");
    s.scored = true;
  }

  // 3. Pairs, their videos encoded back to latents as prepare does.
  std::vector<data::PreferencePair> pairs;
  for (const auto& [chosen, rejected] : PairsFromScores(scores, per_prompt, request.min_gap)) {
    const size_t p = static_cast<size_t>(chosen) / per_prompt;
    data::PreferencePair pair;
    pair.id = absl::StrCat(fs::path(request.dir).filename().string(), " p", p, " #",
                           (chosen % per_prompt) / 2);
    pair.prompt = request.prompts[p];
    pair.winner = encoder.Encode(ReadClip(videos[chosen], request.clip));
    pair.loser = encoder.Encode(ReadClip(videos[rejected], request.clip));
    pair.context = request.contexts.prompts[p];
    s.mean_score_winner += scores[chosen];
    s.mean_score_loser += scores[rejected];
    pairs.push_back(std::move(pair));
  }
  s.pairs = static_cast<int64_t>(pairs.size());
  if (s.pairs > 0) {
    s.mean_score_winner /= s.pairs;
    s.mean_score_loser /= s.pairs;
  }
  if (stats != nullptr) *stats = s;
  return pairs;
}

}  // namespace sdpo::trainers
