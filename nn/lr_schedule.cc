#include "nn/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "tensor/error.h"

namespace sdpo::nn {

LrScheduleKind ParseLrScheduleKind(const std::string& name) {
  if (name == "constant") return LrScheduleKind::kConstant;
  if (name == "constant_with_warmup") return LrScheduleKind::kConstantWithWarmup;
  if (name == "cosine" || name == "cosine_with_warmup") return LrScheduleKind::kCosineWithWarmup;
  SDPO_FAIL("unknown learning-rate schedule '", name,
            "' (expected constant, constant_with_warmup or cosine)");
}

const char* LrScheduleKindName(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::kConstant:
      return "constant";
    case LrScheduleKind::kConstantWithWarmup:
      return "constant_with_warmup";
    case LrScheduleKind::kCosineWithWarmup:
      return "cosine";
  }
  return "?";
}

void LrSchedule::Validate() const {
  SDPO_CHECK(base_lr >= 0, "LrSchedule: base_lr must be non-negative, got ", base_lr);
  SDPO_CHECK(warmup_steps >= 0, "LrSchedule: warmup_steps must be non-negative, got ",
             warmup_steps);
  SDPO_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1,
             "LrSchedule: min_lr_ratio must be in [0, 1], "
             "got ",
             min_lr_ratio);
  if (kind == LrScheduleKind::kCosineWithWarmup) {
    SDPO_CHECK(total_steps > 0 && total_steps >= warmup_steps,
               "LrSchedule: cosine needs "
               "total_steps >= warmup_steps and > 0, got total ",
               total_steps, ", warmup ", warmup_steps);
  }
}

double LrSchedule::Factor(int64_t step) const {
  Validate();
  SDPO_CHECK(step >= 0, "LrSchedule: negative step ", step);
  if (kind == LrScheduleKind::kConstant) return 1.0;
  if (step < warmup_steps) {
    return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  }
  if (kind == LrScheduleKind::kConstantWithWarmup) return 1.0;
  double progress = static_cast<double>(step - warmup_steps) /
                    static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  progress = std::min(progress, 1.0);
  double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return min_lr_ratio + (1.0 - min_lr_ratio) * cosine;
}

}  // namespace sdpo::nn
