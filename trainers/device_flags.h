// The --device and --precision flags of the binaries (//trainers:sdpo, //trainers:sample).
#pragma once

#include <string>

#include "tensor/device.h"
#include "tensor/dtype.h"

namespace sdpo::trainers {

// --device: cpu, cuda (under mpirun: the local rank's GPU, else GPU 0) or cuda:N. Throws with a
// clear message when CUDA is asked for but unavailable (no CUDA build, no GPU).
Device ParseDevice(const std::string& flag);

// --precision: f32, or bf16 (CUDA only).
DType ParsePrecision(const std::string& flag, Device device);

}  // namespace sdpo::trainers
