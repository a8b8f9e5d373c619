// A thin wrapper over Debian's SentencePiece. Its header declares
// `absl::string_view` as std::string_view, which clashes with Debian's Abseil
// (its own string_view class), so it is included only in
// sentencepiece_backend.cc, which includes nothing of Abseil; this header
// exposes the few calls the tokenizer needs in standard C++ types.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sdpo::umt5 {

class SentencePieceBackend {
 public:
  // nullptr with *error set when the file cannot be loaded.
  static std::unique_ptr<SentencePieceBackend> Load(const std::string& path, std::string* error);
  ~SentencePieceBackend();
  // false with *error set on failure.
  bool Encode(std::string_view text, std::vector<int>* ids, std::string* error) const;
  int PieceSize() const;
  int EosId() const;  // -1 when the model has none
  int PadId() const;  // -1 when the model has none

 private:
  struct Impl;
  explicit SentencePieceBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdpo::umt5
