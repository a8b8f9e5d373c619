// //trainers:prepare: raw videos + a preference table -> the dataset
// //trainers:sdpo trains on.
//
//   bazel run //trainers:prepare -- --model=wan21 --checkpoint=Wan2.1-T2V-1.3B
//   \
//       --pairs=pairs.jsonl --videos=videos/ --out=data/my_prefs [--frames=81
//       --height=480 \
//       --width=832 --fps=16 --device=cpu --skip_bad_rows]
//
// docs/data.md describes the table layouts, the conditioning and resuming.
#include <cstdio>
#include <filesystem>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "io/command_line.h"
#include "models/umt5/prompt_encoder.h"
#include "tensor/error.h"
#include "trainers/device_flags.h"
#include "trainers/prepare.h"
#include "trainers/prepare_vae.h"
#include "trainers/sampling.h"
#include "trainers/signals.h"

ABSL_FLAG(std::string, model, "wan21",
          "model family: wan21 (cogvideox-*: its VAE does not exist yet)");
ABSL_FLAG(std::string, checkpoint, "",
          "official checkpoint folder (Wan2.1_VAE.pth or .safetensors, "
          "models_t5_umt5-xxl-enc-bf16.pth or .safetensors, "
          "google/umt5-xxl/spiece.model)");
ABSL_FLAG(std::string, pairs, "", "the preference table: .jsonl or .csv (docs/data.md)");
ABSL_FLAG(std::string, videos, "", "folder the table's video paths are relative to");
ABSL_FLAG(std::string, out, "", "the dataset folder to write");
ABSL_FLAG(int64_t, frames, 81, "frames per clip (1 + 4k)");
ABSL_FLAG(int64_t, height, 480, "clip height (multiple of 16)");
ABSL_FLAG(int64_t, width, 832, "clip width (multiple of 16)");
ABSL_FLAG(double, fps, 16, "frame rate the clips are sampled at");
ABSL_FLAG(std::string, device, "cpu", "where the VAE runs: cpu | cuda | cuda:N");
ABSL_FLAG(std::string, dtype, "bf16", "on-disk dtype of latents and embeddings: bf16 | f32");
ABSL_FLAG(int64_t, pairs_per_shard, 64, "pairs per safetensors shard");
ABSL_FLAG(bool, skip_bad_rows, false,
          "skip rows that cannot be used (with the reason in the summary) "
          "instead of stopping");
ABSL_FLAG(bool, overwrite, false, "replace a dataset (or an unfinished run) in --out");
ABSL_FLAG(bool, progress, true, "progress bar with ETA on stderr");
ABSL_FLAG(std::string, text_encoder, "", "umT5 weights (default: the checkpoint folder's)");
ABSL_FLAG(std::string, tokenizer, "", "spiece.model (default: google/umt5-xxl/spiece.model)");
ABSL_FLAG(std::string, text_cache, "", "prompt-embedding cache (default: text_cache beside --out)");
ABSL_FLAG(std::string, prompt_column, "prompt", "table column (JSONL key) of the prompt");
ABSL_FLAG(std::string, chosen_column, "chosen",
          "column of the chosen video (with --label_column: video A)");
ABSL_FLAG(std::string, rejected_column, "rejected",
          "column of the rejected video (with --label_column: video B)");
ABSL_FLAG(std::string, weight_column, "weight", "optional column of the pair's weight");
ABSL_FLAG(std::string, id_column, "id", "optional column of the pair's id (default: line-N)");
ABSL_FLAG(std::string, label_column, "",
          "column saying which of A (--chosen_column) and B (--rejected_column) won");
ABSL_FLAG(std::string, a_wins, "A,a,video_a,1", "label values for A wins");
ABSL_FLAG(std::string, b_wins, "B,b,video_b,2", "label values for B wins");
ABSL_FLAG(std::string, ties, "tie,same,equal,=,0", "label values for a tie (row skipped)");

