#include "trainers/prepare.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/umt5/prompt_encoder.h"
#include "tensor/error.h"
#include "tensor/ops.h"
#include "trainers/progress.h"
#include "trainers/report.h"
#include "trainers/signals.h"

namespace sdpo::trainers {
namespace {

namespace fs = std::filesystem;

constexpr char kWorkDir[] = ".prepare";
constexpr char kSettingsFile[] = "settings.json";
constexpr char kSkipKey[] = "skipped";

std::string RowFile(const fs::path& work, size_t index) {
  return (work / absl::StrFormat("row-%06d.safetensors", index)).string();
}

// The settings and the rows (ids, prompts, videos, weights), hashed: what a
// resumed run must share with the run it continues.
std::string SettingsRecord(const PairTable& table, const PrepareOptions& options) {
  std::string rows;
  for (const PairRow& r : table.rows) {
    absl::StrAppend(&rows, r.line, "\n", r.id, "\n", r.prompt, "\n", r.chosen, "\n", r.rejected,
                    "\n", absl::StrFormat("%.17g", r.weight), "\n");
  }
  json::Value v = json::Value::MakeObject({
      {"settings", json::Value::String(options.settings)},
      {"videos", json::Value::String(options.videos_dir)},
      {"clip", json::Value::String(absl::StrFormat("%dx%dx%d@%.17g", options.frames, options.height,
                                                   options.width, options.fps))},
      {"skip_bad_rows", json::Value::Bool(options.skip_bad_rows)},
      {"rows_sha256", json::Value::String(umt5::Sha256(rows))},
  });
  return json::Serialize(v) + "\n";
}

// Creates the work folder or checks that the one there belongs to this run's
// settings.
void PrepareWorkDir(const fs::path& work, const std::string& record, bool overwrite) {
  const fs::path settings = work / kSettingsFile;
  if (fs::exists(settings)) {
    std::ifstream f(settings);
    std::string before((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (before == record) return;
    SDPO_CHECK(overwrite, work.string(),
               " holds an unfinished run with other settings or another table (", before,
               "); this run: ", record,
               "rerun it with those settings to finish it, or --overwrite to start "
               "over");
    fs::remove_all(work);
  }
  fs::create_directories(work);
  WriteFileAtomic(settings.string(), record);
}

void WriteRow(const std::string& path, const PairRow& row, const Tensor& winner,
              const Tensor& loser, const Tensor& context) {
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"winner", &winner},
                                {"loser", &loser},
                                {"context", &context}}) {
    SDPO_CHECK(t->dtype() == kF32 && t->is_contiguous(), "prepare: ", name,
               " must be a contiguous f32 tensor");
    tensors.push_back({name, SafetensorsDType::kF32, t->shape(), t->data<float>(), t->nbytes()});
  }
  WriteSafetensors(path, tensors, {{"id", row.id}});
}

void WriteSkip(const std::string& path, const PairRow& row, const std::string& reason) {
  WriteSafetensors(path, {}, {{"id", row.id}, {kSkipKey, reason}});
}

Tensor ReadTensor(const SafetensorsFile& file, const char* name) {
  const TensorEntry& e = file.at(name);
  return Tensor::FromVector(ReadAsF32(e), Shape(e.shape.begin(), e.shape.end()));
}

// Decodes and encodes one row; errors name the table line and the video.
void EncodeRow(const PairRow& row, const PrepareOptions& options, const std::string& table,
               VideoLatentEncoder& video_encoder, const PromptEncodeFn& encode_prompt,
               const std::string& out_file) {
  auto latent = [&](const char* which, const std::string& file) {
    const std::string path = (fs::path(options.videos_dir) / file).string();
    try {
      return video_encoder.Encode(ReadClip(path, options));
    } catch (const Error& e) {
      SDPO_FAIL(table, " line ", row.line, ": ", which, " video ", file, ": ",
                ErrorReason(e.what()));
    }
  };
  const Tensor winner = latent("chosen", row.chosen);
  const Tensor loser = latent("rejected", row.rejected);
  const Tensor context = encode_prompt(row.prompt);
  WriteRow(out_file, row, ops::Contiguous(winner), ops::Contiguous(loser),
           ops::Contiguous(context));
}

}  // namespace

