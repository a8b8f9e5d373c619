#include "io/json.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "absl/strings/charconv.h"
#include "absl/strings/str_cat.h"
#include "tensor/error.h"

namespace sdpo::json {
namespace {

bool IsContinuation(unsigned char c) { return (c & 0xC0u) == 0x80u; }

// Length of the well-formed UTF-8 sequence starting at p[0] (a byte >= 0x80), or 0 when the
// bytes are not one (overlong forms, surrogates and code points above U+10FFFF are rejected).
size_t Utf8SequenceLength(const unsigned char* p, size_t avail) {
  unsigned char c = p[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (avail < len) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < len; ++i) {
    if (!IsContinuation(p[i])) return 0;
  }
  return len;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Sorts members by key and returns the index of the first duplicate key, or -1.
int64_t SortMembers(Value::Object* members) {
  std::stable_sort(members->begin(), members->end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < members->size(); ++i) {
    if ((*members)[i].first == (*members)[i - 1].first) return static_cast<int64_t>(i);
  }
  return -1;
}

// A printable, bounded rendering of a key for error messages.
std::string ShowKey(std::string_view key) {
  constexpr size_t kMax = 80;
  std::string out;
  for (size_t i = 0; i < key.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(key[i]);
    if (c < 0x20 || c == 0x7F) {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (key.size() > kMax) absl::StrAppend(&out, "...(", key.size(), " bytes)");
  return absl::StrCat("\"", out, "\"");
}

class Parser {
 public:
  Parser(std::string_view text, const std::string& source, int max_depth)
      : text_(text), source_(source), max_depth_(max_depth) {}

  Value ParseDocument() {
    Value v = ParseValue(0);
    SkipWhitespace();
    if (pos_ != text_.size()) Fail("expected end of input after the JSON value");
    return v;
  }

 private:
  bool AtEnd() const { return pos_ >= text_.size(); }
  unsigned char Peek() const { return static_cast<unsigned char>(text_[pos_]); }

  std::string Found() const {
    if (AtEnd()) return "end of input";
    unsigned char c = Peek();
    if (c >= 0x20 && c < 0x7F) return absl::StrCat("'", std::string(1, static_cast<char>(c)), "'");
    return absl::StrCat("byte 0x", absl::Hex(c, absl::kZeroPad2));
  }

  std::string Where(size_t at) const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < at && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return absl::StrCat("line ", line, ", column ", column, " (byte ", at, ")");
  }

  [[noreturn]] void FailAt(size_t at, const std::string& message) const {
    SDPO_FAIL(source_, ": invalid JSON at ", Where(at), ": ", message);
  }
  [[noreturn]] void Fail(const std::string& expected) const {
    FailAt(pos_, absl::StrCat(expected, ", found ", Found()));
  }

  void SkipWhitespace() {
    while (!AtEnd()) {
      char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  void Expect(char c, const char* what) {
    if (AtEnd() || text_[pos_] != c) Fail(what);
    ++pos_;
  }

  Value ParseValue(int depth) {
    SkipWhitespace();
    if (AtEnd()) Fail("expected a value");
    switch (text_[pos_]) {
      case '{':
        return ParseObject(depth + 1);
      case '[':
        return ParseArray(depth + 1);
      case '"':
        return Value::String(ParseString());
      case 't':
        ParseLiteral("true");
        return Value::Bool(true);
      case 'f':
        ParseLiteral("false");
        return Value::Bool(false);
      case 'n':
        ParseLiteral("null");
        return Value();
      default:
        if (text_[pos_] == '-' || (text_[pos_] >= '0' && text_[pos_] <= '9')) return ParseNumber();
        Fail("expected a value");
    }
  }

  void CheckDepth(int depth) const {
    if (depth > max_depth_) {
      FailAt(pos_, absl::StrCat("arrays/objects nested deeper than the limit of ", max_depth_));
    }
  }

  Value ParseObject(int depth) {
    CheckDepth(depth);
    size_t start = pos_;
    ++pos_;  // '{'
    Value::Object members;
    SkipWhitespace();
    if (!AtEnd() && text_[pos_] == '}') {
      ++pos_;
      return Value::MakeObject(std::move(members));
    }
    while (true) {
      SkipWhitespace();
      if (AtEnd() || text_[pos_] != '"') Fail("expected a string key in object");
      std::string key = ParseString();
      SkipWhitespace();
      Expect(':', "expected ':' after object key");
      Value value = ParseValue(depth);
      members.emplace_back(std::move(key), std::move(value));
      SkipWhitespace();
      if (AtEnd()) Fail("expected ',' or '}' in object");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == '}') {
        ++pos_;
        break;
      }
      Fail("expected ',' or '}' in object");
    }
    int64_t dup = SortMembers(&members);
    if (dup >= 0) {
      FailAt(start, absl::StrCat("duplicate key ", ShowKey(members[dup].first),
                                 " in the object starting here"));
    }
    return Value::MakeObject(std::move(members));
  }

  Value ParseArray(int depth) {
    CheckDepth(depth);
    ++pos_;  // '['
    Value::Array items;
    SkipWhitespace();
    if (!AtEnd() && text_[pos_] == ']') {
      ++pos_;
      return Value::MakeArray(std::move(items));
    }
    while (true) {
      items.push_back(ParseValue(depth));
      SkipWhitespace();
      if (AtEnd()) Fail("expected ',' or ']' in array");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == ']') {
        ++pos_;
        break;
      }
      Fail("expected ',' or ']' in array");
    }
    return Value::MakeArray(std::move(items));
  }

  void ParseLiteral(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word)
      Fail(absl::StrCat("expected '", std::string(word), "'"));
    pos_ += word.size();
  }

  uint32_t ParseHex4() {
    if (text_.size() - pos_ < 4) {
      pos_ = text_.size();
      Fail("expected 4 hex digits after \\u");
    }
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_];
      uint32_t d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        d = c - 'A' + 10;
      } else {
        Fail("expected a hex digit in \\u escape");
      }
      v = v * 16 + d;
      ++pos_;
    }
    return v;
  }