namespace sdpo::trainers {
namespace {

namespace fs = std::filesystem;

PairTableLayout LayoutFromFlags() {
  PairTableLayout layout;
  layout.prompt = absl::GetFlag(FLAGS_prompt_column);
  layout.chosen = absl::GetFlag(FLAGS_chosen_column);
  layout.rejected = absl::GetFlag(FLAGS_rejected_column);
  layout.weight = absl::GetFlag(FLAGS_weight_column);
  layout.id = absl::GetFlag(FLAGS_id_column);
  layout.label = absl::GetFlag(FLAGS_label_column);
  layout.a_wins = absl::StrSplit(absl::GetFlag(FLAGS_a_wins), ',');
  layout.b_wins = absl::StrSplit(absl::GetFlag(FLAGS_b_wins), ',');
  layout.ties = absl::StrSplit(absl::GetFlag(FLAGS_ties), ',', absl::SkipEmpty());
  return layout;
}

std::unique_ptr<umt5::PromptEncoder> OpenTextEncoder(const fs::path& checkpoint,
                                                     const std::string& out) {
  std::string cache_dir = absl::GetFlag(FLAGS_text_cache);
  if (cache_dir.empty()) cache_dir = (fs::absolute(out).parent_path() / "text_cache").string();
  return umt5::PromptEncoder::Open(FolderPromptEncoderOptions(
      checkpoint.string(), absl::GetFlag(FLAGS_text_encoder), absl::GetFlag(FLAGS_tokenizer),
      cache_dir, "--checkpoint=" + checkpoint.string()));
}

int Main() {
  const std::string model = absl::GetFlag(FLAGS_model);
  SDPO_CHECK(!absl::StartsWith(model, "cogvideox"), "--model=", model,
             ": CogVideoX's VAE does not exist in this build yet, so its "
             "videos cannot be "
             "encoded; prepare supports --model=wan21");
  SDPO_CHECK(model == "wan21", "--model=", model, ": expected wan21");
  for (const auto& [flag, value] :
       {std::pair<const char*, std::string>{"--checkpoint", absl::GetFlag(FLAGS_checkpoint)},
        {"--pairs", absl::GetFlag(FLAGS_pairs)},
        {"--videos", absl::GetFlag(FLAGS_videos)},
        {"--out", absl::GetFlag(FLAGS_out)}}) {
    SDPO_CHECK(!value.empty(), flag, " is required");
  }
  PrepareOptions options;
  options.out = absl::GetFlag(FLAGS_out);
  options.videos_dir = absl::GetFlag(FLAGS_videos);
  options.frames = absl::GetFlag(FLAGS_frames);
  options.height = absl::GetFlag(FLAGS_height);
  options.width = absl::GetFlag(FLAGS_width);
  options.fps = absl::GetFlag(FLAGS_fps);
  SDPO_CHECK(options.fps > 0 && options.fps <= 240, "--fps=", options.fps, ": expected (0, 240]");
  WanLatentShape(16, options.frames, options.height,
                 options.width);  // checks the sizes
  options.skip_bad_rows = absl::GetFlag(FLAGS_skip_bad_rows);
  options.overwrite = absl::GetFlag(FLAGS_overwrite);
  options.progress = absl::GetFlag(FLAGS_progress);
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  SDPO_CHECK(dtype == "bf16" || dtype == "f32", "--dtype=", dtype, ": expected bf16 or f32");
  options.writer.dtype = dtype == "bf16" ? kBF16 : kF32;
  options.writer.pairs_per_shard = absl::GetFlag(FLAGS_pairs_per_shard);
  SDPO_CHECK(options.writer.pairs_per_shard >= 1 && options.writer.pairs_per_shard <= 100000,
             "--pairs_per_shard=", options.writer.pairs_per_shard, ": expected 1..100000");
  const Device device = ParseDevice(absl::GetFlag(FLAGS_device));

  const PairTable table =
      ReadPairTable(absl::GetFlag(FLAGS_pairs), LayoutFromFlags(), options.skip_bad_rows);
  const WanCheckpointFolder folder = FindWanCheckpoint(absl::GetFlag(FLAGS_checkpoint));
  std::string why_not;
  std::unique_ptr<VideoLatentEncoder> vae = OpenWanVideoEncoder(folder, device, &why_not);
  SDPO_CHECK(vae != nullptr, "--checkpoint=", folder.dir, ": ", why_not);
  auto text = OpenTextEncoder(folder.dir, options.out);
  // The result depends on the weights: their hashes are part of the settings a
  // resume checks.
  options.settings =
      absl::StrCat("wan21 vae=", VideoEncoderHash(folder), " text=", text->encoder_hash(),
                   " dtype=", dtype, " shard=", options.writer.pairs_per_shard);
  std::printf(
      "prepare: %zu rows from %s (%zu skipped while reading), clips "
      "%lldx%lldx%lld at "
      "%g fps, VAE on %s\n",
      table.rows.size(), table.path.c_str(), table.skipped.size(),
      static_cast<long long>(options.frames), static_cast<long long>(options.height),
      static_cast<long long>(options.width), options.fps, device.str().c_str());
  const PrepareSummary summary = PrepareDataset(
      table, options, *vae,
      [&](const std::string& prompt) { return text->EncodePrompts({prompt}).front(); });
  std::printf("%s", FormatSummary(summary, table.path, options.out).c_str());
  if (summary.interrupted) return kExitInterrupted;
  return 0;
}

}  // namespace
}  // namespace sdpo::trainers

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv, "raw videos + a preference table -> a preference dataset");
  try {
    sdpo::trainers::InstallStopHandlers();
    return sdpo::trainers::Main();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nprepare: error: %s\n", e.what());
    return 1;
  }
}
