// libFuzzer target for the PyTorch checkpoint reader (zip central directory + pickle machine).
// Build and run: io/fuzz/run_torch_pickle.sh; see docs/checkpoints.md ("Fuzzing").
//
// Each input is treated as a whole .pth image. The reader must either accept it or throw
// sdpo::Error; any other exception, crash, sanitizer report or entry outside the input (or its
// own copies) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "io/torch_pickle.h"
#include "tensor/error.h"

namespace {

bool Inside(const uint8_t* p, size_t n, const uint8_t* begin, size_t size) {
  return p >= begin && n <= size && p + n <= begin + size;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    sdpo::TorchContents contents = sdpo::ParseTorchCheckpoint(data, size, "fuzz-input");
    for (const sdpo::TensorEntry& e : contents.tensors) {
      bool ok = e.nbytes == 0 || Inside(e.data, e.nbytes, data, size);
      for (const std::vector<uint8_t>& copy : contents.owned) {
        ok = ok || Inside(e.data, e.nbytes, copy.data(), copy.size());
      }
      if (!ok) std::abort();
      // Read every claimed byte so ASan sees any escape from the buffers.
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < e.nbytes; ++i) sink ^= e.data[i];
      if (e.numel <= (1 << 16)) sdpo::ReadAsF64(e);
    }
  } catch (const sdpo::Error&) {
  }
  return 0;
}
