// The flags the models' parity tools (//models/wan21:forward, //models/cogvideox:forward,
// //models/umt5:encode) share: --weights, --inputs, --out, --config, --dtype, --threads.
#pragma once

#include <string>

#include "tensor/tensor.h"

namespace sdpo::forward_tool {

// The common flags, paths resolved.
struct ToolFlags {
  std::string weights, inputs, out;  // required
  std::string config;                // empty: from the weights
  DType dtype = kF32;                // --dtype f32 | f64
};

// Parses the command line (io/command_line.h) with the tool's own flags and the common ones
// (--weights, --inputs, --out, --config, --dtype, --threads: applied). Throws sdpo::Error, with
// `usage`, when a required flag is missing or --dtype is not f32 or f64.
ToolFlags ParseToolFlags(int argc, char** argv, const std::string& usage);

}  // namespace sdpo::forward_tool
