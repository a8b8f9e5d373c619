// Parameter initialisation. Every initialiser draws from one counter-based (Philox) stream:
// (seed, offset) with the offset advancing by each tensor's size, so a model built in the same
// order from the same seed gets the same values on every device and thread count.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace sdpo::nn {

// Sets the seed of the initialisation stream and resets its offset to 0.
void SetInitSeed(uint64_t seed);

// U(-bound, bound), f32 (the master dtype).
Tensor InitUniform(const Shape& shape, double bound);
// N(0, std^2), f32.
Tensor InitNormal(const Shape& shape, double std);

// While one is alive (per thread), initialisers return zeros and draw nothing: for models whose
// weights are about to be loaded from a checkpoint.
class SkipInitGuard {
 public:
  SkipInitGuard();
  ~SkipInitGuard();
  SkipInitGuard(const SkipInitGuard&) = delete;
  SkipInitGuard& operator=(const SkipInitGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace sdpo::nn
