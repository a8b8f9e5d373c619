// The one validation of a TrainerConfig. Every message names the //trainers:sdpo flag that sets the
// field and the value found (--lr=inf, --beta=nan, --save_every=-1, ...), so that a bad value is
// refused before any model or data is loaded. The Trainer calls it too.
#pragma once

#include "trainers/trainer.h"

namespace sdpo::trainers {

void CheckTrainerConfig(const TrainerConfig& config);

}  // namespace sdpo::trainers
