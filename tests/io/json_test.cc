#include "io/json.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "tensor/error.h"

namespace sdpo::json {
namespace {

// The message of the sdpo::Error that `f` throws ("" and a test failure when none).
template <typename F>
std::string ErrorOf(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an sdpo::Error";
  return "";
}

std::string ParseError(const std::string& text) {
  return ErrorOf([&] { Parse(text, "input.json"); });
}

TEST(JsonTest, Scalars) {
  EXPECT_TRUE(Parse("null").is_null());
  EXPECT_TRUE(Parse(" true ").as_bool());
  EXPECT_FALSE(Parse("false").as_bool());
  EXPECT_EQ(Parse("0").as_int(), 0);
  EXPECT_EQ(Parse("-0").as_int(), 0);
  EXPECT_EQ(Parse("42").as_int(), 42);
  EXPECT_EQ(Parse("-17").as_int(), -17);
  EXPECT_EQ(Parse("9223372036854775807").as_int(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(Parse("-9223372036854775808").as_int(), std::numeric_limits<int64_t>::min());
  // Beyond int64: kept as a double.
  Value big = Parse("9223372036854775808");
  EXPECT_EQ(big.type(), Value::Type::kDouble);
  EXPECT_DOUBLE_EQ(big.as_double(), 9223372036854775808.0);
  EXPECT_DOUBLE_EQ(Parse("1.5").as_double(), 1.5);
  EXPECT_DOUBLE_EQ(Parse("-2.5e3").as_double(), -2500.0);
  EXPECT_DOUBLE_EQ(Parse("1E-2").as_double(), 0.01);
  EXPECT_DOUBLE_EQ(Parse("3e+2").as_double(), 300.0);
  EXPECT_EQ(Parse("1.0").type(), Value::Type::kDouble);
  EXPECT_EQ(Parse("1e0").type(), Value::Type::kDouble);
  EXPECT_DOUBLE_EQ(Parse("7").as_double(), 7.0);  // an integer reads as a double too
  EXPECT_EQ(Parse("1e-400").as_double(), 0.0);    // underflow rounds to zero
  EXPECT_EQ(Parse("\"hi\"").as_string(), "hi");
}

TEST(JsonTest, StringEscapesAndUtf8) {
  EXPECT_EQ(Parse(R"("a\"b\\c\/d\b\f\n\r\t")").as_string(), "a\"b\\c/d\b\f\n\r\t");
  EXPECT_EQ(Parse(R"("\u00e9\u4e2D")").as_string(), "\xC3\xA9\xE4\xB8\xAD");
  EXPECT_EQ(Parse(R"("\ud83d\ude00")").as_string(), "\xF0\x9F\x98\x80");  // surrogate pair
  EXPECT_EQ(Parse(R"("\u0000")").as_string(), std::string(1, '\0'));
  EXPECT_EQ(Parse("\"\xC3\xA9\xF0\x9F\x98\x80\"").as_string(), "\xC3\xA9\xF0\x9F\x98\x80");
}

TEST(JsonTest, ArraysAndObjects) {
  Value v = Parse(R"( {"b": [1, 2.5, "x", null, [true]], "a": {"k": {}} , "c": []} )");
  ASSERT_TRUE(v.is_object());
  const Value::Object& members = v.as_object();
  ASSERT_EQ(members.size(), 3u);
  EXPECT_EQ(members[0].first, "a");  // sorted by key
  EXPECT_EQ(members[1].first, "b");
  EXPECT_EQ(members[2].first, "c");
  const Value::Array& b = v.at("b").as_array();
  ASSERT_EQ(b.size(), 5u);
  EXPECT_EQ(b[0].as_int(), 1);
  EXPECT_DOUBLE_EQ(b[1].as_double(), 2.5);
  EXPECT_EQ(b[2].as_string(), "x");
  EXPECT_TRUE(b[3].is_null());
  EXPECT_TRUE(b[4].as_array()[0].as_bool());
  EXPECT_TRUE(v.at("a").at("k").as_object().empty());
  EXPECT_TRUE(v.at("c").as_array().empty());
  EXPECT_TRUE(v.contains("a"));
  EXPECT_FALSE(v.contains("z"));
  EXPECT_EQ(v.find("z"), nullptr);
  EXPECT_NE(ErrorOf([&] { v.at("zz"); }).find("\"zz\""), std::string::npos);
  EXPECT_EQ(Value::Int(3).find("a"), nullptr);
}

TEST(JsonTest, TypeMismatchThrows) {
  Value v = Parse("[1]");
  EXPECT_NE(ErrorOf([&] { v.as_object(); }).find("expected object, found array"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] { v.as_array()[0].as_string(); }).find("found integer"), std::string::npos);
  EXPECT_THROW(Parse("1.5").as_int(), Error);
  EXPECT_THROW(Parse("\"1\"").as_double(), Error);
}

TEST(JsonTest, RejectsMalformedInput) {
  const char* bad[] = {
      "",          "   ",      "nul",       "tru",         "01",         "-",
      "+1",        ".5",       "1.",        "1e",          "1e+",        "0x10",
      "NaN",       "Infinity", "-Infinity", "[1,]",        "[1 2]",      "{\"a\":1,}",
      "{\"a\" 1}", "{a:1}",    "{'a':1}",   "{\"a\":}",    "[",          "{",
      "\"abc",     "\"\\x\"",  "\"\\u12\"", "\"\\u12G4\"", "{} x",       "[] []",
      "1e400",     "-1e400",   "\"a\tb\"",  "\"\\",        "{\"a\":1 ,", "[1,2",
  };
  for (const char* text : bad) {
    SCOPED_TRACE(text);
    std::string msg = ParseError(text);
    EXPECT_NE(msg.find("input.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("invalid JSON"), std::string::npos) << msg;
  }
}

TEST(JsonTest, RejectsInvalidUtf8AndSurrogates) {
  const std::string bad[] = {
      "\"\xFF\"",              // never valid in UTF-8
      "\"\xC0\x80\"",          // overlong NUL
      "\"\xE0\x80\xAF\"",      // overlong '/'
      "\"\xED\xA0\x80\"",      // encoded surrogate
      "\"\xF4\x90\x80\x80\"",  // above U+10FFFF
      "\"\xC3\"",              // truncated sequence before the quote
      "\"\xE4\xB8\"",          // truncated 3-byte sequence
      "\"\x80\"",              // lone continuation byte
      "\"\\ud800\"",           // lone high surrogate
      "\"\\ud800\\u0041\"",    // high surrogate + non-surrogate
      "\"\\udc00\"",           // lone low surrogate
  };
  for (const std::string& text : bad) {
    SCOPED_TRACE(text);
    EXPECT_NE(ParseError(text).find("input.json"), std::string::npos);
  }
}

TEST(JsonTest, ErrorNamesLineAndColumn) {
  std::string msg = ParseError("{\n  \"a\": 1,\n  \"b\": ?\n}");
  EXPECT_NE(msg.find("input.json: invalid JSON at line 3, column 8"), std::string::npos) << msg;
  EXPECT_NE(msg.find("found '?'"), std::string::npos) << msg;
}

TEST(JsonTest, DuplicateKeysRejected) {
  std::string msg = ParseError(R"({"x": 1, "y": 2, "x": 3})");
  EXPECT_NE(msg.find("duplicate key \"x\""), std::string::npos) << msg;
  EXPECT_THROW(Value::MakeObject({{"k", Value()}, {"k", Value()}}), Error);
}

TEST(JsonTest, DepthLimit) {
  auto nested = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  EXPECT_NO_THROW(Parse(nested(kDefaultMaxDepth)));
  std::string msg = ParseError(nested(kDefaultMaxDepth + 1));
  EXPECT_NE(msg.find("nested deeper than the limit of 64"), std::string::npos) << msg;
  // A depth bomb fails fast instead of overflowing the stack.
  EXPECT_NE(ParseError(std::string(1000000, '[')).find("nested deeper"), std::string::npos);
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  EXPECT_NE(ParseError(objects).find("nested deeper"), std::string::npos);
  EXPECT_NO_THROW(Parse(nested(5), "x", 5));
  EXPECT_THROW(Parse(nested(6), "x", 5), Error);
}

TEST(JsonTest, SerializeRoundTrip) {
  Value v = Value::MakeObject({
      {"z", Value::MakeArray({Value::Int(-3), Value::Double(0.1), Value::Bool(false), Value()})},
      {"a", Value::String("quote\" backslash\\ nl\n tab\t ctl\x01 \xC3\xA9")},
      {"n", Value::Double(1.0)},
      {"i", Value::Int(std::numeric_limits<int64_t>::min())},
  });
  std::string text = Serialize(v);
  EXPECT_EQ(text.substr(0, 6), "{\"a\":\"");
  Value back = Parse(text);
  EXPECT_EQ(Serialize(back), text);
  EXPECT_EQ(back.at("a").as_string(), v.at("a").as_string());
  EXPECT_EQ(back.at("n").type(), Value::Type::kDouble);  // "1.0", not "1"
  EXPECT_EQ(back.at("i").as_int(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(Serialize(Value::Double(0.1)), "0.1");
  EXPECT_EQ(Serialize(Value::Double(1e300)), "1e+300");
  EXPECT_THROW(Serialize(Value::Double(std::nan(""))), Error);
  EXPECT_THROW(Serialize(Value::Double(INFINITY)), Error);
}

TEST(JsonTest, DoublesRoundTripExactly) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    uint64_t bits = rng();
    double d;
    std::memcpy(&d, &bits, 8);
    if (!std::isfinite(d)) continue;
    double back = Parse(Serialize(Value::Double(d))).as_double();
    EXPECT_EQ(std::memcmp(&back, &d, 8), 0) << Serialize(Value::Double(d));
  }
}

TEST(JsonTest, Quote) {
  EXPECT_EQ(Quote("plain"), "\"plain\"");
  EXPECT_EQ(Quote("a\"b\\c\n\x1f"), "\"a\\\"b\\\\c\\n\\u001f\"");
  EXPECT_EQ(Quote("\xE4\xB8\xAD"), "\"\xE4\xB8\xAD\"");
  EXPECT_THROW(Quote("bad \xFF"), Error);
  EXPECT_THROW(Quote("bad \xC3"), Error);
}

TEST(JsonTest, ParseFileErrorsNameThePath) {
  std::string msg = ErrorOf([] { ParseFile("/nonexistent/dir/config.json"); });
  EXPECT_NE(msg.find("/nonexistent/dir/config.json"), std::string::npos) << msg;
}

TEST(JsonTest, RandomMutationsNeverCrash) {
  const std::string seed =
      R"({"a": [1, -2.5e3, "x\u00e9\ud83d\ude00", true, null], "b": {"c": {}}})";
  std::mt19937 rng(11);
  int parsed = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string s = seed;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t pos = rng() % s.size();
      switch (rng() % 3) {
        case 0:
          s[pos] = static_cast<char>(rng() & 0xFF);
          break;
        case 1:
          s.erase(pos, 1 + rng() % 3);
          break;
        default:
          s.insert(pos, 1, "{}[]\",:\\0e-"[rng() % 12]);
      }
      if (s.empty()) s = "x";
    }
    try {
      Parse(s);
      ++parsed;
    } catch (const Error&) {
    }
  }
  EXPECT_GT(parsed, 0);
}

}  // namespace
}  // namespace sdpo::json
