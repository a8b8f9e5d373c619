// CogVideoX forward on a case file, for parity checks against diffusers:
//
//   bazel run //models/cogvideox:forward -- --weights W.safetensors --config CONFIG.json
//       --inputs CASE.safetensors --out OUT.safetensors [--dtype f32|f64] [--threads N]
//       [--rope pipeline|slice|inputs]
//
// The case file holds in_hidden_states ([B, F, C, H, W]), in_encoder_hidden_states
// ([B, L, text_embed_dim]) and in_timestep ([B], any dtype), as in
// shared/fixtures/cogvideox/tiny_*.case*.safetensors. With --rope inputs (5B), in_rope_cos /
// in_rope_sin ([N, head_dim], repeat-interleaved as diffusers passes them) are used instead of
// computing the tables. The output file holds out_sample ([B, F, C, H, W], F32). The config comes
// from --config, else from the weights (__metadata__["config"] or a config.json next to them).
// --weights may be a file, a shard index or a directory. Relative paths are taken from the
// directory `bazel run` was started in.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "io/command_line.h"
#include "io/safetensors.h"
#include "models/cogvideox/checkpoint.h"
#include "models/cogvideox/model.h"
#include "models/forward_tool.h"
#include "models/forward_tool_flags.h"
#include "tensor/ops.h"

ABSL_FLAG(std::string, rope, "pipeline",
          "rotary tables: pipeline (diffusers' grid) | slice | inputs (the case file's)");

namespace {

using namespace sdpo;  // NOLINT
using forward_tool::ReadCaseTensor;

constexpr char kUsage[] =
    "usage: forward --weights W.safetensors --inputs CASE.safetensors --out OUT.safetensors\n"
    "               [--config CONFIG.json] [--dtype f32|f64] [--threads N]\n"
    "               [--rope pipeline|slice|inputs]\n"
    "CogVideoX forward on a case file (flags as --name=value or --name value).\n";

// [N, hd] repeat-interleaved -> [N, hd / 2].
Tensor Half(const Tensor& full) {
  SDPO_CHECK(full.dim() == 2 && full.size(1) % 2 == 0, "rope table must be [N, head_dim], got ",
             full.str());
  const int64_t n = full.size(0), hd = full.size(1);
  std::vector<double> v = full.ToVector(), out;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < hd; j += 2) out.push_back(v[i * hd + j]);
  }
  return Tensor::FromVector(out, {n, hd / 2}, full.dtype());
}

int Run(int argc, char** argv) {
  const forward_tool::ToolFlags flags = forward_tool::ParseToolFlags(argc, argv, kUsage);
  const DType dtype = flags.dtype;
  const std::string dtype_name = DTypeName(dtype);
  const std::string rope_mode = absl::GetFlag(FLAGS_rope);
  SDPO_CHECK(rope_mode == "pipeline" || rope_mode == "slice" || rope_mode == "inputs",
             "--rope must be pipeline, slice or inputs, got ", rope_mode);

  std::optional<cogvideox::CogVideoXConfig> config;
  if (!flags.config.empty()) config = cogvideox::CogVideoXConfig::FromFile(flags.config);
  auto t0 = std::chrono::steady_clock::now();
  cogvideox::LoadReport report;
  std::unique_ptr<cogvideox::CogVideoXModel> model =
      cogvideox::LoadModel(flags.weights, config, {}, &report);
  if (dtype == kF64) {
    model->CastParameters(kF64);
    model->SetComputeDType(kF64);
  }
  model->SetRopeGrid(rope_mode == "slice" ? cogvideox::RopeGrid::kSlice
                                          : cogvideox::RopeGrid::kPipeline);
  std::fprintf(stderr, "weights: %s (%lld tensors, %lld values), config %s\n", report.path.c_str(),
               static_cast<long long>(report.tensors), static_cast<long long>(report.values),
               model->config().ToJson().c_str());

  const std::string& inputs_path = flags.inputs;
  std::unique_ptr<SafetensorsFile> in = SafetensorsFile::Open(inputs_path);
  Tensor x = ReadCaseTensor(*in, "in_hidden_states", dtype);
  Tensor ctx = ReadCaseTensor(*in, "in_encoder_hidden_states", dtype);
  Tensor t = ReadCaseTensor(*in, "in_timestep", kF64);
  cogvideox::ForwardOptions options;
  nn::RotaryTables rope;
  if (rope_mode == "inputs") {
    const std::string sfx = dtype == kF64 && in->contains("in_rope_cos_f64") ? "_f64" : "";
    rope.cos = Half(ReadCaseTensor(*in, "in_rope_cos" + sfx, dtype));
    rope.sin = Half(ReadCaseTensor(*in, "in_rope_sin" + sfx, dtype));
    options.rope = &rope;
  }
  Tensor out;
  {
    NoGradGuard no_grad;
    out = model->ForwardBatch(x, ctx, ops::Reshape(t, {t.numel()}), options);
  }
  auto t1 = std::chrono::steady_clock::now();

  forward_tool::CheckFiniteOutput(out, "out_sample");
  Tensor o = ops::Contiguous(ops::Cast(out, kF32));
  std::vector<TensorToWrite> write = {
      {"out_sample", SafetensorsDType::kF32, o.shape(), o.raw_data(), o.nbytes()}};
  const std::string& out_path = flags.out;
  WriteSafetensors(out_path, write,
                   {{"config", model->config().ToJson()},
                    {"weights", report.path},
                    {"inputs", inputs_path},
                    {"compute_dtype", dtype_name},
                    {"rope", rope_mode}});
  std::fprintf(stderr, "wrote out_sample %s to %s (%.3f s)\n", ShapeStr(o.shape()).c_str(),
               out_path.c_str(), std::chrono::duration<double>(t1 - t0).count());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sdpo::RunReportingErrors("forward", [&] { return Run(argc, argv); });
}
