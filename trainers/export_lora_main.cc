// //trainers:export_lora — trained adapters (//trainers:sdpo's adapters.safetensors) for other
// tools, or the merged model:
//
//   bazel run //trainers:export_lora -- --adapters=$PWD/runs/sdpo/adapters.safetensors
//       --lora_format=comfyui --out=$PWD/wan_sdpo_lora.safetensors
//   bazel run //trainers:export_lora -- --adapters=... --lora_format=peft --out=$PWD/peft_adapter
//   bazel run //trainers:export_lora -- --adapters=... --merge --checkpoint=$PWD/Wan2.1-T2V-1.3B
//       --out=$PWD/merged/diffusion_pytorch_model.safetensors
#include <cstdio>
#include <filesystem>
#include <map>

#include "absl/flags/flag.h"
#include "io/command_line.h"
#include "nn/checkpoint_io.h"
#include "trainers/lora_export.h"
#include "trainers/sampling.h"

ABSL_FLAG(std::string, adapters, "", "adapters.safetensors written by //trainers:sdpo");
ABSL_FLAG(std::string, model, "wan21", "wan21 | cogvideox (the module names of the tools)");
ABSL_FLAG(std::string, lora_format, "comfyui",
          "peft (a directory) | diffusers | comfyui | native (the adapters' format)");
ABSL_FLAG(bool, merge, false, "write the merged DiT instead (needs --checkpoint)");
ABSL_FLAG(std::string, checkpoint, "", "--merge: the base Wan2.1 DiT (file, index or folder)");
ABSL_FLAG(std::string, names, "official", "--merge: official | diffusers parameter names");
ABSL_FLAG(std::string, out, "", "output file (peft: directory)");

namespace sdpo::trainers {
namespace {

int Main() {
  const std::string adapters = absl::GetFlag(FLAGS_adapters);
  const std::string out = absl::GetFlag(FLAGS_out);
  SDPO_CHECK(!adapters.empty() && !out.empty(), "--adapters and --out are required");
  if (absl::GetFlag(FLAGS_merge)) {
    std::string ckpt = absl::GetFlag(FLAGS_checkpoint);
    SDPO_CHECK(!ckpt.empty(),
               "--merge needs --checkpoint (the base DiT the adapters were "
               "trained on)");
    SDPO_CHECK(absl::GetFlag(FLAGS_model) == "wan21", "--merge: only wan21 for now");
    if (std::filesystem::is_directory(ckpt)) ckpt = FindWanCheckpoint(ckpt).dit;
    const std::string names = absl::GetFlag(FLAGS_names);
    SDPO_CHECK(names == "official" || names == "diffusers", "--names=", names,
               ": expected official or diffusers");
    WriteMergedWan(ckpt, adapters, out, names == "diffusers");
    std::printf("wrote the merged DiT (%s names) to %s\n", names.c_str(), out.c_str());
    return 0;
  }
  std::map<std::string, std::string> meta;
  nn::LoraWeights weights;
  weights.tensors = nn::ReadSafetensors(adapters, &meta);
  weights.metadata = meta;
  const nn::LoraFormat format = nn::ParseLoraFormat(absl::GetFlag(FLAGS_lora_format));
  for (const std::string& f : WriteLoraAs(weights, absl::GetFlag(FLAGS_model), format, out)) {
    std::printf("wrote %s (%s)\n", f.c_str(), nn::LoraFormatName(format));
  }
  return 0;
}

}  // namespace
}  // namespace sdpo::trainers

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv, "trained adapters for other tools (ComfyUI, PEFT) or merged into the model");
  return sdpo::RunReportingErrors("export_lora", [&] { return sdpo::trainers::Main(); });
}
