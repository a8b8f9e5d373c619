// //trainers:prepare: raw videos + a preference table -> the dataset
// //trainers:sdpo trains on.
//
//   bazel run //trainers:prepare -- --model=wan21 --checkpoint=Wan2.1-T2V-1.3B
//       --pairs=pairs.jsonl --videos=videos/ --out=data/my_prefs [--frames=81 --height=480
//       --width=832 --fps=16 --device=cpu --skip_bad_rows]
//   bazel run //trainers:prepare -- --model=cogvideox-2b --checkpoint=CogVideoX-2b
//       --pairs=pairs.jsonl --videos=videos/ --out=data/my_prefs   (49 x 480 x 720 at 8 fps)
//
// docs/data.md describes the table layouts, the conditioning and resuming.
#include <cstdio>
#include <filesystem>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "io/checkpoint.h"
#include "io/command_line.h"
#include "models/cogvideox/checkpoint.h"
#include "models/cogvideox/vae.h"
#include "models/umt5/prompt_encoder.h"
#include "tensor/error.h"
#include "trainers/cogvideox_folder.h"
#include "trainers/device_flags.h"
#include "trainers/prepare.h"
#include "trainers/prepare_vae.h"
#include "trainers/sampling.h"
#include "trainers/signals.h"

ABSL_FLAG(std::string, model, "wan21", "model family: wan21 | cogvideox-2b | cogvideox-5b");
ABSL_FLAG(std::string, checkpoint, "",
          "official checkpoint folder (Wan2.1: Wan2.1_VAE.pth or .safetensors, "
          "models_t5_umt5-xxl-enc-bf16.pth or .safetensors, google/umt5-xxl/spiece.model; "
          "CogVideoX: the diffusers folder with transformer/, vae/, text_encoder/, tokenizer/)");
ABSL_FLAG(std::string, pairs, "", "the preference table: .jsonl or .csv (docs/data.md)");
ABSL_FLAG(std::string, videos, "", "folder the table's video paths are relative to");
ABSL_FLAG(std::string, out, "", "the dataset folder to write");
ABSL_FLAG(int64_t, frames, 0, "frames per clip (1 + 4k; 0: Wan2.1 81, CogVideoX 49)");
ABSL_FLAG(int64_t, height, 0, "clip height (multiple of 16; 0: 480)");
ABSL_FLAG(int64_t, width, 0, "clip width (multiple of 16; 0: Wan2.1 832, CogVideoX 720)");
ABSL_FLAG(double, fps, 0, "frame rate the clips are sampled at (0: Wan2.1 16, CogVideoX 8)");
ABSL_FLAG(std::string, device, "cpu", "where the VAE runs: cpu | cuda | cuda:N");
ABSL_FLAG(std::string, dtype, "bf16", "on-disk dtype of latents and embeddings: bf16 | f32");
ABSL_FLAG(int64_t, pairs_per_shard, 64, "pairs per safetensors shard");
ABSL_FLAG(bool, skip_bad_rows, false,
          "skip rows that cannot be used (with the reason in the summary) "
          "instead of stopping");
ABSL_FLAG(bool, overwrite, false, "replace a dataset (or an unfinished run) in --out");
ABSL_FLAG(bool, progress, true, "progress bar with ETA on stderr");
ABSL_FLAG(std::string, text_encoder, "",
          "text encoder weights (default: the checkpoint folder's umT5; CogVideoX: text_encoder/)");
ABSL_FLAG(std::string, tokenizer, "",
          "spiece.model (default: google/umt5-xxl/spiece.model; CogVideoX: "
          "tokenizer/spiece.model)");
ABSL_FLAG(std::string, text_cache, "", "prompt-embedding cache (default: text_cache beside --out)");
ABSL_FLAG(std::string, text_compute, "f32",
          "text encoder numerics: f32 | bf16 (projections on bf16-rounded inputs, f32 "
          "accumulation; the CPU's bf16 units; docs/text.md)");
ABSL_FLAG(std::string, vae_tiling, "off",
          "CogVideoX VAE tiles as diffusers' enable_tiling(): off | on (240x360 pixels every "
          "200x288) | HxW:SHxSW; less memory at 480x720, other numbers (docs/cogvideox.md)");
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

// The prompt-embedding cache: --text_cache, else text_cache beside --out.
std::string TextCacheDir(const std::string& out) {
  const std::string flag = absl::GetFlag(FLAGS_text_cache);
  return flag.empty() ? (fs::absolute(out).parent_path() / "text_cache").string() : flag;
}

// --text_compute, checked.
umt5::ProjectionInputs TextCompute() {
  return umt5::ParseProjectionInputs(absl::GetFlag(FLAGS_text_compute), "--text_compute");
}

std::unique_ptr<umt5::PromptEncoder> OpenTextEncoder(const fs::path& checkpoint,
                                                     const std::string& out) {
  umt5::PromptEncoderOptions o = FolderPromptEncoderOptions(
      checkpoint.string(), absl::GetFlag(FLAGS_text_encoder), absl::GetFlag(FLAGS_tokenizer),
      TextCacheDir(out), "--checkpoint=" + checkpoint.string());
  o.projection_inputs = TextCompute();
  return umt5::PromptEncoder::Open(o);
}

