// A small, strict JSON (RFC 8259) reader and writer for checkpoint headers, shard indexes and
// model configs. Parse errors are sdpo::Error naming the source (a file path), the line, column
// and byte offset, and what was expected vs found.
//
// Deliberate restrictions (inputs may be hostile):
//   - nesting deeper than `max_depth` arrays/objects is rejected (no stack overflow);
//   - duplicate keys in an object are rejected (their meaning is ambiguous);
//   - strings must be valid UTF-8; \u escapes must form valid code points (paired surrogates);
//   - numbers follow the JSON grammar exactly (no NaN, Inf, hex, leading '+' or zeros) and must
//     be finite; an integer literal that fits in int64 is kept exact (Type::kInt).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sdpo::json {

class Value {
 public:
  enum class Type : uint8_t { kNull, kBool, kInt, kDouble, kString, kArray, kObject };
  using Array = std::vector<Value>;
  // Object members sorted by key (byte-wise), keys unique.
  using Object = std::vector<std::pair<std::string, Value>>;

  Value() = default;  // null
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Double(double d);
  static Value String(std::string s);
  static Value MakeArray(Array items);
  // Sorts the members by key; throws sdpo::Error on a duplicate key.
  static Value MakeObject(Object members);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_int() const { return type_ == Type::kInt; }
  bool is_number() const { return type_ == Type::kInt || type_ == Type::kDouble; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  // Typed accessors: throw sdpo::Error ("expected <type>, found <type>") on a type mismatch.
  bool as_bool() const;
  int64_t as_int() const;
  double as_double() const;  // kInt or kDouble
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;

  // Object lookup (binary search). find() returns nullptr when absent or not an object;
  // at() throws sdpo::Error naming the key when absent.
  const Value* find(std::string_view key) const;
  const Value& at(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key) != nullptr; }

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0.0;
  std::string string_;
  Array array_;
  Object object_;
};

const char* TypeName(Value::Type type);  // "null", "bool", "integer", "number", ...

constexpr int kDefaultMaxDepth = 64;

// Parses one JSON value; only whitespace may follow it. `source` names the input in errors.
Value Parse(std::string_view text, const std::string& source = "<json>",
            int max_depth = kDefaultMaxDepth);
// Reads and parses a whole file; errors name the path.
Value ParseFile(const std::string& path, int max_depth = kDefaultMaxDepth);

// Compact serialisation (object keys come out sorted). Doubles use the shortest representation
// that reads back to the same value.
std::string Serialize(const Value& value);
// A JSON string literal (with quotes) for `s`, which must be valid UTF-8.
std::string Quote(std::string_view s);


// Typed reads of a config value for `key`, with errors naming `source` (file or "config"), the
// key, the expected type and what was found. ExpectInt also accepts integral doubles (1.0).
int64_t ExpectInt(const Value& v, const std::string& key, const std::string& source);
double ExpectDouble(const Value& v, const std::string& key, const std::string& source);
bool ExpectBool(const Value& v, const std::string& key, const std::string& source);
std::string ExpectString(const Value& v, const std::string& key, const std::string& source);

}  // namespace sdpo::json
