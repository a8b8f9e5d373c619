// Checkpoint files for modules, optimiser state and LoRA adapters, on top of the safetensors
// reader/writer in io/safetensors.h and the torch checkpoint reader in io/torch_pickle.h.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "nn/lora.h"
#include "nn/module.h"

namespace sdpo::nn {

// A TensorSource over the tensors of a checkpoint file (io/checkpoint.h): values are read
// straight from the mapped file into the destination (converted to its dtype and device).
class CheckpointSource : public TensorSource {
 public:
  std::vector<std::string> Keys() const override;
  Shape KeyShape(const std::string& key) const override;
  void CopyTo(const std::string& key, const Tensor& dst) const override;
  std::string Describe() const override;
  const std::map<std::string, std::string>& metadata() const { return checkpoint_->metadata(); }
  // One tensor as a new CPU tensor of its stored dtype.
  Tensor Read(const std::string& key) const;
  const CheckpointView& checkpoint() const { return *checkpoint_; }

 protected:
  explicit CheckpointSource(std::unique_ptr<CheckpointView> checkpoint);

 private:
  friend std::unique_ptr<CheckpointSource> OpenTensorSource(const std::string& path);
  std::unique_ptr<CheckpointView> checkpoint_;
};

// A safetensors checkpoint: one file, a "*.safetensors.index.json" shard index, or a directory
// holding one of those.
class SafetensorsSource final : public CheckpointSource {
 public:
  static std::unique_ptr<SafetensorsSource> Open(const std::string& path);

 private:
  using CheckpointSource::CheckpointSource;
};

// A PyTorch checkpoint written by torch.save (.pth / .pt / .bin), read without executing
// anything (io/torch_pickle.h).
class PthSource final : public CheckpointSource {
 public:
  static std::unique_ptr<PthSource> Open(const std::string& path);

 private:
  using CheckpointSource::CheckpointSource;
};

// The one way to open weights by path: a .safetensors file, a *.safetensors.index.json, a
// directory holding one of those (or a single torch file), or a torch .pth/.pt/.bin zip; the
// format is decided by the file's first bytes (see OpenCheckpoint).
std::unique_ptr<CheckpointSource> OpenTensorSource(const std::string& path);

// Loads a module's parameters from a checkpoint by name (see Module::LoadStateDict).
LoadReport LoadSafetensors(Module& module, const std::string& path, bool strict = true);

// Writes tensors (any device, dtype as stored) atomically, with optional metadata.
void SaveSafetensors(const std::string& path, const TensorMap& tensors,
                     const std::map<std::string, std::string>& metadata = {});
// Reads every tensor of a (small) checkpoint into memory: optimiser state, adapters.
TensorMap ReadSafetensors(const std::string& path,
                          std::map<std::string, std::string>* metadata = nullptr);

// Adapter files: PEFT names (<module>.lora_A.weight / .lora_B.weight, with key_prefix) and
// lora_rank / lora_alpha / lora_target_modules in the metadata.
void SaveLora(const Module& root, const std::string& path, const std::string& key_prefix = "");
void LoadLora(Module& root, const std::string& path, bool strict = true,
              const std::string& key_prefix = "");

}  // namespace sdpo::nn
