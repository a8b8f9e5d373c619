// The report's validation sections (trainers/validation.h): the held-out pairs' loss and
// accuracy over the evaluations, and the validation videos, one row per evaluation.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trainers/trainer.h"

namespace sdpo::trainers {

// Writes val_loss.svg and val_accuracy.svg into out_dir when the evaluations hold val_loss, and
// returns the markdown of both sections ("" when the run has neither).
std::string ValidationReportSections(const std::string& out_dir,
                                     const std::vector<std::pair<int64_t, EvalResult>>& evals);

}  // namespace sdpo::trainers
