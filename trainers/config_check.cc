#include "trainers/config_check.h"

#include <cmath>

#include "tensor/error.h"

namespace sdpo::trainers {

void CheckTrainerConfig(const TrainerConfig& c) {
  SDPO_CHECK(c.steps > 0, "--steps=", c.steps, ": the number of optimizer steps must be > 0");
  SDPO_CHECK(c.batch > 0, "--batch=", c.batch, ": pairs per micro-batch must be > 0");
  SDPO_CHECK(c.grad_accum > 0, "--grad_accum=", c.grad_accum,
             ": micro-batches per step must be > 0");
  SDPO_CHECK(std::isfinite(c.lr.base_lr) && c.lr.base_lr > 0, "--lr=", c.lr.base_lr,
             ": the peak learning rate must be a finite number > 0");
  SDPO_CHECK(c.lr.warmup_steps >= 0, "--warmup=", c.lr.warmup_steps, ": warmup steps must be >= 0");
  SDPO_CHECK(std::isfinite(c.weight_decay) && c.weight_decay >= 0, "weight_decay=", c.weight_decay,
             ": must be a finite number >= 0");
  SDPO_CHECK(std::isfinite(c.max_grad_norm), "--max_grad_norm=", c.max_grad_norm,
             ": must be a finite number (<= 0 turns clipping off)");
  SDPO_CHECK(c.eval_every >= 0, "--eval_every=", c.eval_every,
             ": must be >= 0 (0: evaluate before and after only)");
  SDPO_CHECK(c.save_every >= 0, "--save_every=", c.save_every,
             ": must be >= 0 (0: checkpoint at the end only)");
  SDPO_CHECK(c.max_bad_steps >= 1, "--max_bad_steps=", c.max_bad_steps,
             ": must be >= 1 (consecutive NaN/Inf steps before the run stops)");
  SDPO_CHECK(c.zero_stage == 0 || c.zero_stage == 1, "--zero=", c.zero_stage,
             ": expected 0 (replicated optimizer) or 1 (ZeRO-1)");
  SDPO_CHECK(std::isfinite(c.objective.beta) && c.objective.beta > 0, "--beta=", c.objective.beta,
             ": DPO beta must be a finite number > 0 (leave the flag out for "
             "the objective's "
             "default)");
  try {
    ValidateObjectiveConfig(c.objective);
    c.lr.Validate();
  } catch (const Error& e) {
    SDPO_FAIL("--objective / --objective_option / --schedule: ", e.what());
  }
}

}  // namespace sdpo::trainers
