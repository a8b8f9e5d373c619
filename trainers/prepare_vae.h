// The video encoder `prepare` uses: the Wan2.1 VAE of a checkpoint folder (the
// latent mean, normalised as the official pipeline does before training).
#pragma once

#include <memory>
#include <string>

#include "tensor/device.h"
#include "trainers/prepare.h"
#include "trainers/sampling.h"

namespace sdpo::trainers {

// nullptr when the folder has no VAE weights or this build has no VAE;
// `why_not` says which.
std::unique_ptr<VideoLatentEncoder> OpenWanVideoEncoder(const WanCheckpointFolder& folder,
                                                        Device device, std::string* why_not);

// SHA-256 of the VAE weights (what a resumed run must share with the first).
std::string VideoEncoderHash(const WanCheckpointFolder& folder);

}  // namespace sdpo::trainers
