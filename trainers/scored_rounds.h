// One round of scored preference pairs for a real Wan2.1 checkpoint (--reward_cmd): the current
// policy samples videos per prompt, they are decoded to mp4, a user's command scores them
// (trainers/reward_command.h), each two samples of a prompt form a (chosen, rejected) pair by
// score, and the pair's videos are read back and encoded by the VAE as //trainers:prepare does.
//
// The round's folder keeps what it made, so a run stopped by a failing scorer continues where
// it stopped: videos/p<P>_s<S>.mp4 (sampling is skipped when they all exist) and scores.json
// (the scorer is not called again once it holds every score).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/diffusion_model.h"
#include "trainers/data/preference_dataset.h"
#include "trainers/prepare.h"
#include "trainers/reward_command.h"
#include "trainers/sampling.h"

namespace sdpo::trainers {

struct ScoredRoundRequest {
  std::vector<std::string> prompts;  // the texts the scorer sees, one per context
  SamplingContexts contexts;         // their embeddings (+ the negative for guidance)
  VideoSampleRequest sample;         // latent shape, samples per prompt (even), seed, sampler
  PrepareOptions clip;               // frames, height, width and fps of the videos
  std::string dir;                   // the round's folder
  double min_gap = 0;                // pairs whose scores differ by no more are dropped
};

struct ScoredRoundStats {
  int64_t videos = 0, pairs = 0;
  bool sampled = false, scored = false;  // false: taken from the folder (a resumed round)
  double mean_score_winner = 0, mean_score_loser = 0;
};

// The video files of a round, prompt-major: videos/p<P>_s<S>.mp4.
std::vector<std::string> RoundVideoPaths(const ScoredRoundRequest& request);

// (chosen, rejected) indices into `scores` from consecutive samples of each prompt (samples
// 2i and 2i + 1 of prompt p), the higher score chosen; gaps <= min_gap dropped.
std::vector<std::pair<int64_t, int64_t>> PairsFromScores(const std::vector<double>& scores,
                                                         int64_t samples_per_prompt,
                                                         double min_gap);

std::vector<data::PreferencePair> ScoredRound(models::DiffusionModel& policy,
                                              WanVideoDecoder& decoder, VideoLatentEncoder& encoder,
                                              const RewardCommand& scorer,
                                              const ScoredRoundRequest& request,
                                              ScoredRoundStats* stats);

}  // namespace sdpo::trainers
