#include "trainers/demo/rounds.h"

#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "io/json.h"
#include "nn/checkpoint_io.h"
#include "tensor/error.h"

namespace sdpo::demo {

constexpr char kRoundFormat[] = "sdpo-demo-round-v1";

std::string GeneratorId(int round) {
  SDPO_CHECK(round >= 0, "GeneratorId: round ", round, " < 0");
  return round == 0 ? "" : absl::StrCat("round", round);
}

int64_t RoundEndStep(int64_t total_steps, int rounds, int r) {
  SDPO_CHECK(rounds >= 1 && rounds <= total_steps, "rounds: ", rounds,
             " rounds need 1 <= rounds <= steps (", total_steps, ")");
  SDPO_CHECK(r >= 0 && r < rounds, "rounds: round ", r, " outside [0, ", rounds, ")");
  return (r + 1) * total_steps / rounds;
}

int RoundOfStep(int64_t total_steps, int rounds, int64_t step) {
  for (int r = 0; r < rounds; ++r) {
    if (step < RoundEndStep(total_steps, rounds, r)) return r;
  }
  return rounds;
}

void PairBuffer::AddRound(const Generator& generator, std::vector<data::PreferencePair> pairs) {
  SDPO_CHECK(generator.round == rounds(), "PairBuffer: round ", generator.round, " added after ",
             rounds(), " rounds (rounds are added in order)");
  SDPO_CHECK(generator.id == GeneratorId(generator.round), "PairBuffer: round ", generator.round,
             " has generator id '", generator.id, "', expected '", GeneratorId(generator.round),
             "'");
  for (data::PreferencePair& p : pairs) {
    p.generator = generator.id;
    pairs_.push_back(std::move(p));
  }
  generators_.push_back(generator);
  sizes_.push_back(static_cast<int64_t>(pairs.size()));
}

int64_t PairBuffer::RoundSize(int round) const {
  SDPO_CHECK(round >= 0 && round < rounds(), "PairBuffer: no round ", round, " (", rounds(),
             " rounds)");
  return sizes_[round];
}

namespace {

// The generator's adapter file as written into a round file: relative to the round file's
// folder when it lies there (run folders stay relocatable), else as given.
std::string AdaptersForFile(const std::string& round_file, const std::string& adapters) {
  namespace fs = std::filesystem;
  if (adapters.empty()) return adapters;
  const fs::path a(adapters);
  if (a.parent_path() == fs::path(round_file).parent_path()) return a.filename().string();
  return adapters;
}

}  // namespace

void SaveRoundPairs(const std::string& path, const Generator& generator,
                    const std::vector<data::PreferencePair>& pairs) {
  nn::TensorMap tensors;
  json::Value::Array ids, prompts, weights;
  for (size_t i = 0; i < pairs.size(); ++i) {
    tensors[absl::StrCat(i, "/winner")] = pairs[i].winner;
    tensors[absl::StrCat(i, "/loser")] = pairs[i].loser;
    tensors[absl::StrCat(i, "/context")] = pairs[i].context;
    ids.push_back(json::Value::String(pairs[i].id));
    prompts.push_back(json::Value::String(pairs[i].prompt));
    weights.push_back(json::Value::Double(pairs[i].weight));
  }
  nn::SaveSafetensors(path, tensors,
                      {{"format", kRoundFormat},
                       {"round", absl::StrCat(generator.round)},
                       {"generator", generator.id},
                       {"adapters", AdaptersForFile(path, generator.adapters)},
                       {"pairs", absl::StrCat(pairs.size())},
                       {"ids", json::Serialize(json::Value::MakeArray(ids))},
                       {"prompts", json::Serialize(json::Value::MakeArray(prompts))},
                       {"weights", json::Serialize(json::Value::MakeArray(weights))}});
}

std::vector<data::PreferencePair> LoadRoundPairs(const std::string& path, Generator* generator) {
  std::map<std::string, std::string> meta;
  nn::TensorMap tensors = nn::ReadSafetensors(path, &meta);
  auto get = [&](const std::string& key) {
    auto it = meta.find(key);
    SDPO_CHECK(it != meta.end(), path, ": metadata lacks '", key, "' (not a demo round file)");
    return it->second;
  };
  SDPO_CHECK(get("format") == kRoundFormat, path, ": format '", get("format"), "', expected '",
             kRoundFormat, "'");
  Generator g;
  const json::Value round = json::Parse(get("round"), path + " metadata round");
  g.round = static_cast<int>(round.as_int());
  SDPO_CHECK(g.round >= 0 && g.round < 100000, path, ": round ", g.round, " out of range");
  g.id = get("generator");
  g.adapters = get("adapters");
  if (!g.adapters.empty() && std::filesystem::path(g.adapters).is_relative()) {
    g.adapters = (std::filesystem::path(path).parent_path() / g.adapters).string();
  }
  SDPO_CHECK(g.id == GeneratorId(g.round), path, ": generator '", g.id, "' for round ", g.round,
             ", expected '", GeneratorId(g.round), "'");
  const json::Value ids = json::Parse(get("ids"), path + " metadata ids");
  const json::Value prompts = json::Parse(get("prompts"), path + " metadata prompts");
  const json::Value weights = json::Parse(get("weights"), path + " metadata weights");
  const size_t n = ids.as_array().size();
  SDPO_CHECK(
      prompts.as_array().size() == n && weights.as_array().size() == n && tensors.size() == 3 * n,
      path, ": ", n, " ids need as many prompts (", prompts.as_array().size(), "), weights (",
      weights.as_array().size(), ") and 3 tensors each (found ", tensors.size(), ")");
  std::vector<data::PreferencePair> pairs(n);
  for (size_t i = 0; i < n; ++i) {
    data::PreferencePair& p = pairs[i];
    p.id = ids.as_array()[i].as_string();
    p.prompt = prompts.as_array()[i].as_string();
    p.weight = weights.as_array()[i].as_double();
    p.generator = g.id;
    auto take = [&](const char* what) {
      auto it = tensors.find(absl::StrCat(i, "/", what));
      SDPO_CHECK(it != tensors.end(), path, ": pair ", i, " lacks tensor '", i, "/", what, "'");
      SDPO_CHECK(it->second.dtype() == kF32, path, ": tensor '", i, "/", what, "' is ",
                 DTypeName(it->second.dtype()), ", expected f32");
      return it->second;
    };
    p.winner = take("winner");
    p.loser = take("loser");
    p.context = take("context");
    SDPO_CHECK(p.winner.shape() == p.loser.shape(), path, ": pair ", i, " winner ", p.winner.str(),
               " and loser ", p.loser.str(), " differ in shape");
  }
  if (generator != nullptr) *generator = g;
  return pairs;
}

}  // namespace sdpo::demo
