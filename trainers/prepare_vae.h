// The video encoders `prepare` uses: the Wan2.1 VAE of a checkpoint folder (the latent mean,
// normalised as the official pipeline does before training), or CogVideoX's (mean x
// scaling_factor).
#pragma once

#include <memory>
#include <string>

#include "tensor/device.h"
#include "trainers/cogvideox_folder.h"
#include "trainers/prepare.h"
#include "trainers/sampling.h"

namespace sdpo::trainers {

// nullptr when the folder has no VAE weights or this build has no VAE;
// `why_not` says which.
std::unique_ptr<VideoLatentEncoder> OpenWanVideoEncoder(const WanCheckpointFolder& folder,
                                                        Device device, std::string* why_not);

// SHA-256 of the VAE weights (what a resumed run must share with the first).
std::string VideoEncoderHash(const WanCheckpointFolder& folder);

// The CogVideoX VAE of a diffusers folder as prepare's encoder (CogVideoXVaeRunner::Encode).
std::unique_ptr<VideoLatentEncoder> CogVideoXVideoEncoder(std::unique_ptr<CogVideoXVaeRunner> vae);

}  // namespace sdpo::trainers
