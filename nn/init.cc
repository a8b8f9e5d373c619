#include "nn/init.h"

#include "tensor/ops.h"

namespace sdpo::nn {
namespace {
thread_local uint64_t init_seed = 0;
thread_local uint64_t init_offset = 0;
thread_local bool skip_init = false;

uint64_t Advance(const Shape& shape) {
  uint64_t offset = init_offset;
  init_offset += static_cast<uint64_t>(NumElements(shape));
  return offset;
}
}  // namespace

void SetInitSeed(uint64_t seed) {
  init_seed = seed;
  init_offset = 0;
}

Tensor InitUniform(const Shape& shape, double bound) {
  if (skip_init) return Tensor::Zeros(shape, kF32);
  Tensor u = ops::RandomUniform(shape, init_seed, Advance(shape), kF32);
  return ops::AddScalar(ops::MulScalar(u, 2 * bound), -bound);
}

Tensor InitNormal(const Shape& shape, double std) {
  if (skip_init) return Tensor::Zeros(shape, kF32);
  return ops::MulScalar(ops::RandomNormal(shape, init_seed, Advance(shape), kF32), std);
}

SkipInitGuard::SkipInitGuard() : previous_(skip_init) { skip_init = true; }
SkipInitGuard::~SkipInitGuard() { skip_init = previous_; }

}  // namespace sdpo::nn
