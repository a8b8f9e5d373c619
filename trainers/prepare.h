// Raw videos and a preference table -> the preference dataset the trainer reads
// (docs/data.md): each row's videos are decoded and conditioned (io/video),
// encoded by the model's VAE, its prompt by the text encoder, and the pairs
// written with data::PreferenceDatasetWriter.
//
// Resumable: each finished row is kept in DATASET/.prepare/ as one file (its
// latents and context, or the reason it was skipped), written atomically, so a
// killed run continues at the first row without a file; the dataset itself is
// written from those files in table order at the end, so a resumed run gives
// the same dataset bit for bit. Memory holds one pair plus the writer's current
// shard.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/video.h"
#include "tensor/tensor.h"
#include "trainers/data/preference_dataset.h"
#include "trainers/prepare_table.h"

namespace sdpo::trainers {

// Pixels [3, T, H, W] in [-1, 1] -> a clean latent [C, F, h, w] (f32, CPU).
class VideoLatentEncoder {
 public:
  virtual ~VideoLatentEncoder() = default;
  virtual Tensor Encode(const Tensor& video) = 0;
};

// A prompt -> its text embedding [L, D] (f32, CPU).
using PromptEncodeFn = std::function<Tensor(const std::string& prompt)>;

struct PrepareOptions {
  std::string out;         // the dataset directory
  std::string videos_dir;  // video paths in the table are relative to it
  int64_t frames = 81, height = 480, width = 832;
  double fps = 16;
  bool skip_bad_rows = false;  // a row whose video cannot be used is skipped, not an error
  bool overwrite = false;      // replace a finished dataset in `out`
  bool progress = true;
  data::WriterOptions writer;
  // Everything that decides the result besides the rows (model, checkpoint,
  // sizes): a resumed run with different settings is refused instead of mixing
  // two datasets.
  std::string settings;
};

struct PrepareSummary {
  int64_t pairs = 0;                // pairs in the written dataset
  int64_t encoded_now = 0;          // rows encoded by this run
  int64_t done_before = 0;          // rows an earlier (killed) run had finished
  std::vector<SkippedRow> skipped;  // table rows and rows whose videos could not be used
  bool interrupted = false;         // stopped by SIGTERM/SIGINT; rerun to continue
};

// The conditioned clip of one video file: exactly `frames` frames of height x
// width at fps.
Tensor ReadClip(const std::string& path, const PrepareOptions& options);

PrepareSummary PrepareDataset(const PairTable& table, const PrepareOptions& options,
                              VideoLatentEncoder& video_encoder,
                              const PromptEncodeFn& encode_prompt);

// "wrote 12 pairs to DIR; skipped 2 rows: line 4: ..." for the end of a run.
std::string FormatSummary(const PrepareSummary& summary, const std::string& table_path,
                          const std::string& out);

}  // namespace sdpo::trainers