  std::string ParseString() {
    size_t start = pos_;
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (AtEnd()) FailAt(start, "unterminated string starting here");
      unsigned char c = Peek();
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c == '\\') {
        ++pos_;
        if (AtEnd()) FailAt(start, "unterminated string starting here");
        char e = text_[pos_++];
        switch (e) {
          case '"':
            out.push_back('"');
            break;
          case '\\':
            out.push_back('\\');
            break;
          case '/':
            out.push_back('/');
            break;
          case 'b':
            out.push_back('\b');
            break;
          case 'f':
            out.push_back('\f');
            break;
          case 'n':
            out.push_back('\n');
            break;
          case 'r':
            out.push_back('\r');
            break;
          case 't':
            out.push_back('\t');
            break;
          case 'u': {
            size_t esc = pos_ - 2;
            uint32_t cp = ParseHex4();
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
              FailAt(esc, "unpaired low surrogate in \\u escape");
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (text_.substr(pos_, 2) != "\\u") {
                FailAt(esc, "high surrogate in \\u escape not followed by a low surrogate");
              }
              pos_ += 2;
              uint32_t lo = ParseHex4();
              if (lo < 0xDC00 || lo > 0xDFFF) {
                FailAt(esc, "high surrogate in \\u escape not followed by a low surrogate");
              }
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            AppendUtf8(cp, &out);
            break;
          }
          default:
            --pos_;
            Fail("expected a valid escape character after '\\'");
        }
        continue;
      }
      if (c < 0x20) Fail("unescaped control character in string");
      if (c < 0x80) {
        out.push_back(static_cast<char>(c));
        ++pos_;
        continue;
      }
      size_t len = Utf8SequenceLength(reinterpret_cast<const unsigned char*>(text_.data()) + pos_,
                                      text_.size() - pos_);
      if (len == 0) Fail("invalid UTF-8 in string");
      out.append(text_.data() + pos_, len);
      pos_ += len;
    }
  }

  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }

  Value ParseNumber() {
    size_t start = pos_;
    if (text_[pos_] == '-') ++pos_;
    if (AtEnd() || !IsDigit(text_[pos_])) Fail("expected a digit in number");
    if (text_[pos_] == '0') {
      ++pos_;
    } else {
      while (!AtEnd() && IsDigit(text_[pos_])) ++pos_;
    }
    bool integer = true;
    if (!AtEnd() && text_[pos_] == '.') {
      integer = false;
      ++pos_;
      if (AtEnd() || !IsDigit(text_[pos_])) Fail("expected a digit after '.' in number");
      while (!AtEnd() && IsDigit(text_[pos_])) ++pos_;
    }
    if (!AtEnd() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      integer = false;
      ++pos_;
      if (!AtEnd() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (AtEnd() || !IsDigit(text_[pos_])) Fail("expected a digit in exponent");
      while (!AtEnd() && IsDigit(text_[pos_])) ++pos_;
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    if (integer) {
      int64_t i = 0;
      auto r = std::from_chars(first, last, i);
      if (r.ec == std::errc() && r.ptr == last) return Value::Int(i);
      // Out of int64 range: fall through and keep it as a double.
    }
    double d = 0.0;
    auto r = absl::from_chars(first, last, d);
    if (r.ptr != last || r.ec == std::errc::invalid_argument) {
      FailAt(start, "malformed number");
    }
    if (r.ec == std::errc::result_out_of_range && std::fabs(d) > 1.0) {
      FailAt(start, absl::StrCat("number ", std::string(first, last), " overflows a double"));
    }
    // Underflow keeps the nearest representable value (0 or a subnormal).
    return Value::Double(d);
  }

  std::string_view text_;
  std::string source_;
  int max_depth_;
  size_t pos_ = 0;
};

void SerializeTo(const Value& v, std::string* out) {
  switch (v.type()) {
    case Value::Type::kNull:
      out->append("null");
      return;
    case Value::Type::kBool:
      out->append(v.as_bool() ? "true" : "false");
      return;
    case Value::Type::kInt:
      absl::StrAppend(out, v.as_int());
      return;
    case Value::Type::kDouble: {
      double d = v.as_double();
      SDPO_CHECK(std::isfinite(d), "json::Serialize: ", d, " cannot be represented in JSON");
      char buf[64];
      auto r = std::to_chars(buf, buf + sizeof(buf), d);
      SDPO_CHECK(r.ec == std::errc(), "json::Serialize: cannot format ", d);
      std::string_view s(buf, r.ptr - buf);
      out->append(s);
      // Keep it a double when read back ("1" would parse as an integer).
      if (s.find_first_of(".eE") == std::string_view::npos) out->append(".0");
      return;
    }
    case Value::Type::kString:
      out->append(Quote(v.as_string()));
      return;
    case Value::Type::kArray: {
      out->push_back('[');
      bool first = true;
      for (const Value& item : v.as_array()) {
        if (!first) out->push_back(',');
        first = false;
        SerializeTo(item, out);
      }
      out->push_back(']');
      return;
    }
    case Value::Type::kObject: {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, item] : v.as_object()) {
        if (!first) out->push_back(',');
        first = false;
        out->append(Quote(key));
        out->push_back(':');
        SerializeTo(item, out);
      }
      out->push_back('}');
      return;
    }
  }
}

}  // namespace

