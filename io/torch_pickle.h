// PyTorch checkpoints (`torch.save(state_dict, "x.pth")`, also `.pt` / `.bin`) read without
// executing anything.
//
// The file is a zip archive (stored entries): `<archive>/data.pkl` is a pickle of the state_dict
// whose tensors name their storages by persistent id, and `<archive>/data/<key>` holds each
// storage's raw little-endian bytes. data.pkl runs on a small pickle machine that knows only the
// opcodes a state_dict uses and only these globals: collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 / _rebuild_tensor / _rebuild_parameter and the storage types
// (torch.FloatStorage, BFloat16Storage, HalfStorage, DoubleStorage, LongStorage, IntStorage,
// ShortStorage, CharStorage, ByteStorage, BoolStorage). Any other global (os.system, builtins.eval,
// ...) is refused with its name; nothing is ever called or imported. See docs/checkpoints.md for
// what is accepted and refused. The legacy (pre-1.6, non-zip) format is refused with a message
// saying how to convert.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors.h"

namespace sdpo {

// The tensors of a parsed torch checkpoint. Entries point into the caller's bytes, or into `owned`
// for tensors whose strides were not row-major (copied into row-major order).
struct TorchContents {
  std::vector<TensorEntry> tensors;  // sorted by name; nested dicts flattened as "a.b"
  // Values of the dict that are not tensors (e.g. {"epoch": 3}), in a short text form.
  std::map<std::string, std::string> metadata;
  std::vector<std::vector<uint8_t>> owned;
  std::string archive;  // the archive's folder name ("archive", or the saved file's stem)
};

// Limits that keep hostile files cheap to refuse.
constexpr size_t kMaxTorchPickleBytes = 64 << 20;  // data.pkl; a 14B-parameter DiT's is ~100 KB
constexpr size_t kMaxTorchPickleObjects = 1 << 20;
constexpr int kMaxTorchNesting = 32;  // dicts inside dicts

// Parses and validates a whole torch zip image held in memory (`bytes` stays owned by the caller).
// `name` identifies the image in error messages. This is the fuzzer's entry point.
TorchContents ParseTorchCheckpoint(const uint8_t* bytes, size_t size, const std::string& name);

// A read-only memory-mapped torch checkpoint.
class TorchCheckpoint final : public CheckpointView {
 public:
  static std::unique_ptr<TorchCheckpoint> Open(const std::string& path);
  ~TorchCheckpoint() override;
  TorchCheckpoint(const TorchCheckpoint&) = delete;
  TorchCheckpoint& operator=(const TorchCheckpoint&) = delete;

  const std::string& path() const override { return path_; }
  const std::map<std::string, std::string>& metadata() const override { return contents_.metadata; }
  std::vector<std::string> names() const override;
  const TensorEntry* find(std::string_view name) const override;
  const TensorEntry& at(std::string_view name) const override;
  const std::vector<TensorEntry>& tensors() const { return contents_.tensors; }

 private:
  TorchCheckpoint() = default;

  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  TorchContents contents_;
};

}  // namespace sdpo
