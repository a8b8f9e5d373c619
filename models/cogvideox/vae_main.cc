// CogVideoX VAE on a case file, for parity checks against diffusers' `AutoencoderKLCogVideoX`:
//
//   bazel run //models/cogvideox:vae -- --weights W --inputs CASE.safetensors
//       --out OUT.safetensors [--config CONFIG.json] [--dtype f32|f64] [--threads N] [--nobatched]
//       [--device cpu|cuda|cuda:N] [--tiling off|on|HxW:SHxSW]
//
// W: a diffusers `vae/` folder, a .safetensors file or a shard index. A case holding `x`
// ([B, 3, T, H, W] in [-1, 1]) is encoded: the output holds `mean`, `logvar` and
// `latents` (= mean * scaling_factor). A case holding `z` ([B, 16, Tl, h, w], already divided by
// scaling_factor) is decoded: `video` (not clamped). Outputs are F32 (F64 with --dtype f64). The
// config comes from --config, else a config.json in / next to the weights, else the
// CogVideoX-2B values. --nobatched runs the clip as one piece instead of the official frame
// batches (different numbers). Relative paths are taken from the directory `bazel run` was
// started in. --device=cuda runs the VAE on a GPU (the outputs come back to the host and are
// written the same way). --tiling cuts the frames into tiles as diffusers' enable_tiling() (the
// tiled cases of tests/models/cogvideox/testdata/tiled).
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "io/command_line.h"
#include "io/safetensors.h"
#include "models/cogvideox/vae.h"
#include "models/forward_tool.h"
#include "models/forward_tool_flags.h"
#include "tensor/ops.h"

ABSL_FLAG(bool, batched, true,
          "the official frame batches with the causal conv cache; --nobatched: the clip as one "
          "piece");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:N");
ABSL_FLAG(std::string, tiling, "off",
          "diffusers' enable_tiling(): off | on (240x360 pixels every 200x288) | HxW:SHxSW");

namespace {

using namespace sdpo;  // NOLINT
using forward_tool::ReadCaseTensor;

constexpr char kUsage[] =
    "usage: vae --weights W --inputs CASE.safetensors --out OUT.safetensors\n"
    "           [--config CONFIG.json] [--dtype f32|f64] [--threads N] [--nobatched]\n"
    "           [--device cpu|cuda|cuda:N] [--tiling off|on|HxW:SHxSW]\n"
    "CogVideoX VAE on a case file: a case with x is encoded (mean, logvar, latents), a case\n"
    "with z (latents / scaling_factor) is decoded (video).\n";

int Run(int argc, char** argv) {
  const forward_tool::ToolFlags flags = forward_tool::ParseToolFlags(argc, argv, kUsage);
  const DType dtype = flags.dtype;

  std::optional<cogvideox::CogVideoXVaeConfig> config;
  if (!flags.config.empty()) config = cogvideox::CogVideoXVaeConfig::FromFile(flags.config);
  const Device device = forward_tool::ParseDevice(absl::GetFlag(FLAGS_device));
  auto t0 = std::chrono::steady_clock::now();
  cogvideox::VaeLoadReport report;
  std::unique_ptr<cogvideox::CogVideoXVae> vae =
      cogvideox::LoadVae(flags.weights, device, dtype, config, &report);
  std::fprintf(stderr, "weights: %s (%lld tensors, %lld values), config %s (%s)\n",
               report.path.c_str(), static_cast<long long>(report.tensors),
               static_cast<long long>(report.values), vae->config().ToJson().c_str(),
               config ? "--config" : report.config_source.c_str());

  const std::string& inputs_path = flags.inputs;
  std::unique_ptr<SafetensorsFile> in = SafetensorsFile::Open(inputs_path);
  cogvideox::VaeRunOptions options;
  options.batched = absl::GetFlag(FLAGS_batched);
  options.tiling = cogvideox::ParseVaeTiling(absl::GetFlag(FLAGS_tiling), "--tiling");

  std::map<std::string, Tensor> outputs;
  if (in->contains("x")) {
    cogvideox::VaeEncoding e = vae->Encode(ReadCaseTensor(*in, "x", dtype), options);
    outputs = {{"mean", e.mean}, {"logvar", e.logvar}, {"latents", e.latents}};
  } else {
    SDPO_CHECK(in->contains("z"), inputs_path,
               ": holds neither x (a video to encode) nor z (a latent to decode)");
    outputs = {{"video", vae->DecodeUnscaled(ReadCaseTensor(*in, "z", dtype), options)}};
  }
  auto t1 = std::chrono::steady_clock::now();

  const std::string& out_path = flags.out;
  const size_t written =
      forward_tool::WriteOutputs(out_path, outputs, dtype,
                                 {{"config", vae->config().ToJson()},
                                  {"weights", report.path},
                                  {"inputs", inputs_path},
                                  {"compute_dtype", DTypeName(dtype)},
                                  {"batched", options.batched ? "true" : "false"},
                                  {"tiling", options.tiling ? options.tiling->str() : "off"}});
  std::fprintf(stderr, "wrote %zu tensors to %s (%.3f s)\n", written, out_path.c_str(),
               std::chrono::duration<double>(t1 - t0).count());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sdpo::RunReportingErrors("vae", [&] { return Run(argc, argv); });
}