const char* TypeName(Value::Type type) {
  switch (type) {
    case Value::Type::kNull:
      return "null";
    case Value::Type::kBool:
      return "bool";
    case Value::Type::kInt:
      return "integer";
    case Value::Type::kDouble:
      return "number";
    case Value::Type::kString:
      return "string";
    case Value::Type::kArray:
      return "array";
    case Value::Type::kObject:
      return "object";
  }
  return "unknown";
}

Value Value::Bool(bool b) {
  Value v;
  v.type_ = Type::kBool;
  v.bool_ = b;
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.type_ = Type::kInt;
  v.int_ = i;
  return v;
}

Value Value::Double(double d) {
  Value v;
  v.type_ = Type::kDouble;
  v.double_ = d;
  return v;
}

Value Value::String(std::string s) {
  Value v;
  v.type_ = Type::kString;
  v.string_ = std::move(s);
  return v;
}

Value Value::MakeArray(Array items) {
  Value v;
  v.type_ = Type::kArray;
  v.array_ = std::move(items);
  return v;
}

Value Value::MakeObject(Object members) {
  int64_t dup = SortMembers(&members);
  SDPO_CHECK(dup < 0, "JSON object has a duplicate key ", ShowKey(members[dup].first));
  Value v;
  v.type_ = Type::kObject;
  v.object_ = std::move(members);
  return v;
}

