// The T5 encoder on a case file, for parity checks against other
// implementations:
//
//   bazel run //models/umt5:encode -- --weights W.safetensors --inputs
//   CASE.safetensors
//       --out OUT.safetensors [--config t5_config.json] [--dtype f32|f64]
//       [--compute f32|bf16] [--threads N]
//
// The case file holds `ids` [B, L] and optionally `mask` [B, L] (nonzero =
// token; without it every key is attended to, as CogVideoX runs T5 v1.1), as in
// shared/fixtures/umt5 and shared/fixtures/t5. The output holds `hidden` [B, L,
// dim] (F32, padded rows included) and `context_i` [n_i, dim], the rows the Wan
// pipeline keeps (n_i = tokens of sample i; only when a mask is given). The
// config: --config, else a t5_config.json beside the weights, else the tensor
// shapes. Relative paths are taken from the directory `bazel run` was started
// in.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/command_line.h"
#include "io/safetensors.h"
#include "models/forward_tool.h"
#include "models/forward_tool_flags.h"
#include "models/umt5/checkpoint.h"
#include "models/umt5/model.h"
#include "tensor/ops.h"

ABSL_FLAG(std::string, compute, "f32",
          "the projections' inputs: f32 | bf16 (rounded to bf16, f32 accumulation; docs/text.md)");
ABSL_FLAG(int64_t, repeat, 1, "run the encoder this many times (timing; the output is the last)");

namespace {

using namespace sdpo;  // NOLINT
using forward_tool::ReadCaseTensor;

constexpr char kUsage[] =
    "usage: encode --weights W.safetensors --inputs CASE.safetensors --out "
    "OUT.safetensors\n"
    "              [--config t5_config.json] [--dtype f32|f64] [--compute f32|bf16]\n"
    "              [--threads N] [--repeat N]\n"
    "The T5 encoder on a case file (flags as --name=value or --name value).\n";

// User + system CPU time of the process so far (all threads): on a shared machine a forward's
// CPU time says more than its wall time, which includes the other tenants' turns.
double ProcessCpuSeconds() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

int Run(int argc, char** argv) {
  const forward_tool::ToolFlags flags = forward_tool::ParseToolFlags(argc, argv, kUsage);
  const DType dtype = flags.dtype;
  const umt5::ProjectionInputs inputs =
      umt5::ParseProjectionInputs(absl::GetFlag(FLAGS_compute), "--compute");
  SDPO_CHECK(inputs == umt5::ProjectionInputs::kF32 || dtype == kF32,
             "--compute=bf16 needs --dtype=f32");
  auto t0 = std::chrono::steady_clock::now();
  umt5::LoadOptions options;
  if (!flags.config.empty()) options.config = umt5::T5Config::FromFile(flags.config);
  umt5::LoadReport report;
  auto encoder = umt5::LoadEncoder(flags.weights, options, &report);
  encoder->SetComputeDType(dtype);
  encoder->SetProjectionInputs(inputs);
  std::fprintf(stderr, "weights: %s (%s names, %lld tensors, %lld values), config %s from %s\n",
               report.path.c_str(), umt5::NameFormatName(report.format),
               static_cast<long long>(report.tensors), static_cast<long long>(report.values),
               encoder->config().ToJson().c_str(), report.config_source.c_str());

  const std::string& inputs_path = flags.inputs;
  std::unique_ptr<SafetensorsFile> in = SafetensorsFile::Open(inputs_path);
  const Tensor ids = ReadCaseTensor(*in, "ids", kI64);
  Tensor mask;
  if (in->contains("mask")) mask = ReadCaseTensor(*in, "mask", kI64);
  const int64_t repeat = absl::GetFlag(FLAGS_repeat);
  SDPO_CHECK(repeat > 0, "--repeat must be a positive integer, got ", repeat);
  auto t1 = std::chrono::steady_clock::now();
  const double load_s = std::chrono::duration<double>(t1 - t0).count();
  Tensor hidden;
  std::vector<std::string> forward_s, forward_cpu_s;
  for (int64_t r = 0; r < repeat; ++r) {
    NoGradGuard no_grad;
    hidden = Tensor();  // the previous output is not kept alive during the next forward
    const double cpu0 = ProcessCpuSeconds();
    auto start = std::chrono::steady_clock::now();
    hidden = encoder->Forward(ids, mask);
    forward_s.push_back(absl::StrCat(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
    forward_cpu_s.push_back(absl::StrCat(ProcessCpuSeconds() - cpu0));
  }

  std::vector<Tensor> keep = {ops::Contiguous(ops::Cast(hidden, kF32))};
  std::vector<std::string> names = {"hidden"};
  if (mask.defined()) {
    std::vector<Tensor> contexts = umt5::TrimToTokens(keep[0], mask);
    for (size_t i = 0; i < contexts.size(); ++i) {
      keep.push_back(ops::Contiguous(contexts[i]));
      names.push_back(absl::StrCat("context_", i));
    }
  }
  std::vector<TensorToWrite> write;
  for (size_t i = 0; i < keep.size(); ++i) {
    write.push_back(
        {names[i], SafetensorsDType::kF32, keep[i].shape(), keep[i].raw_data(), keep[i].nbytes()});
  }
  const std::string& out_path = flags.out;
  WriteSafetensors(out_path, write,
                   {{"config", encoder->config().ToJson()},
                    {"weights", report.path},
                    {"inputs", inputs_path},
                    {"compute_dtype", DTypeName(dtype)},
                    {"projection_inputs", umt5::ProjectionInputsName(inputs)}});
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  std::fprintf(stderr, "wrote hidden %s to %s\n", ShapeStr(hidden.shape()).c_str(),
               out_path.c_str());
  std::fprintf(stderr,
               "{\"load_s\": %.3f, \"forward_s\": [%s], \"forward_cpu_s\": [%s], "
               "\"peak_rss_mb\": %.1f}\n",
               load_s, absl::StrJoin(forward_s, ", ").c_str(),
               absl::StrJoin(forward_cpu_s, ", ").c_str(), usage.ru_maxrss / 1024.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sdpo::RunReportingErrors("encode", [&] { return Run(argc, argv); });
}
