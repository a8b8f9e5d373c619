// One way to open a checkpoint's tensors by path, whatever the file format:
//   - a .safetensors file, or a "*.safetensors.index.json" shard index (ShardedCheckpoint);
//   - a PyTorch zip checkpoint (.pth / .pt / .bin / .ckpt written by torch.save; TorchCheckpoint,
//     which executes nothing);
//   - a directory holding one of those: an index or a single .safetensors file first (see
//     ShardedCheckpoint::Open), else exactly one torch file.
// The format is decided by the file's first bytes, not its name.
#pragma once

#include <memory>
#include <string>

#include "io/safetensors.h"

namespace sdpo {

std::unique_ptr<CheckpointView> OpenCheckpoint(const std::string& path);

// True when the file at `path` starts like a torch zip checkpoint (or a legacy torch.save file,
// which TorchCheckpoint refuses with a message).
bool IsTorchCheckpointFile(const std::string& path);

}  // namespace sdpo
