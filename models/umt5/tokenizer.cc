#include "models/umt5/tokenizer.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "models/umt5/sentencepiece_backend.h"

namespace sdpo::umt5 {
namespace {

struct HtmlEntity {
  const char* name;
  const char* utf8;
};
struct InvalidCharref {
  uint32_t from, to;
};
#include "models/umt5/html_entities.inc"

// --- UTF-8 <-> code points
// ------------------------------------------------------------------

std::u32string DecodeUtf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len = b0 < 0x80           ? 1
              : (b0 >> 5) == 0x6  ? 2
              : (b0 >> 4) == 0xe  ? 3
              : (b0 >> 3) == 0x1e ? 4
                                  : 0;
    SDPO_CHECK(len > 0 && i + len <= s.size(), "text is not valid UTF-8: byte ", i, " (0x",
               absl::Hex(b0), ")");
    uint32_t cp = len == 1 ? b0 : b0 & (0x7f >> len);
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      SDPO_CHECK((b & 0xc0) == 0x80, "text is not valid UTF-8: byte ", i + k);
      cp = (cp << 6) | (b & 0x3f);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    SDPO_CHECK(cp >= kMin[len] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff),
               "text is not valid UTF-8: byte ", i, " starts an overlong or invalid sequence");
    out.push_back(cp);
    i += len;
  }
  return out;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

std::string EncodeUtf8(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendUtf8(c, &out);
  return out;
}

// Python's str.isspace.
bool IsSpace(char32_t c) {
  return (c >= 0x9 && c <= 0xd) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

// --- html.unescape
// -------------------------------------------------------------------------

const char* FindEntity(const std::string& name) {
  auto less = [](const HtmlEntity& e, const std::string& n) {
    return std::strcmp(e.name, n.c_str()) < 0;
  };
  const HtmlEntity* end = kHtmlEntities + sizeof(kHtmlEntities) / sizeof(kHtmlEntities[0]);
  const HtmlEntity* it = std::lower_bound(kHtmlEntities, end, name, less);
  return it != end && name == it->name ? it->utf8 : nullptr;
}

bool IsDigit(char32_t c, bool hex) {
  return (c >= '0' && c <= '9') || (hex && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
}

// The replacement of the numeric reference `num` (saturated above 0x10ffff).
void AppendCharref(uint64_t num, std::string* out) {
  for (const InvalidCharref& r : kInvalidCharrefs) {
    if (r.from == num) return AppendUtf8(r.to, out);
  }
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return AppendUtf8(0xfffd, out);
  for (uint32_t c : kInvalidCodepoints) {
    if (c == num) return;
  }
  AppendUtf8(static_cast<uint32_t>(num), out);
}

}  // namespace

std::string HtmlUnescape(std::string_view text) {
  if (text.find('&') == std::string_view::npos) return std::string(text);
  const std::u32string s = DecodeUtf8(text);
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '&') {
      AppendUtf8(s[i++], &out);
      continue;
    }
    // &#123;? | &#x1F;? | &name;? (1 to 32 characters other than \t \n \f space
    // < & # ;)
    size_t j = i + 1;
    if (j < s.size() && s[j] == '#') {
      const bool hex = j + 1 < s.size() && (s[j + 1] == 'x' || s[j + 1] == 'X');
      size_t k = j + (hex ? 2 : 1);
      uint64_t num = 0;
      const size_t digits_start = k;
      while (k < s.size() && IsDigit(s[k], hex)) {
        const uint32_t c = s[k];
        const uint32_t d = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
        num = std::min<uint64_t>(num * (hex ? 16 : 10) + d, uint64_t{1} << 40);
        ++k;
      }
      if (k == digits_start) {  // "&#" without digits: not a reference
        out.push_back('&');
        ++i;
        continue;
      }
      if (k < s.size() && s[k] == ';') ++k;
      AppendCharref(num, &out);
      i = k;
      continue;
    }
    size_t k = j;
    while (k < s.size() && k - j < 32 && s[k] != '\t' && s[k] != '\n' && s[k] != '\f' &&
           s[k] != ' ' && s[k] != '<' && s[k] != '&' && s[k] != '#' && s[k] != ';') {
      ++k;
    }
    if (k == j) {
      out.push_back('&');
      ++i;
      continue;
    }
    if (k < s.size() && s[k] == ';') ++k;
    const std::u32string name32 = s.substr(j, k - j);
    const std::string name = EncodeUtf8(name32);
    if (const char* r = FindEntity(name)) {
      out += r;
    } else {
      // The longest prefix (at least 2 characters) that is a name, then the
      // rest as it was.
      bool found = false;
      for (size_t x = name32.size() - 1; x > 1; --x) {
        if (const char* p = FindEntity(EncodeUtf8(name32.substr(0, x)))) {
          out += p;
          out += EncodeUtf8(name32.substr(x));
          found = true;
          break;
        }
      }
      if (!found) out += "&" + name;
    }
    i = k;
  }
  return out;
}

