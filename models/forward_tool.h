// What the models' command-line tools (//models/wan21:forward, //models/cogvideox:forward,
// //models/umt5:encode and :tokenize) share: paths relative to where `bazel run` started, case
// tensors read from safetensors. Their common flags: forward_tool_flags.h.
#pragma once

#include <map>
#include <string>

#include "io/safetensors.h"
#include "tensor/tensor.h"

namespace sdpo::forward_tool {

// `path` relative to $BUILD_WORKING_DIRECTORY (set by `bazel run`) when it is relative.
std::string Resolve(const std::string& path);

// Tensor `name` of a case file, converted to `dtype`.
Tensor ReadCaseTensor(const SafetensorsFile& file, const std::string& name, DType dtype);

// Throws, naming the output and its first NaN/Inf, when `out` is not finite (the forward
// overflowed, or the inputs were not finite): a parity tool must not write it with exit code 0.
void CheckFiniteOutput(const Tensor& out, const std::string& name);

// Writes a tool's outputs to a safetensors file at `path`: each one checked by CheckFiniteOutput
// first (nothing is written when any fails), brought to the host and converted to `dtype` (F32
// or F64). `metadata` goes into the file's __metadata__. Returns the number of tensors written.
size_t WriteOutputs(const std::string& path, const std::map<std::string, Tensor>& outputs,
                    DType dtype, const std::map<std::string, std::string>& metadata);

// A tool's --device: cpu, cuda (GPU 0) or cuda:N. Throws with a clear message for anything else,
// and when CUDA is asked for but unavailable (no CUDA build, no GPU).
Device ParseDevice(const std::string& flag);

}  // namespace sdpo::forward_tool
