#include "trainers/demo/mp4.h"

#include "io/video.h"
#include "tensor/error.h"

namespace sdpo::demo {

std::string WriteMp4(const std::string& path, const std::vector<Tensor>& latents,
                     const ImageOptions& options) {
  const std::vector<RgbImage> frames = GridFrames(path, latents, options);
  SDPO_CHECK(options.delay_cs > 0, path, ": an mp4 needs delay_cs > 0");
  video::WriteOptions o;
  o.fps = 100.0 / options.delay_cs;
  return video::WriteMp4(path, frames, o).encoder;
}

}  // namespace sdpo::demo
