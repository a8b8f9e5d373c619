// What the models' command-line tools (//models/wan21:forward, //models/cogvideox:forward,
// //models/umt5:encode and :tokenize) share: paths relative to where `bazel run` started, case
// tensors read from safetensors. Their common flags: forward_tool_flags.h.
#pragma once

#include <map>
#include <set>
#include <string>

#include "io/safetensors.h"
#include "tensor/tensor.h"

namespace sdpo::forward_tool {

// A hand-written parser for //models/umt5:tokenize, which cannot use Abseil flags
// (io/command_line.h): Debian's SentencePiece library carries its own copy of Abseil's flag
// symbols (absl::ParseCommandLine, absl::Flag<T>), and linked into the tokenize tool the two
// copies collide (Abseil flag parsing deadlocked there).
struct Flags {
  std::map<std::string, std::string> values;  // --name=value or --name value
  bool help = false;                          // --help / -h was given
  bool has(const std::string& name) const { return values.count(name) > 0; }
  const std::string& get(const std::string& name) const { return values.at(name); }
};

// Parses argv; throws sdpo::Error (with `usage`) for a non-flag argument, a flag without a
// value, a flag not in `allowed`, or a missing one of `required`.
Flags ParseFlags(int argc, char** argv, const std::set<std::string>& allowed,
                 const std::set<std::string>& required, const std::string& usage);

// `path` relative to $BUILD_WORKING_DIRECTORY (set by `bazel run`) when it is relative.
std::string Resolve(const std::string& path);

// Tensor `name` of a case file, converted to `dtype`.
Tensor ReadCaseTensor(const SafetensorsFile& file, const std::string& name, DType dtype);

// Throws, naming the output and its first NaN/Inf, when `out` is not finite (the forward
// overflowed, or the inputs were not finite): a parity tool must not write it with exit code 0.
void CheckFiniteOutput(const Tensor& out, const std::string& name);

}  // namespace sdpo::forward_tool
