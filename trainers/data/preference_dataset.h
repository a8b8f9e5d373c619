// The on-disk preference dataset: a directory with manifest.jsonl (one pair per line) and
// safetensors shards holding the winner/loser latents [C, F, H, W] and the text embeddings
// [L, D]. See docs/data.md for the format and for converting real datasets.
//
// PreferenceDataset::Open validates everything up front (manifest syntax, references, shard
// files, keys, dtypes, shapes against the model, NaN/Inf, duplicate ids) and reports the first
// problem as an sdpo::Error naming the manifest line, the shard file and the key, with what
// was expected and what was found. After Open, Get() cannot fail on well-behaved storage.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "tensor/tensor.h"

namespace sdpo::data {

// One preference pair, as f32 CPU tensors.
struct PreferencePair {
  std::string id;
  std::string prompt;
  Tensor winner;   // clean latent [C, F, H, W]
  Tensor loser;    // same shape as winner
  Tensor context;  // text embedding [L, D]
  double weight = 1.0;
  // The policy that generated the pair: empty for the reference (base) model or unknown, else an
  // id of TrainerConfig::generators (the demo's rounds: "round<r>").
  std::string generator;
};

// Random access to preference pairs (the on-disk dataset, or pairs held in memory).
// Implementations must allow concurrent Get() calls (the prefetching loader uses a thread).
class PairDataset {
 public:
  virtual ~PairDataset() = default;
  virtual int64_t size() const = 0;
  virtual PreferencePair Get(int64_t index) const = 0;
};

// Pairs held in memory (the demo's generated pairs, tests).
class InMemoryPairDataset : public PairDataset {
 public:
  explicit InMemoryPairDataset(std::vector<PreferencePair> pairs) : pairs_(std::move(pairs)) {}
  int64_t size() const override { return static_cast<int64_t>(pairs_.size()); }
  PreferencePair Get(int64_t index) const override;

 private:
  std::vector<PreferencePair> pairs_;
};

// What the model accepts. Zero means "any" for frames, height, width and max_text_len.
struct DatasetSpec {
  int64_t channels = 0;  // C, required
  int64_t frames = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t text_dim = 0;      // D, required
  int64_t max_text_len = 0;  // e.g. 512 for umT5
  // F, H and W of a latent must be multiples of these (the model's patch: (1, 2, 2) for Wan2.1).
  std::array<int64_t, 3> patch = {1, 1, 1};
};

struct OpenOptions {
  // Scan every tensor for NaN/Inf at load (reads all the data once).
  bool check_finite = true;
};

class PreferenceDataset : public PairDataset {
 public:
  static constexpr const char* kManifestName = "manifest.jsonl";

  // Opens and validates the dataset in `dir`. Throws sdpo::Error on the first problem.
  static std::unique_ptr<PreferenceDataset> Open(const std::string& dir, const DatasetSpec& spec,
                                                 const OpenOptions& options = {});
  ~PreferenceDataset() override;

  const std::string& dir() const { return dir_; }
  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }
  // Loads pair `index` (converted to f32). Thread-safe.
  PreferencePair Get(int64_t index) const override;

  // Metadata without loading tensors.
  const std::string& id(int64_t index) const;
  const std::string& prompt(int64_t index) const;
  double weight(int64_t index) const;
  const std::vector<int64_t>& latent_shape(int64_t index) const;
  const std::vector<int64_t>& context_shape(int64_t index) const;
  int64_t IndexOf(const std::string& id) const;  // -1 when absent
  std::vector<std::string> shard_files() const;  // the referenced files, sorted

 private:
  struct Ref {
    const SafetensorsFile* file = nullptr;
    const TensorEntry* entry = nullptr;
    std::string file_name;  // as written in the manifest
  };
  struct Entry {
    std::string id, prompt;
    Ref winner, loser, context;
    double weight = 1.0;
    int64_t line = 0;
  };
  PreferenceDataset() = default;
  Tensor Load(const Ref& ref) const;
  const Entry& entry(int64_t index) const;

  std::string dir_;
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files_;  // by name in the manifest
  std::vector<Entry> entries_;
  std::map<std::string, int64_t> index_of_;
};

struct WriterOptions {
  int64_t pairs_per_shard = 256;
  DType dtype = kF32;      // on-disk dtype of latents and embeddings: kF32, kBF16 or kF16
  bool overwrite = false;  // allow writing into a directory that already has a manifest
};

// Writes pairs into shards of `pairs_per_shard` pairs ("shard-00000.safetensors", ...) and, on
// Finish(), the manifest. Every file is written atomically (temporary file + rename) and the
// manifest goes last, so an interrupted writer leaves no openable (half) dataset. Identical
// contexts of the same prompt are stored once.
class PreferenceDatasetWriter {
 public:
  // Creates `dir` (and missing parents). Throws if it already holds a manifest and
  // !options.overwrite.
  explicit PreferenceDatasetWriter(std::string dir, WriterOptions options = {});
  ~PreferenceDatasetWriter();  // does not Finish(): an unfinished dataset has no manifest
  PreferenceDatasetWriter(const PreferenceDatasetWriter&) = delete;
  PreferenceDatasetWriter& operator=(const PreferenceDatasetWriter&) = delete;

  // Validates the pair (non-empty unique id, ranks, winner/loser shapes, finite values and
  // weight) and buffers it; writes a shard every pairs_per_shard pairs.
  void Add(const PreferencePair& pair);
  // Writes the last shard and manifest.jsonl. Returns the number of pairs. Add() after
  // Finish() is an error.
  int64_t Finish();
  int64_t size() const { return count_; }

 private:
  struct Pending;
  void FlushShard();

  std::string dir_;
  WriterOptions options_;
  int64_t count_ = 0;
  int64_t shard_index_ = 0;
  bool finished_ = false;
  std::unique_ptr<Pending> pending_;
  std::vector<std::string> manifest_lines_;
};

}  // namespace sdpo::data
