#include "models/forward_tool_flags.h"

#include <tuple>

#include "absl/flags/flag.h"
#include "io/command_line.h"
#include "models/forward_tool.h"
#include "tensor/error.h"
#include "tensor/thread_pool.h"

ABSL_FLAG(std::string, weights, "", "model weights: a .safetensors file, shard index or folder");
ABSL_FLAG(std::string, inputs, "", "the case file (.safetensors)");
ABSL_FLAG(std::string, out, "", "the output file (.safetensors)");
ABSL_FLAG(std::string, config, "", "model config JSON (default: from the weights)");
ABSL_FLAG(std::string, dtype, "f32", "compute dtype: f32 | f64");
ABSL_FLAG(int, threads, 0, "CPU threads (0: the default)");

namespace sdpo::forward_tool {

ToolFlags ParseToolFlags(int argc, char** argv, const std::string& usage) {
  sdpo::ParseCommandLine(argc, argv, usage);
  ToolFlags flags;
  for (const auto& [name, value, out] :
       {std::tuple("weights", absl::GetFlag(FLAGS_weights), &flags.weights),
        std::tuple("inputs", absl::GetFlag(FLAGS_inputs), &flags.inputs),
        std::tuple("out", absl::GetFlag(FLAGS_out), &flags.out)}) {
    SDPO_CHECK(!value.empty(), "missing --", name, "\n", usage);
    *out = Resolve(value);
  }
  if (!absl::GetFlag(FLAGS_config).empty()) flags.config = Resolve(absl::GetFlag(FLAGS_config));
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  SDPO_CHECK(dtype == "f32" || dtype == "f64", "--dtype must be f32 or f64, got ", dtype);
  flags.dtype = dtype == "f64" ? kF64 : kF32;
  if (absl::GetFlag(FLAGS_threads) > 0) SetNumThreads(absl::GetFlag(FLAGS_threads));
  return flags;
}

}  // namespace sdpo::forward_tool