Tensor ReadClip(const std::string& path, const PrepareOptions& options) {
  video::ReadOptions read;
  read.fps = options.fps;
  read.max_frames = options.frames;
  read.height = static_cast<int>(options.height);
  read.width = static_cast<int>(options.width);
  video::VideoInfo info;
  Tensor clip = video::ReadVideo(path, read, &info);
  SDPO_CHECK(clip.dim() == 4 && clip.size(1) == options.frames, path, ": ", clip.size(1),
             " frames at ", options.fps, " fps (the file: ", info.duration_s, " s), expected ",
             options.frames, " (--frames): the clip is too short");
  return clip;
}

PrepareSummary PrepareDataset(const PairTable& table, const PrepareOptions& options,
                              VideoLatentEncoder& video_encoder,
                              const PromptEncodeFn& encode_prompt) {
  const fs::path out(options.out);
  const fs::path work = out / kWorkDir;
  SDPO_CHECK(options.overwrite || !fs::exists(out / "manifest.jsonl"), options.out,
             " already holds a dataset (manifest.jsonl); --overwrite replaces it");
  PrepareWorkDir(work, SettingsRecord(table, options), options.overwrite);

  PrepareSummary summary;
  ProgressBar bar("prepare", static_cast<int64_t>(table.rows.size()), options.progress);
  for (size_t i = 0; i < table.rows.size(); ++i) {
    const std::string file = RowFile(work, i);
    if (fs::exists(file)) {
      ++summary.done_before;
      continue;
    }
    if (StopRequested()) {
      bar.Finish();
      summary.interrupted = true;
      return summary;
    }
    const PairRow& row = table.rows[i];
    try {
      EncodeRow(row, options, table.path, video_encoder, encode_prompt, file);
    } catch (const Error& e) {
      if (!options.skip_bad_rows) throw;
      WriteSkip(file, row, ErrorReason(e.what()));
    }
    ++summary.encoded_now;
    bar.Update(static_cast<int64_t>(i + 1), absl::StrCat("line ", row.line));
  }
  bar.Finish();

  // Every row has its file: the dataset, in table order.
  summary.skipped = table.skipped;
  data::WriterOptions writer_options = options.writer;
  writer_options.overwrite = options.overwrite;
  data::PreferenceDatasetWriter writer(options.out, writer_options);
  for (size_t i = 0; i < table.rows.size(); ++i) {
    const PairRow& row = table.rows[i];
    auto file = SafetensorsFile::Open(RowFile(work, i));
    auto skip = file->metadata().find(kSkipKey);
    if (skip != file->metadata().end()) {
      std::string reason = skip->second;
      const std::string prefix = absl::StrCat(table.path, " line ", row.line, ": ");
      if (reason.rfind(prefix, 0) == 0) reason.erase(0, prefix.size());
      summary.skipped.push_back({row.line, reason});
      continue;
    }
    writer.Add({row.id, row.prompt, ReadTensor(*file, "winner"), ReadTensor(*file, "loser"),
                ReadTensor(*file, "context"), row.weight});
  }
  SDPO_CHECK(writer.size() > 0, table.path, ": every row was skipped (", summary.skipped.size(),
             "), no dataset written");
  summary.pairs = writer.Finish();
  fs::remove_all(work);
  std::sort(summary.skipped.begin(), summary.skipped.end(),
            [](const SkippedRow& a, const SkippedRow& b) { return a.line < b.line; });
  return summary;
}

std::string FormatSummary(const PrepareSummary& summary, const std::string& table_path,
                          const std::string& out) {
  if (summary.interrupted) {
    return absl::StrCat("prepare: stopped after ", summary.encoded_now, " new rows (",
                        summary.done_before, " done before); rerun the same command to continue\n");
  }
  std::string s = absl::StrCat("prepare: wrote ", summary.pairs, " pairs to ", out, " (",
                               summary.encoded_now, " rows encoded now, ", summary.done_before,
                               " by an earlier run); skipped ", summary.skipped.size(), " rows\n");
  for (const SkippedRow& r : summary.skipped) {
    absl::StrAppend(&s, "  skipped ", table_path, " line ", r.line, ": ", r.reason, "\n");
  }
  return s;
}

}  // namespace sdpo::trainers