std::string CleanPrompt(std::string_view text) {
  const std::u32string unescaped = DecodeUtf8(HtmlUnescape(HtmlUnescape(text)));
  // Runs of whitespace -> one space; leading and trailing ones dropped.
  std::u32string out;
  bool pending_space = false;
  for (char32_t c : unescaped) {
    if (IsSpace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(U' ');
    pending_space = false;
    out.push_back(c);
  }
  return EncodeUtf8(out);
}

// -----------------------------------------------------------------------------
// Tokenizer

struct Tokenizer::Impl {
  std::unique_ptr<SentencePieceBackend> sp;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl, std::string path)
    : impl_(std::move(impl)), path_(std::move(path)) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::Open(const std::string& model_path) {
  auto impl = std::make_unique<Impl>();
  std::string error;
  impl->sp = SentencePieceBackend::Load(model_path, &error);
  SDPO_CHECK(impl->sp != nullptr, model_path, ": cannot load a SentencePiece model: ", error);
  SDPO_CHECK(impl->sp->EosId() >= 0, model_path, ": the SentencePiece model has no </s> piece");
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl), model_path));
}

int64_t Tokenizer::vocab_size() const { return impl_->sp->PieceSize(); }
int64_t Tokenizer::eos_id() const { return impl_->sp->EosId(); }
// T5's models define <pad> = 0; a model without one pads with 0 as the T5
// tokenizers do.
int64_t Tokenizer::pad_id() const { return std::max(0, impl_->sp->PadId()); }

std::vector<int64_t> Tokenizer::EncodeCleaned(std::string_view cleaned) const {
  std::vector<int> ids;
  std::string error;
  SDPO_CHECK(impl_->sp->Encode(cleaned, &ids, &error), path_,
             ": SentencePiece could not encode the text: ", error);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

Tokens Tokenizer::Encode(const std::vector<std::string>& texts, int64_t text_len) const {
  SDPO_CHECK(text_len >= 1 && text_len <= (int64_t{1} << 20),
             "Tokenizer: text_len must be in [1, 2^20], got ", text_len);
  const int64_t n = static_cast<int64_t>(texts.size());
  std::vector<int64_t> ids(static_cast<size_t>(n * text_len), pad_id());
  std::vector<int64_t> mask(static_cast<size_t>(n * text_len), 0);
  for (int64_t i = 0; i < n; ++i) {
    std::string cleaned;
    try {
      cleaned = CleanPrompt(texts[static_cast<size_t>(i)]);
    } catch (const Error& e) {
      SDPO_FAIL("prompt ", i, ": ", e.what());
    }
    std::vector<int64_t> pieces = EncodeCleaned(cleaned);
    if (static_cast<int64_t>(pieces.size()) > text_len - 1) pieces.resize(text_len - 1);
    pieces.push_back(eos_id());
    for (size_t j = 0; j < pieces.size(); ++j) {
      ids[static_cast<size_t>(i * text_len) + j] = pieces[j];
      mask[static_cast<size_t>(i * text_len) + j] = 1;
    }
  }
  return {Tensor::FromVector(ids, {n, text_len}, kI64),
          Tensor::FromVector(mask, {n, text_len}, kI64)};
}

}  // namespace sdpo::umt5