// The model's encoders and the settings a resumed run must share (the weights' hashes).
struct Encoders {
  std::unique_ptr<VideoLatentEncoder> video;
  std::unique_ptr<umt5::PromptEncoder> text;
  std::string settings;
};

Encoders OpenWan(const std::string& checkpoint, Device device, const std::string& out) {
  const WanCheckpointFolder folder = FindWanCheckpoint(checkpoint);
  std::string why_not;
  Encoders e;
  e.video = OpenWanVideoEncoder(folder, device, &why_not);
  SDPO_CHECK(e.video != nullptr, "--checkpoint=", folder.dir, ": ", why_not);
  e.text = OpenTextEncoder(folder.dir, out);
  e.settings =
      absl::StrCat("wan21 vae=", VideoEncoderHash(folder), " text=", e.text->encoder_hash());
  return e;
}

Encoders OpenCogVideoX(const std::string& model, const std::string& checkpoint, Device device,
                       const std::string& out) {
  const CogVideoXFolder folder = FindCogVideoXCheckpoint(checkpoint);
  // The DiT's text width and length decide the embeddings; its weights are not needed here.
  const cogvideox::CogVideoXConfig dit =
      cogvideox::ResolveConfig(*OpenCheckpoint(folder.transformer));
  std::string why_not;
  Encoders e;
  const std::optional<cogvideox::VaeTiling> tiling =
      VaeTilingFlag(absl::GetFlag(FLAGS_vae_tiling), "--vae_tiling", true);
  std::unique_ptr<CogVideoXVaeRunner> vae =
      CogVideoXVaeRunner::Open(folder, device, &why_not, tiling);
  SDPO_CHECK(vae != nullptr, "--checkpoint=", folder.dir, ": ", why_not);
  // Tiles change the latents: a resumed run must use the same ones.
  const std::string vae_hash =
      absl::StrCat(vae->WeightsHash(), tiling ? " vae_tiling=" + tiling->str() : "");
  e.video = CogVideoXVideoEncoder(std::move(vae));
  CogVideoXTextOptions t;
  t.weights = absl::GetFlag(FLAGS_text_encoder);
  t.tokenizer = absl::GetFlag(FLAGS_tokenizer);
  t.cache_dir = TextCacheDir(out);
  t.text_dim = dit.text_embed_dim;
  t.text_len = dit.max_text_seq_length;
  t.projection_inputs = TextCompute();
  e.text = OpenCogVideoXTextEncoder(folder, t);
  e.settings = absl::StrCat(model, " vae=", vae_hash, " text=", e.text->encoder_hash());
  return e;
}

// A flag's value, or `fallback` when the flag is 0 (the model's default).
template <typename T>
T OrDefault(T flag, T fallback) {
  return flag == 0 ? fallback : flag;
}

int Main() {
  const std::string model = absl::GetFlag(FLAGS_model);
  const bool cogvideox = model == "cogvideox-2b" || model == "cogvideox-5b";
  SDPO_CHECK(model == "wan21" || cogvideox, "--model=", model,
             ": expected wan21, cogvideox-2b or cogvideox-5b");
  VaeTilingFlag(absl::GetFlag(FLAGS_vae_tiling), "--vae_tiling", cogvideox);  // checked first
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
  options.frames = OrDefault<int64_t>(absl::GetFlag(FLAGS_frames), cogvideox ? 49 : 81);
  options.height = OrDefault<int64_t>(absl::GetFlag(FLAGS_height), 480);
  options.width = OrDefault<int64_t>(absl::GetFlag(FLAGS_width), cogvideox ? 720 : 832);
  options.fps = OrDefault(absl::GetFlag(FLAGS_fps), cogvideox ? 8.0 : 16.0);
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
  const umt5::ProjectionInputs text_compute = TextCompute();

  const PairTable table =
      ReadPairTable(absl::GetFlag(FLAGS_pairs), LayoutFromFlags(), options.skip_bad_rows);
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  Encoders encoders = cogvideox ? OpenCogVideoX(model, checkpoint, device, options.out)
                                : OpenWan(checkpoint, device, options.out);
  // The result depends on the weights: their hashes are part of the settings a resume checks.
  // (f32 text compute adds nothing, so that datasets prepared before the flag still resume.)
  options.settings =
      absl::StrCat(encoders.settings, " dtype=", dtype, " shard=", options.writer.pairs_per_shard,
                   text_compute == umt5::ProjectionInputs::kBF16 ? " text_compute=bf16" : "");
  std::printf(
      "prepare: %zu rows from %s (%zu skipped while reading), clips "
      "%lldx%lldx%lld at "
      "%g fps, VAE on %s\n",
      table.rows.size(), table.path.c_str(), table.skipped.size(),
      static_cast<long long>(options.frames), static_cast<long long>(options.height),
      static_cast<long long>(options.width), options.fps, device.str().c_str());
  const PrepareSummary summary = PrepareDataset(
      table, options, *encoders.video,
      [&](const std::string& prompt) { return encoders.text->EncodePrompts({prompt}).front(); });
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