#define SDPO_JSON_EXPECT(want) \
  SDPO_CHECK(type_ == (want), "JSON value: expected ", TypeName(want), ", found ", TypeName(type_))

bool Value::as_bool() const {
  SDPO_JSON_EXPECT(Type::kBool);
  return bool_;
}

int64_t Value::as_int() const {
  SDPO_JSON_EXPECT(Type::kInt);
  return int_;
}

double Value::as_double() const {
  if (type_ == Type::kInt) return static_cast<double>(int_);
  SDPO_JSON_EXPECT(Type::kDouble);
  return double_;
}

const std::string& Value::as_string() const {
  SDPO_JSON_EXPECT(Type::kString);
  return string_;
}

const Value::Array& Value::as_array() const {
  SDPO_JSON_EXPECT(Type::kArray);
  return array_;
}

const Value::Object& Value::as_object() const {
  SDPO_JSON_EXPECT(Type::kObject);
  return object_;
}

#undef SDPO_JSON_EXPECT

const Value* Value::find(std::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  auto it =
      std::lower_bound(object_.begin(), object_.end(), key,
                       [](const auto& member, std::string_view k) { return member.first < k; });
  if (it == object_.end() || it->first != key) return nullptr;
  return &it->second;
}

const Value& Value::at(std::string_view key) const {
  SDPO_CHECK(type_ == Type::kObject, "JSON value: expected object to look up key ", ShowKey(key),
             ", found ", TypeName(type_));
  const Value* v = find(key);
  SDPO_CHECK(v != nullptr, "JSON object has no key ", ShowKey(key));
  return *v;
}

Value Parse(std::string_view text, const std::string& source, int max_depth) {
  return Parser(text, source, max_depth).ParseDocument();
}

Value ParseFile(const std::string& path, int max_depth) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  SDPO_CHECK(f != nullptr, path, ": cannot open JSON file: ", std::strerror(errno));
  std::string text;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
  bool failed = std::ferror(f) != 0;
  int err = errno;
  std::fclose(f);
  SDPO_CHECK(!failed, path, ": error reading JSON file: ", std::strerror(err));
  return Parse(text, path, max_depth);
}

std::string Serialize(const Value& value) {
  std::string out;
  SerializeTo(value, &out);
  return out;
}

std::string Quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = p[i];
    if (c >= 0x80) {
      size_t len = Utf8SequenceLength(p + i, s.size() - i);
      SDPO_CHECK(len > 0, "json::Quote: invalid UTF-8 at byte ", i, " of ", ShowKey(s));
      out.append(s.data() + i, len);
      i += len;
      continue;
    }
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
        break;
      default:
        if (c < 0x20) {
          absl::StrAppend(&out, "\\u00", absl::Hex(c, absl::kZeroPad2));
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out.push_back('"');
  return out;
}


int64_t ExpectInt(const Value& v, const std::string& key, const std::string& source) {
  if (v.is_int()) return v.as_int();
  if (v.is_number() && std::floor(v.as_double()) == v.as_double() &&
      std::abs(v.as_double()) < 9e15) {
    return static_cast<int64_t>(v.as_double());
  }
  SDPO_FAIL(source, ": key \"", key, "\" must be an integer, found ", TypeName(v.type()), " ",
            Serialize(v));
}

double ExpectDouble(const Value& v, const std::string& key, const std::string& source) {
  SDPO_CHECK(v.is_number(), source, ": key \"", key, "\" must be a number, found ",
             TypeName(v.type()), " ", Serialize(v));
  return v.as_double();
}

bool ExpectBool(const Value& v, const std::string& key, const std::string& source) {
  SDPO_CHECK(v.is_bool(), source, ": key \"", key, "\" must be true or false, found ",
             TypeName(v.type()), " ", Serialize(v));
  return v.as_bool();
}

std::string ExpectString(const Value& v, const std::string& key, const std::string& source) {
  SDPO_CHECK(v.is_string(), source, ": key \"", key, "\" must be a string, found ",
             TypeName(v.type()), " ", Serialize(v));
  return v.as_string();
}

}  // namespace sdpo::json
