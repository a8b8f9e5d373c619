// libFuzzer target for the safetensors header parser (and, through it, the JSON parser).
// Build and run: see docs/checkpoints.md ("Fuzzing").
//
// Each input is treated as a whole safetensors image. The parser must either accept it or throw
// sdpo::Error; any other exception, crash, sanitizer report or out-of-bounds entry is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/json.h"
#include "io/safetensors.h"
#include "tensor/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    sdpo::SafetensorsContents contents = sdpo::ParseSafetensors(data, size, "fuzz-input");
    for (const sdpo::TensorEntry& e : contents.tensors) {
      if (e.data < data || e.nbytes > size || e.data + e.nbytes > data + size) std::abort();
      // Read every claimed byte so ASan sees any escape from the buffer.
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < e.nbytes; ++i) sink ^= e.data[i];
      if (e.numel <= (1 << 16)) sdpo::ReadAsF64(e);
    }
  } catch (const sdpo::Error&) {
  }
  // The same bytes as a plain JSON document, and the serializer on whatever parses.
  try {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    sdpo::json::Value v = sdpo::json::Parse(text, "fuzz-json");
    std::string again = sdpo::json::Serialize(v);
    if (sdpo::json::Serialize(sdpo::json::Parse(again, "fuzz-json-2")) != again) std::abort();
  } catch (const sdpo::Error&) {
  }
  return 0;
}
