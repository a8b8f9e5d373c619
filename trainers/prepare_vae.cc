#include "trainers/prepare_vae.h"

#include "absl/strings/str_cat.h"
#include "models/umt5/prompt_encoder.h"

namespace sdpo::trainers {

std::unique_ptr<VideoLatentEncoder> OpenWanVideoEncoder(const WanCheckpointFolder& folder,
                                                        Device device, std::string* why_not) {
  if (folder.vae.empty()) {
    *why_not = folder.dir.empty()
                   ? "names a DiT file, not a checkpoint folder with the VAE"
                   : absl::StrCat(folder.dir, " has no ", kWanVaePth, " or ", kWanVaeSafetensors);
    return nullptr;
  }
  // The native Wan2.1 VAE (models/wan21/vae, issue 15) is wired in here when it
  // lands.
  (void)device;
  *why_not = "this build has no Wan2.1 VAE encoder yet (models/wan21/vae)";
  return nullptr;
}

std::string VideoEncoderHash(const WanCheckpointFolder& folder) {
  return umt5::Sha256File(folder.vae);
}

}  // namespace sdpo::trainers
