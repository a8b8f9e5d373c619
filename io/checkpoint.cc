#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "io/torch_pickle.h"
#include "io/zip.h"
#include "tensor/error.h"

namespace sdpo {
namespace {

namespace fs = std::filesystem;

bool IsTorchName(const std::string& name) {
  for (const char* ext : {".pth", ".pt", ".bin", ".ckpt"}) {
    if (absl::EndsWith(name, ext)) return true;
  }
  return false;
}

}  // namespace

bool IsTorchCheckpointFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint8_t head[4] = {};
  in.read(reinterpret_cast<char*>(head), sizeof(head));
  const size_t n = static_cast<size_t>(in.gcount());
  const bool legacy_pickle = n >= 2 && head[0] == 0x80 && head[1] <= 5;
  return LooksLikeZip(head, n) || legacy_pickle;
}

std::unique_ptr<CheckpointView> OpenCheckpoint(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> safetensors, torch;
    for (const auto& it : fs::directory_iterator(path, ec)) {
      const std::string name = it.path().filename().string();
      if (absl::EndsWith(name, ".safetensors") || absl::EndsWith(name, ".safetensors.index.json")) {
        safetensors.push_back(name);
      } else if (IsTorchName(name)) {
        torch.push_back(name);
      }
    }
    SDPO_CHECK(!ec, path, ": cannot list directory: ", ec.message());
    if (!safetensors.empty() || torch.empty()) return ShardedCheckpoint::Open(path);
    std::sort(torch.begin(), torch.end());
    SDPO_CHECK(torch.size() == 1, path, ": ambiguous checkpoint directory: ", torch.size(),
               " torch files (", absl::StrJoin(torch, ", "),
               ") and no safetensors; pass the file to use");
    return TorchCheckpoint::Open((fs::path(path) / torch[0]).string());
  }
  if (IsTorchCheckpointFile(path)) return TorchCheckpoint::Open(path);
  return ShardedCheckpoint::Open(path);
}

}  // namespace sdpo
