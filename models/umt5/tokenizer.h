// The text side of the T5 encoders: the official Wan prompt cleaning and the
// SentencePiece tokenizer (Debian's libsentencepiece, reading the checkpoint's
// `spiece.model`), as `HuggingfaceTokenizer(name, seq_len=text_len,
// clean='whitespace')` calls the T5 tokenizer: clean, encode, keep at most
// text_len - 1 pieces, append `</s>`, pad with `<pad>` to text_len; the mask is
// 1 on the tokens (with `</s>`) and 0 on the padding.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/tensor.h"

namespace sdpo::umt5 {

// Python's html.unescape: numeric references (with the standard's replacements)
// and the HTML5 named references (longest legacy prefix without ';', as Python
// does).
std::string HtmlUnescape(std::string_view text);

// whitespace_clean(basic_clean(text)) of wan/modules/tokenizers.py:
// HTML-unescaped twice and stripped, then every run of whitespace (Python's
// str.isspace: tabs, newlines, U+00A0, U+2003,
// ...) made one ASCII space and stripped. ftfy.fix_text is not applied (see
// docs/text.md). Throws sdpo::Error for text that is not valid UTF-8.
std::string CleanPrompt(std::string_view text);

struct Tokens {
  Tensor ids;   // i64 [N, text_len]
  Tensor mask;  // i64 [N, text_len]
};

class Tokenizer {
 public:
  // Throws sdpo::Error naming the file when it is missing or not a
  // SentencePiece model.
  static std::unique_ptr<Tokenizer> Open(const std::string& model_path);
  ~Tokenizer();

  // The pieces' ids of already cleaned text (no `</s>`).
  std::vector<int64_t> EncodeCleaned(std::string_view cleaned) const;
  // Cleans, encodes, truncates, appends `</s>` and pads every text.
  Tokens Encode(const std::vector<std::string>& texts, int64_t text_len) const;

  int64_t vocab_size() const;
  int64_t eos_id() const;  // `</s>`
  int64_t pad_id() const;  // `<pad>`
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl, std::string path);
  std::unique_ptr<Impl> impl_;
  std::string path_;
};

}  // namespace sdpo::umt5
