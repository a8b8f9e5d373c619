// safetensors checkpoint I/O, byte level (no dependency on the Tensor class).
//
// Format: [u64 little-endian N][N bytes of JSON header][data section]. The header maps tensor
// names to {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the data
// section) plus an optional "__metadata__" string->string object. See docs/checkpoints.md for
// the validation rules. Every failure is an sdpo::Error naming the file (and the tensor key
// where there is one) with what was expected and what was found.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tensor/dtype.h"

namespace sdpo {

// Element types a safetensors file may hold (a superset of sdpo::DType).
enum class SafetensorsDType : uint8_t {
  kF64,
  kF32,
  kF16,
  kBF16,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool
};

const char* SafetensorsDTypeName(SafetensorsDType dtype);  // "F64", "BF16", "BOOL", ...
size_t SafetensorsElementSize(SafetensorsDType dtype);
std::optional<SafetensorsDType> ParseSafetensorsDType(std::string_view name);  // "F32" -> kF32
std::optional<DType> ToDType(SafetensorsDType dtype);  // nullopt for I16, I8, U8
SafetensorsDType ToSafetensorsDType(DType dtype);

// One tensor of a parsed file. `data` points into the mapped file (valid while the file object
// lives) and may be unaligned for files written by other tools: read it with memcpy or ReadAs*.
struct TensorEntry {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  size_t offset = 0;  // absolute byte offset of `data` in the file
};

// Lookup in a list of entries sorted by name (nullptr when absent), and the list's names.
const TensorEntry* FindSortedEntry(const std::vector<TensorEntry>& sorted, std::string_view name);
std::vector<std::string> EntryNames(const std::vector<TensorEntry>& entries);

// The validated content of a safetensors image.
struct SafetensorsContents {
  std::map<std::string, std::string> metadata;
  std::vector<TensorEntry> tensors;  // sorted by name
  size_t header_size = 0;            // N
  size_t data_size = 0;              // bytes after the header
};

// Upper bound on the JSON header length N (the reference implementation uses the same limit).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Parses and validates a whole safetensors image held in memory (`bytes` stays owned by the
// caller; entries point into it). `name` identifies the image in error messages. This is the
// entry point the fuzzer drives.
SafetensorsContents ParseSafetensors(const uint8_t* bytes, size_t size, const std::string& name);

// A read-only memory-mapped safetensors file.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return contents_.metadata; }
  const std::vector<TensorEntry>& tensors() const { return contents_.tensors; }  // sorted
  std::vector<std::string> names() const;                                        // sorted
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  const TensorEntry* find(std::string_view name) const;  // nullptr when absent
  const TensorEntry& at(std::string_view name) const;    // throws naming the file and key
  size_t file_size() const { return size_; }

 private:
  SafetensorsFile() = default;

  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  SafetensorsContents contents_;
};

// The named tensors of a checkpoint (a safetensors file or shard index, a PyTorch .pth), read
// only. Entries point into memory the view owns (usually the mapped file) and stay valid while it
// lives. io/checkpoint.h opens any supported file as one.
class CheckpointView {
 public:
  virtual ~CheckpointView() = default;
  virtual const std::string& path() const = 0;
  virtual const std::map<std::string, std::string>& metadata() const = 0;
  virtual std::vector<std::string> names() const = 0;                // sorted
  virtual const TensorEntry* find(std::string_view name) const = 0;  // nullptr when absent
  virtual const TensorEntry& at(std::string_view name) const = 0;    // throws naming path and key
  bool contains(std::string_view name) const { return find(name) != nullptr; }
};

// A checkpoint that is either one .safetensors file or a set of shards listed by a
// "*.safetensors.index.json" ({"weight_map": {name: shard file relative to the index's
// directory}, "metadata": {...}}). Open() also takes a directory holding exactly one index or,
// failing that, exactly one .safetensors file. Each shard is mapped once.
class ShardedCheckpoint final : public CheckpointView {
 public:
  static std::unique_ptr<ShardedCheckpoint> Open(const std::string& path);

  const std::string& path() const override { return path_; }  // the index or the single file
  // Single file: its __metadata__. Index: the index's "metadata" object, with non-string values
  // in their compact JSON form (e.g. "total_size" -> "123456").
  const std::map<std::string, std::string>& metadata() const override { return metadata_; }
  std::vector<std::string> names() const override;  // sorted
  const TensorEntry* find(std::string_view name) const override;
  const TensorEntry& at(std::string_view name) const override;  // names the checkpoint and key
  // The shard holding `name` (throws when absent).
  const SafetensorsFile& shard_of(std::string_view name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }

 private:
  struct Location {
    const SafetensorsFile* shard;
    const TensorEntry* entry;
  };
  ShardedCheckpoint() = default;
  const Location& Locate(std::string_view name) const;

  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, Location, std::less<>> index_;
};

// Converts a tensor's values (any dtype; BOOL -> 0/1) to float / double.
std::vector<float> ReadAsF32(const TensorEntry& entry);
std::vector<double> ReadAsF64(const TensorEntry& entry);
// The first NaN or Inf of a floating tensor as (flat index, value), or index -1 when every value
// is finite (always for integer and BOOL tensors). Reads in chunks: no copy of the whole tensor.
std::pair<int64_t, double> FirstNonFinite(const TensorEntry& entry);

struct TensorToWrite {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // little-endian, row-major; nbytes = numel * element size
  size_t nbytes = 0;
};

// Writes a safetensors file atomically: the bytes go to "<path>.tmp.<pid>.<n>", which is
// fsynced and renamed over `path`, then the directory is fsynced. Header keys are sorted
// ("__metadata__" first, omitted when empty), the header is space-padded so the data section
// starts at a multiple of 8, and the data is laid out contiguously in order of decreasing
// element size, then name, so every tensor is aligned to its element size.
void WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace sdpo
