// Learning-rate schedules, as functions of the optimizer step (0-based: the learning rate for
// the update that takes the step count from s to s + 1 is At(s)). The warmup and cosine shapes
// follow Hugging Face transformers' get_*_schedule_with_warmup, with an optional floor.
#pragma once

#include <cstdint>
#include <string>

namespace sdpo::nn {

enum class LrScheduleKind {
  kConstant,            // base_lr
  kConstantWithWarmup,  // base_lr * s / warmup for s < warmup, then base_lr
  kCosineWithWarmup,    // warmup as above, then a half cosine from base_lr to min_lr at total
};

// "constant", "constant_with_warmup", "cosine" (or "cosine_with_warmup"); throws otherwise.
LrScheduleKind ParseLrScheduleKind(const std::string& name);
const char* LrScheduleKindName(LrScheduleKind kind);

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kConstant;
  double base_lr = 1e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  // cosine: the step at which the rate reaches min_lr
  double min_lr_ratio = 0;  // cosine floor as a fraction of base_lr

  // Throws on inconsistent settings (negative steps, cosine without total_steps >= warmup).
  void Validate() const;
  // The multiplier of base_lr at step s (steps past total_steps stay at the floor).
  double Factor(int64_t step) const;
  double At(int64_t step) const { return base_lr * Factor(step); }
};

}  // namespace sdpo::nn
