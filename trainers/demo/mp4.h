// The demo's latent renderings as H.264 mp4 (io/video.h). A target of its own so that only the
// binaries that write videos link FFmpeg (//trainers:sdpo does not).
#pragma once

#include <string>
#include <vector>

#include "tensor/tensor.h"
#include "trainers/demo/images.h"

namespace sdpo::demo {

// WriteGif's frames as an mp4 at 100 / delay_cs frames per second; returns the encoder used.
std::string WriteMp4(const std::string& path, const std::vector<Tensor>& latents,
                     const ImageOptions& options = {});

}  // namespace sdpo::demo
