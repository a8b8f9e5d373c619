// Wan2.1 VAE on a case file, for parity checks against the official `WanVAE_`:
//
//   bazel run //models/wan21:vae -- --weights W.safetensors --inputs CASE.safetensors
//       --out OUT.safetensors [--config CONFIG.json] [--dtype f32|f64] [--threads N] [--nochunked]
//       [--device cpu|cuda|cuda:N]
//
// A case holding `x` ([B, 3, T, H, W]) is encoded: the output holds `mu` (normalised), `mu_raw`
// and `log_var`. A case holding `z` ([B, z_dim, T, h, w], normalised) is decoded: `video_raw`
// (the decoder output) and `video` (clamped to [-1, 1], the batch dim squeezed when it is 1).
// The latent scale comes from the case's `scale_mean` and `scale_inv_std` when present, else the
// official constants. Outputs are F32 (F64 with --dtype f64). The config comes from --config,
// else a vae_config.json next to the weights, else the released model's. --nochunked runs one
// pass over the clip instead of the official chunks. Relative paths are taken from the directory
// `bazel run` was started in. --device=cuda runs the VAE on a GPU (the outputs come back to the
// host and are written the same way).
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "io/command_line.h"
#include "io/safetensors.h"
#include "models/forward_tool.h"
#include "models/forward_tool_flags.h"
#include "models/wan21/vae.h"
#include "tensor/ops.h"

ABSL_FLAG(bool, chunked, true,
          "the official chunking with the causal cache; --nochunked: one pass "
          "over the clip");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:N");

namespace {

using namespace sdpo;  // NOLINT
using forward_tool::ReadCaseTensor;

constexpr char kUsage[] =
    "usage: vae --weights W.safetensors --inputs CASE.safetensors --out OUT.safetensors\n"
    "           [--config CONFIG.json] [--dtype f32|f64] [--threads N] [--nochunked]\n"
    "           [--device cpu|cuda|cuda:N]\n"
    "Wan2.1 VAE on a case file: a case with x is encoded (mu, mu_raw, log_var), a case with z\n"
    "is decoded (video_raw, video); scale_mean / scale_inv_std in the case replace the official\n"
    "latent statistics.\n";

int Run(int argc, char** argv) {
  const forward_tool::ToolFlags flags = forward_tool::ParseToolFlags(argc, argv, kUsage);
  const DType dtype = flags.dtype;

  std::optional<wan21::WanVaeConfig> config;
  if (!flags.config.empty()) config = wan21::WanVaeConfig::FromFile(flags.config);
  auto t0 = std::chrono::steady_clock::now();
  wan21::VaeLoadReport report;
  std::unique_ptr<wan21::WanVae> vae = wan21::LoadVae(flags.weights, config, &report);
  if (dtype == kF64) vae->CastParameters(kF64);
  const Device device = forward_tool::ParseDevice(absl::GetFlag(FLAGS_device));
  vae->ToDevice(device);
  std::fprintf(stderr, "weights: %s (%lld tensors, %lld values), config %s (%s)\n",
               report.path.c_str(), static_cast<long long>(report.tensors),
               static_cast<long long>(report.values), vae->config().ToJson().c_str(),
               config ? "--config" : report.config_source.c_str());

  const std::string& inputs_path = flags.inputs;
  std::unique_ptr<SafetensorsFile> in = SafetensorsFile::Open(inputs_path);
  wan21::VaeScale scale;
  if (in->contains("scale_mean") || in->contains("scale_inv_std")) {
    SDPO_CHECK(in->contains("scale_mean") && in->contains("scale_inv_std"), inputs_path,
               ": holds only one of scale_mean and scale_inv_std");
    scale.mean = ReadCaseTensor(*in, "scale_mean", dtype);
    scale.inv_std = ReadCaseTensor(*in, "scale_inv_std", dtype);
  }
  wan21::VaeRunOptions options;
  options.chunked = absl::GetFlag(FLAGS_chunked);

  std::map<std::string, Tensor> outputs;
  if (in->contains("x")) {
    wan21::VaeEncoding e = vae->Encode(ReadCaseTensor(*in, "x", dtype), scale, options);
    outputs = {{"mu", e.mu}, {"mu_raw", e.mu_raw}, {"log_var", e.log_var}};
  } else {
    SDPO_CHECK(in->contains("z"), inputs_path,
               ": holds neither x (a video to encode) nor z (a latent to decode)");
    Tensor raw = vae->DecodeRaw(ReadCaseTensor(*in, "z", dtype), scale, options);
    Tensor video = ops::Clamp(raw, -1.0, 1.0);
    if (video.size(0) == 1) video = ops::Squeeze(video, 0);
    outputs = {{"video_raw", raw}, {"video", video}};
  }
  auto t1 = std::chrono::steady_clock::now();

  const std::string& out_path = flags.out;
  const size_t written =
      forward_tool::WriteOutputs(out_path, outputs, dtype,
                                 {{"config", vae->config().ToJson()},
                                  {"weights", report.path},
                                  {"inputs", inputs_path},
                                  {"compute_dtype", DTypeName(dtype)},
                                  {"chunked", options.chunked ? "true" : "false"}});
  std::fprintf(stderr, "wrote %zu tensors to %s (%.3f s)\n", written, out_path.c_str(),
               std::chrono::duration<double>(t1 - t0).count());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sdpo::RunReportingErrors("vae", [&] { return Run(argc, argv); });
}
