// Preference objectives (Diffusion-DPO, DPO-C&M, SDPO) on per-sample errors, as the trainer
// evaluates them (sdpo/objectives.h has every field and docs/objectives.md every formula).
#pragma once

#include <map>
#include <string>

#include "sdpo/objectives.h"

namespace sdpo::engine {

using sdpo::ObjectiveConfig;  // the objective and its options
using sdpo::ObjectiveResult;  // loss, d loss / d policy errors, per-pair terms
using sdpo::PairBatch;        // per pair: time point, policy and reference errors

// kind: dpo | dpo-cm | sdpo (recommended defaults); beta > 0 overrides the default beta;
// options: sdpo/objectives.h SetObjectiveOption keys (tau, eps, sdpo_reading, ...).
ObjectiveConfig MakeObjective(const std::string& kind, double beta = 0,
                              const std::map<std::string, std::string>& options = {});

// The objective on a batch of pairs' errors.
ObjectiveResult EvaluateObjective(const ObjectiveConfig& config, const PairBatch& batch);

}  // namespace sdpo::engine
