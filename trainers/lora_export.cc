#include "trainers/lora_export.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "models/wan21/checkpoint.h"
#include "nn/checkpoint_io.h"
#include "tensor/error.h"

namespace sdpo::trainers {

std::function<std::string(const std::string&)> LoraModuleRename(const std::string& model,
                                                                nn::LoraFormat format) {
  SDPO_CHECK(model == "wan21" || absl::StartsWith(model, "cogvideox"), "--model=", model,
             ": expected wan21 or cogvideox");
  const bool to_diffusers =
      model == "wan21" && (format == nn::LoraFormat::kPeft || format == nn::LoraFormat::kDiffusers);
  if (!to_diffusers) return nullptr;
  return [](const std::string& path) {
    // The parameter-name table of the Wan2.1 loader, applied to the layer's weight.
    const std::optional<std::string> name = wan21::OfficialToDiffusers(path + ".weight");
    SDPO_CHECK(name.has_value() && absl::EndsWith(*name, ".weight"), "LoRA export: '", path,
               "' has no diffusers name (not a Wan2.1 layer)");
    return name->substr(0, name->size() - 7);
  };
}

std::vector<std::string> WriteLoraAs(const nn::LoraWeights& weights, const std::string& model,
                                     nn::LoraFormat format, const std::string& out) {
  const nn::LoraExport e = nn::ConvertLora(weights, format, LoraModuleRename(model, format));
  if (format != nn::LoraFormat::kPeft) {
    nn::SaveSafetensors(out, e.tensors, e.metadata);
    return {out};
  }
  std::filesystem::create_directories(out);
  const std::string tensors = (std::filesystem::path(out) / "adapter_model.safetensors").string();
  const std::string config = (std::filesystem::path(out) / "adapter_config.json").string();
  nn::SaveSafetensors(tensors, e.tensors, e.metadata);
  std::ofstream f(config, std::ios::trunc);
  f << e.adapter_config_json << "\n";
  f.close();
  SDPO_CHECK(f.good(), config, ": write failed");
  return {tensors, config};
}

void WriteMergedWan(const std::string& checkpoint, const std::string& adapters,
                    const std::string& out, bool diffusers_names) {
  std::unique_ptr<wan21::WanModel> model = wan21::LoadModel(checkpoint);
  nn::LoadLora(*model, adapters);
  nn::MergeLora(*model);
  wan21::SaveWeights(
      *model, out, diffusers_names ? wan21::NameFormat::kDiffusers : wan21::NameFormat::kOfficial);
}

}  // namespace sdpo::trainers
