// Wan2.1 forward on a case file, for parity checks against other implementations:
//
//   bazel run //models/wan21:forward -- --weights W.safetensors --inputs CASE.safetensors
//       --out OUT.safetensors [--config CONFIG.json] [--dtype f32|f64] [--threads N]
//
// The case file holds x_0 .. x_{B-1} ([16, F, H, W]), t ([B]), context_0 .. context_{B-1}
// ([L_i, text_dim]) and optionally seq_len ([1], the token padding length; default: the longest
// sample), as in shared/fixtures/wan21/tiny_a.case*.safetensors. The output file holds out_i
// ([16, F, H, W], F32) for every sample. The config comes from --config, else from the weights
// (__metadata__["config"], a config.json next to them, or the shapes with head_dim 128).
// Relative paths are taken from the directory `bazel run` was started in.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "io/command_line.h"
#include "io/safetensors.h"
#include "models/forward_tool.h"
#include "models/forward_tool_flags.h"
#include "models/wan21/checkpoint.h"
#include "models/wan21/model.h"
#include "tensor/ops.h"

namespace {

using namespace sdpo;  // NOLINT
using forward_tool::ReadCaseTensor;

constexpr char kUsage[] =
    "usage: forward --weights W.safetensors --inputs CASE.safetensors --out OUT.safetensors\n"
    "               [--config CONFIG.json] [--dtype f32|f64] [--threads N]\n"
    "Wan2.1 forward on a case file (flags as --name=value or --name value).\n";

int Run(int argc, char** argv) {
  const forward_tool::ToolFlags flags = forward_tool::ParseToolFlags(argc, argv, kUsage);
  const DType dtype = flags.dtype;
  const std::string dtype_name = DTypeName(dtype);

  std::optional<wan21::WanConfig> config;
  if (!flags.config.empty()) config = wan21::WanConfig::FromFile(flags.config);
  auto t0 = std::chrono::steady_clock::now();
  wan21::LoadReport report;
  std::unique_ptr<wan21::WanModel> model = wan21::LoadModel(flags.weights, config, {}, &report);
  if (dtype == kF64) {
    model->CastParameters(kF64);
    model->SetComputeDType(kF64);
  }
  std::fprintf(stderr, "weights: %s (%s names, %lld tensors, %lld values), config %s\n",
               report.path.c_str(), wan21::NameFormatName(report.format),
               static_cast<long long>(report.tensors), static_cast<long long>(report.values),
               model->config().ToJson().c_str());

  const std::string& inputs_path = flags.inputs;
  std::unique_ptr<SafetensorsFile> in = SafetensorsFile::Open(inputs_path);
  std::vector<Tensor> xs, ctxs;
  for (int i = 0; in->contains(absl::StrCat("x_", i)); ++i) {
    xs.push_back(ReadCaseTensor(*in, absl::StrCat("x_", i), dtype));
    SDPO_CHECK(in->contains(absl::StrCat("context_", i)), inputs_path, ": has x_", i,
               " but no context_", i);
    ctxs.push_back(ReadCaseTensor(*in, absl::StrCat("context_", i), dtype));
  }
  SDPO_CHECK(!xs.empty(), inputs_path, ": no x_0 (expected x_0 .. x_{B-1}, t, context_i)");
  Tensor t = ReadCaseTensor(*in, "t", kF64);
  SDPO_CHECK(t.numel() == static_cast<int64_t>(xs.size()), inputs_path, ": t has ", t.numel(),
             " values for ", xs.size(), " samples");
  wan21::ForwardOptions options;
  if (in->contains("seq_len")) {
    options.seq_len = static_cast<int64_t>(ReadAsF64(in->at("seq_len")).at(0));
  }

  std::vector<Tensor> outs;
  {
    NoGradGuard no_grad;
    outs = model->ForwardList(xs, ops::Reshape(t, {t.numel()}), ctxs, options);
  }
  auto t1 = std::chrono::steady_clock::now();

  std::vector<Tensor> keep;
  std::vector<TensorToWrite> write;
  for (size_t i = 0; i < outs.size(); ++i) {
    forward_tool::CheckFiniteOutput(outs[i], absl::StrCat("out_", i));
    Tensor o = ops::Contiguous(ops::Cast(outs[i], kF32));
    keep.push_back(o);
    write.push_back(
        {absl::StrCat("out_", i), SafetensorsDType::kF32, o.shape(), o.raw_data(), o.nbytes()});
  }
  const std::string& out_path = flags.out;
  WriteSafetensors(out_path, write,
                   {{"config", model->config().ToJson()},
                    {"weights", report.path},
                    {"inputs", inputs_path},
                    {"compute_dtype", dtype_name},
                    {"seq_len", std::to_string(options.seq_len)}});
  std::fprintf(stderr, "wrote %zu outputs to %s (%.3f s)\n", outs.size(), out_path.c_str(),
               std::chrono::duration<double>(t1 - t0).count());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sdpo::RunReportingErrors("forward", [&] { return Run(argc, argv); });
}
