#include "engine/objective.h"

#include "tensor/error.h"

namespace sdpo::engine {

ObjectiveConfig MakeObjective(const std::string& kind, double beta,
                              const std::map<std::string, std::string>& options) {
  ObjectiveConfig c;
  if (kind == "dpo" || kind == "diffusion-dpo") {
    c = ObjectiveConfig::DiffusionDpo();
  } else if (kind == "dpo-cm" || kind == "dpo_cm") {
    c = ObjectiveConfig::DpoCm();
  } else {
    SDPO_CHECK(kind == "sdpo", "engine::MakeObjective: kind '", kind,
               "': expected dpo, dpo-cm or sdpo");
    c = ObjectiveConfig::Sdpo();
  }
  if (beta > 0) c.beta = beta;
  for (const auto& [key, value] : options) SetObjectiveOption(&c, key, value);
  ValidateObjectiveConfig(c);
  return c;
}

ObjectiveResult EvaluateObjective(const ObjectiveConfig& config, const PairBatch& batch) {
  ValidateObjectiveConfig(config);
  return sdpo::EvaluateObjective(config, batch);
}

}  // namespace sdpo::engine
