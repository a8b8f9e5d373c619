// Random parameter values for the full-size benchmarks (no released weights needed): values by
// role that keep every activation of a conv / norm network O(1).
#pragma once

#include <cstdint>
#include <string>

#include "nn/module.h"

namespace sdpo::bench {

// Every parameter of `module`, by name and shape: gains (names ending in "gamma", or 1-D
// "weight"s: norm scales) 1 + 0.1 N(0, 1), biases 0.05 N(0, 1), other weights N(0, 1 / fan_in)
// with fan_in = numel / size(0). The stream is seeded by `seed` and the parameter's position.
void RandomizeParameters(nn::Module& module, uint64_t seed);

// Checks that `module`'s parameters are exactly the names and shapes of a names list
// ({"tensors": [{"name": ..., "shape": [...]}, ...]}, as the fixtures'
// `*_full.names.json`); an error names the first difference.
void CheckNamesList(const nn::Module& module, const std::string& path);

}  // namespace sdpo::bench
