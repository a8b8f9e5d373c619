#include "nn/checkpoint_io.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "io/torch_pickle.h"
#include "tensor/ops.h"

namespace sdpo::nn {

namespace {
DType EntryDType(const TensorEntry& e, const std::string& where) {
  std::optional<DType> dtype = ToDType(e.dtype);
  SDPO_CHECK(dtype.has_value(), where, ": tensor '", e.name, "' has dtype ",
             SafetensorsDTypeName(e.dtype), ", which sdpo tensors cannot hold");
  return *dtype;
}

// Drops the whole pages of mapped bytes [data, data + n) from this process once they have been
// copied: a checkpoint is read once, and without this a loaded model's resident memory peaks at
// twice its size (mapped file pages count as resident; they stay in the page cache).
void ReleaseMappedPages(const uint8_t* data, size_t n) {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + n) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// memcpy in 64 MiB pieces, each released after its copy (a 2 GB embedding would otherwise be
// resident twice at the end of its copy).
void CopyAndRelease(void* dst, const uint8_t* src, size_t n) {
  constexpr size_t kPiece = size_t{64} << 20;
  for (size_t done = 0; done < n; done += kPiece) {
    const size_t len = std::min(kPiece, n - done);
    std::memcpy(static_cast<uint8_t*>(dst) + done, src + done, len);
    ReleaseMappedPages(src + done, len);
  }
}
}  // namespace

CheckpointSource::CheckpointSource(std::unique_ptr<CheckpointView> checkpoint)
    : checkpoint_(std::move(checkpoint)) {}

std::unique_ptr<SafetensorsSource> SafetensorsSource::Open(const std::string& path) {
  return std::unique_ptr<SafetensorsSource>(new SafetensorsSource(ShardedCheckpoint::Open(path)));
}

std::unique_ptr<PthSource> PthSource::Open(const std::string& path) {
  return std::unique_ptr<PthSource>(new PthSource(TorchCheckpoint::Open(path)));
}

std::unique_ptr<CheckpointSource> OpenTensorSource(const std::string& path) {
  return std::unique_ptr<CheckpointSource>(new CheckpointSource(OpenCheckpoint(path)));
}

std::vector<std::string> CheckpointSource::Keys() const { return checkpoint_->names(); }

Shape CheckpointSource::KeyShape(const std::string& key) const {
  return checkpoint_->at(key).shape;
}

std::string CheckpointSource::Describe() const { return checkpoint_->path(); }

Tensor CheckpointSource::Read(const std::string& key) const {
  const TensorEntry& e = checkpoint_->at(key);
  Tensor t = Tensor::Empty(e.shape, EntryDType(e, Describe()));
  SDPO_CHECK(t.nbytes() == e.nbytes, Describe(), ": tensor '", key, "' holds ", e.nbytes,
             " bytes for shape ", ShapeStr(e.shape));
  if (e.nbytes > 0) std::memcpy(t.raw_data(), e.data, e.nbytes);  // entries may be unaligned
  return t;
}

void CheckpointSource::CopyTo(const std::string& key, const Tensor& dst) const {
  const TensorEntry& e = checkpoint_->at(key);
  SDPO_CHECK(Shape(e.shape) == dst.shape(), Describe(), ": tensor '", key, "' has shape ",
             ShapeStr(e.shape), ", the destination ", ShapeStr(dst.shape()));
  if (dst.device().is_cpu() && dst.is_contiguous() && ToDType(e.dtype) == dst.dtype() &&
      dst.nbytes() == e.nbytes) {
    CopyAndRelease(dst.raw_data(), e.data, e.nbytes);
  } else {
    ops::CopyInto(dst, Read(key));
    ReleaseMappedPages(e.data, e.nbytes);
  }
}

LoadReport LoadSafetensors(Module& module, const std::string& path, bool strict) {
  return module.LoadStateDict(*SafetensorsSource::Open(path), strict);
}

void SaveSafetensors(const std::string& path, const TensorMap& tensors,
                     const std::map<std::string, std::string>& metadata) {
  std::vector<Tensor> hold;
  std::vector<TensorToWrite> out;
  hold.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    SDPO_CHECK(t.defined(), path, ": tensor '", name, "' is undefined");
    hold.push_back(ops::Contiguous(ops::To(t, Device::CPU())));
    const Tensor& h = hold.back();
    TensorToWrite w;
    w.name = name;
    w.dtype = ToSafetensorsDType(h.dtype());
    w.shape = h.shape();
    w.data = h.raw_data();
    w.nbytes = h.nbytes();
    out.push_back(w);
  }
  WriteSafetensors(path, out, metadata);
}

TensorMap ReadSafetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  auto source = SafetensorsSource::Open(path);
  TensorMap out;
  for (const std::string& k : source->Keys()) out[k] = source->Read(k);
  if (metadata != nullptr) *metadata = source->metadata();
  return out;
}

void SaveLora(const Module& root, const std::string& path, const std::string& key_prefix) {
  LoraWeights w = LoraStateDict(root, key_prefix);
  SaveSafetensors(path, w.tensors, w.metadata);
}

void LoadLora(Module& root, const std::string& path, bool strict, const std::string& key_prefix) {
  LoraWeights w;
  w.tensors = ReadSafetensors(path, &w.metadata);
  LoadLoraStateDict(root, w, strict, key_prefix);
}

}  // namespace sdpo::nn
