// Rounds of on-policy data for the demo (`--rounds=K`): each round samples new pairs from the
// current policy, ranks them with the world's reward and adds them to a buffer that keeps every
// earlier round's pairs, so that most of the data comes from older policies. Each pair records
// its generator (round, adapter checkpoint), so that ratios against it can be computed
// (weight_source=generator, docs/objectives.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainers/data/preference_dataset.h"

namespace sdpo::demo {

// The policy that generated a round's pairs.
struct Generator {
  int round = 0;
  std::string id;        // GeneratorId(round): "" for round 0 (the base model = the reference)
  std::string adapters;  // its trainable parameters (safetensors), "" for the base model
};

// "" for round 0 (pairs of the reference model), "round<r>" after.
std::string GeneratorId(int round);

// The step at which round r of `rounds` ends: (r + 1) * total_steps / rounds (integer division),
// so the last round ends at total_steps. Throws unless 1 <= rounds <= total_steps, 0 <= r < rounds.
int64_t RoundEndStep(int64_t total_steps, int rounds, int r);
// The round that trains step `step` + 1 (a checkpoint at `step` resumes in it): the smallest r
// with step < RoundEndStep(r); `rounds` when step >= total_steps.
int RoundOfStep(int64_t total_steps, int rounds, int64_t step);

// Every round's pairs, in round order; pair.generator is set to its round's generator id.
class PairBuffer {
 public:
  // Appends round `generator.round`, which must be the next one (rounds are added in order).
  void AddRound(const Generator& generator, std::vector<data::PreferencePair> pairs);
  int rounds() const { return static_cast<int>(generators_.size()); }
  const std::vector<Generator>& generators() const { return generators_; }
  const std::vector<data::PreferencePair>& pairs() const { return pairs_; }
  int64_t RoundSize(int round) const;

 private:
  std::vector<Generator> generators_;
  std::vector<int64_t> sizes_;
  std::vector<data::PreferencePair> pairs_;
};

// One round's pairs as a file (so that a resumed run trains on exactly the same buffer):
// tensors "<i>/winner", "<i>/loser", "<i>/context" and the ids, prompts, weights and generator
// in the metadata (the adapter path relative to the file's folder when it lies there). Loading
// checks everything (a hostile file gives an sdpo::Error naming it).
void SaveRoundPairs(const std::string& path, const Generator& generator,
                    const std::vector<data::PreferencePair>& pairs);
std::vector<data::PreferencePair> LoadRoundPairs(const std::string& path, Generator* generator);

}  // namespace sdpo::demo
