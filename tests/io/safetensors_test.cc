#include "io/safetensors.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "io/json.h"
#include "tensor/dtype.h"
#include "tensor/error.h"

namespace sdpo {
namespace {

// ---- helpers --------------------------------------------------------------------------------

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

// A fresh directory per test under TEST_TMPDIR.
std::string TestDir() {
  const char* root = std::getenv("TEST_TMPDIR");
  std::string base = root != nullptr ? root : "/tmp";
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string dir = base + "/" + info->test_suite_name() + "." + info->name();
  std::string cmd = "rm -rf '" + dir + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(::mkdir(dir.c_str(), 0755), 0) << dir;
  return dir;
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string LengthPrefix(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// [u64 len][header][data]
std::string Image(const std::string& header, const std::string& data = "") {
  return LengthPrefix(header.size()) + header + data;
}

template <typename T>
std::string Bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

struct Owned {
  TensorToWrite spec;
  std::string bytes;
};

TensorToWrite Spec(const std::string& name, SafetensorsDType dtype, std::vector<int64_t> shape,
                   const std::string& bytes) {
  TensorToWrite t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = bytes.data();
  t.nbytes = bytes.size();
  return t;
}

// ---- dtypes ---------------------------------------------------------------------------------

TEST(SafetensorsDTypeTest, NamesSizesAndMapping) {
  struct Row {
    SafetensorsDType dtype;
    const char* name;
    size_t size;
    std::optional<DType> sdpo;
  };
  const Row rows[] = {
      {SafetensorsDType::kF64, "F64", 8, kF64}, {SafetensorsDType::kF32, "F32", 4, kF32},
      {SafetensorsDType::kF16, "F16", 2, kF16}, {SafetensorsDType::kBF16, "BF16", 2, kBF16},
      {SafetensorsDType::kI64, "I64", 8, kI64}, {SafetensorsDType::kI32, "I32", 4, kI32},
      {SafetensorsDType::kI16, "I16", 2, {}},   {SafetensorsDType::kI8, "I8", 1, {}},
      {SafetensorsDType::kU8, "U8", 1, {}},     {SafetensorsDType::kBool, "BOOL", 1, kBool},
  };
  for (const Row& r : rows) {
    EXPECT_STREQ(SafetensorsDTypeName(r.dtype), r.name);
    EXPECT_EQ(SafetensorsElementSize(r.dtype), r.size);
    EXPECT_EQ(ParseSafetensorsDType(r.name), r.dtype);
    EXPECT_EQ(ToDType(r.dtype), r.sdpo);
    if (r.sdpo) {
      EXPECT_EQ(ToSafetensorsDType(*r.sdpo), r.dtype);
      EXPECT_EQ(ElementSize(*r.sdpo), r.size);
    }
  }
  EXPECT_FALSE(ParseSafetensorsDType("f32").has_value());
  EXPECT_FALSE(ParseSafetensorsDType("F8_E4M3").has_value());
}

// ---- round trips ----------------------------------------------------------------------------

TEST(SafetensorsTest, RoundTripEveryDType) {
  const std::string dir = TestDir();
  const std::string path = dir + "/all.safetensors";
  // Values that every dtype represents exactly.
  const std::vector<double> values = {0, 1, -2, 3, 5, -7};
  std::vector<std::string> storage;
  std::vector<TensorToWrite> tensors;
  auto add = [&](const std::string& name, SafetensorsDType dtype, std::string bytes) {
    storage.push_back(std::move(bytes));
    tensors.push_back(Spec(name, dtype, {2, 3}, storage.back()));
  };
  storage.reserve(16);
  std::vector<double> f64(values);
  std::vector<float> f32(values.begin(), values.end());
  std::vector<uint16_t> f16, bf16;
  for (double v : values) {
    f16.push_back(FloatToF16Bits(static_cast<float>(v)));
    bf16.push_back(FloatToBF16Bits(static_cast<float>(v)));
  }
  std::vector<int64_t> i64(values.begin(), values.end());
  std::vector<int32_t> i32(values.begin(), values.end());
  std::vector<int16_t> i16(values.begin(), values.end());
  std::vector<int8_t> i8(values.begin(), values.end());
  std::vector<uint8_t> u8 = {0, 1, 2, 3, 5, 255};
  std::vector<uint8_t> b = {0, 1, 1, 0, 1, 0};
  add("t_f64", SafetensorsDType::kF64, Bytes(f64));
  add("t_f32", SafetensorsDType::kF32, Bytes(f32));
  add("t_f16", SafetensorsDType::kF16, Bytes(f16));
  add("t_bf16", SafetensorsDType::kBF16, Bytes(bf16));
  add("t_i64", SafetensorsDType::kI64, Bytes(i64));
  add("t_i32", SafetensorsDType::kI32, Bytes(i32));
  add("t_i16", SafetensorsDType::kI16, Bytes(i16));
  add("t_i8", SafetensorsDType::kI8, Bytes(i8));
  add("t_u8", SafetensorsDType::kU8, Bytes(u8));
  add("t_bool", SafetensorsDType::kBool, Bytes(b));
  WriteSafetensors(path, tensors);

  auto file = SafetensorsFile::Open(path);
  EXPECT_EQ(file->path(), path);
  EXPECT_TRUE(file->metadata().empty());
  ASSERT_EQ(file->tensors().size(), tensors.size());
  std::vector<std::string> names = file->names();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  size_t data_bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorToWrite& t = tensors[i];
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(file->contains(t.name));
    const TensorEntry& e = file->at(t.name);
    EXPECT_EQ(e.name, t.name);
    EXPECT_EQ(e.dtype, t.dtype);
    EXPECT_EQ(e.shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(e.numel, 6);
    ASSERT_EQ(e.nbytes, t.nbytes);
    EXPECT_EQ(std::memcmp(e.data, t.data, e.nbytes), 0);
    // The writer aligns every tensor to its element size (in the file and in memory).
    EXPECT_EQ(e.offset % SafetensorsElementSize(e.dtype), 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(e.data) % SafetensorsElementSize(e.dtype), 0u);
    data_bytes += e.nbytes;
    std::vector<double> got = ReadAsF64(e);
    std::vector<float> got32 = ReadAsF32(e);
    ASSERT_EQ(got.size(), 6u);
    for (size_t k = 0; k < 6; ++k) {
      double want = values[k];
      if (t.dtype == SafetensorsDType::kU8) want = u8[k];
      if (t.dtype == SafetensorsDType::kBool) want = b[k];
      EXPECT_EQ(got[k], want) << k;
      EXPECT_EQ(got32[k], static_cast<float>(want)) << k;
    }
  }
  // Data section is contiguous and starts at a multiple of 8.
  std::string raw = ReadBytes(path);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(raw.size(), 8 + n + data_bytes);
  EXPECT_EQ(file->file_size(), raw.size());
}

TEST(SafetensorsTest, ScalarsEmptyTensorsAndNoTensors) {
  const std::string dir = TestDir();
  std::string scalar = Bytes(std::vector<float>{2.5f});
  std::vector<TensorToWrite> tensors = {
      Spec("scalar", SafetensorsDType::kF32, {}, scalar),
      Spec("empty", SafetensorsDType::kF64, {0, 4}, ""),
      Spec("empty2", SafetensorsDType::kI8, {3, 0}, ""),
  };
  WriteSafetensors(dir + "/a.safetensors", tensors);
  auto file = SafetensorsFile::Open(dir + "/a.safetensors");
  EXPECT_EQ(file->at("scalar").shape.size(), 0u);
  EXPECT_EQ(file->at("scalar").numel, 1);
  EXPECT_EQ(ReadAsF32(file->at("scalar")), std::vector<float>{2.5f});
  EXPECT_EQ(file->at("empty").numel, 0);
  EXPECT_EQ(file->at("empty").nbytes, 0u);
  EXPECT_EQ(file->at("empty").shape, (std::vector<int64_t>{0, 4}));
  EXPECT_TRUE(ReadAsF64(file->at("empty2")).empty());

  WriteSafetensors(dir + "/none.safetensors", {}, {{"k", "v"}});
  auto none = SafetensorsFile::Open(dir + "/none.safetensors");
  EXPECT_TRUE(none->tensors().empty());
  EXPECT_EQ(none->metadata().at("k"), "v");
}

TEST(SafetensorsTest, MetadataRoundTrip) {
  const std::string dir = TestDir();
  std::map<std::string, std::string> meta = {
      {"format", "pt"},
      {"config", R"({"dim": 1536, "eps": 1e-06, "name": "wan\u00e9"})"},
      {"quotes \" and \\ and\nnewline\ttab\x01", "caf\xC3\xA9 \xF0\x9F\x98\x80"},
      {"empty", ""},
  };
  std::string data = Bytes(std::vector<float>{1, 2});
  WriteSafetensors(dir + "/m.safetensors", {Spec("x", SafetensorsDType::kF32, {2}, data)}, meta);
  auto file = SafetensorsFile::Open(dir + "/m.safetensors");
  EXPECT_EQ(file->metadata(), meta);
  // The header starts with __metadata__ and keeps keys sorted.
  std::string raw = ReadBytes(dir + "/m.safetensors");
  EXPECT_EQ(raw.substr(8, 16), "{\"__metadata__\":");
}

TEST(SafetensorsTest, HeaderKeysSortedAndPaddedWithSpaces) {
  const std::string dir = TestDir();
  std::string a = Bytes(std::vector<uint8_t>{1, 2, 3});
  std::string b = Bytes(std::vector<double>{1});
  WriteSafetensors(dir + "/s.safetensors", {Spec("zeta", SafetensorsDType::kU8, {3}, a),
                                            Spec("alpha", SafetensorsDType::kF64, {1}, b)});
  std::string raw = ReadBytes(dir + "/s.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  std::string header = raw.substr(8, n);
  std::string want =
      "{\"alpha\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
      "\"zeta\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}";
  want.append((8 - (8 + want.size()) % 8) % 8, ' ');
  EXPECT_EQ(header, want);
  EXPECT_EQ((8 + n) % 8, 0u);
}

TEST(SafetensorsTest, ReadsUnalignedAndPaddedFilesFromOtherWriters) {
  const std::string dir = TestDir();
  // Header length 83 (odd): the data is unaligned in memory; trailing spaces are allowed, and
  // tensors need not tile the buffer (a gap) or be listed in offset order.
  std::string header = R"({"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},)"
                       R"("a":{"dtype":"F32","shape":[1],"data_offsets":[6,10]}}   )";
  std::string data;
  uint16_t bf[2] = {FloatToBF16Bits(1.5f), FloatToBF16Bits(-3.0f)};
  data.append(reinterpret_cast<const char*>(bf), 4);
  data.append(2, '\x7f');  // gap
  float f = 0.25f;
  data.append(reinterpret_cast<const char*>(&f), 4);
  WriteBytes(dir + "/u.safetensors", Image(header, data));
  auto file = SafetensorsFile::Open(dir + "/u.safetensors");
  EXPECT_EQ(ReadAsF32(file->at("b")), (std::vector<float>{1.5f, -3.0f}));
  EXPECT_EQ(ReadAsF32(file->at("a")), std::vector<float>{0.25f});
  EXPECT_EQ(file->names(), (std::vector<std::string>{"a", "b"}));
}

TEST(SafetensorsTest, ReducedFloatConversion) {
  const std::string dir = TestDir();
  std::vector<uint16_t> half = {0x3C00, 0xC000, 0x3555, 0x7C00, 0x0001};  // 1, -2, ~1/3, inf, min
  std::vector<uint16_t> bf = {0x3F80, 0xC040, 0x7F80, 0x0000};            // 1, -3, inf, 0
  std::string hb = Bytes(half), bb = Bytes(bf);
  WriteSafetensors(dir + "/r.safetensors", {Spec("h", SafetensorsDType::kF16, {5}, hb),
                                            Spec("b", SafetensorsDType::kBF16, {4}, bb)});
  auto file = SafetensorsFile::Open(dir + "/r.safetensors");
  std::vector<float> h = ReadAsF32(file->at("h"));
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.0f);
  EXPECT_NEAR(h[2], 1.0f / 3.0f, 1e-3f);
  EXPECT_TRUE(std::isinf(h[3]));
  EXPECT_EQ(h[4], std::ldexp(1.0f, -24));
  EXPECT_EQ(ReadAsF64(file->at("b")), (std::vector<double>{1.0, -3.0, INFINITY, 0.0}));
}

TEST(SafetensorsTest, MissingKeyErrorNamesFileAndKey) {
  const std::string dir = TestDir();
  std::string data = Bytes(std::vector<float>{1});
  WriteSafetensors(dir + "/k.safetensors", {Spec("present", SafetensorsDType::kF32, {1}, data)});
  auto file = SafetensorsFile::Open(dir + "/k.safetensors");
  EXPECT_EQ(file->find("absent"), nullptr);
  EXPECT_FALSE(file->contains("absent"));
  std::string msg = ErrorOf([&] { file->at("blocks.0.absent.weight"); });
  EXPECT_NE(msg.find(dir + "/k.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"blocks.0.absent.weight\""), std::string::npos) << msg;
}

TEST(SafetensorsTest, OpenErrors) {
  const std::string dir = TestDir();
  std::string msg = ErrorOf([&] { SafetensorsFile::Open(dir + "/missing.safetensors"); });
  EXPECT_NE(msg.find(dir + "/missing.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
  msg = ErrorOf([&] { SafetensorsFile::Open(dir); });
  EXPECT_NE(msg.find("not a regular file"), std::string::npos) << msg;
}

// ---- atomic writes --------------------------------------------------------------------------

TEST(SafetensorsTest, AtomicWriteLeavesNoTempAndReplaces) {
  const std::string dir = TestDir();
  const std::string path = dir + "/ckpt.safetensors";
  std::string first = Bytes(std::vector<float>{1, 2, 3});
  WriteSafetensors(path, {Spec("w", SafetensorsDType::kF32, {3}, first)}, {{"step", "1"}});
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"ckpt.safetensors"});

  // A reader of the old file keeps a consistent view while the file is replaced.
  auto old_file = SafetensorsFile::Open(path);
  std::string second = Bytes(std::vector<double>{4, 5});
  WriteSafetensors(path, {Spec("v", SafetensorsDType::kF64, {2}, second)}, {{"step", "2"}});
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"ckpt.safetensors"});
  auto new_file = SafetensorsFile::Open(path);
  EXPECT_EQ(new_file->metadata().at("step"), "2");
  EXPECT_FALSE(new_file->contains("w"));
  EXPECT_EQ(ReadAsF64(new_file->at("v")), (std::vector<double>{4, 5}));
  EXPECT_EQ(old_file->metadata().at("step"), "1");
  EXPECT_EQ(ReadAsF32(old_file->at("w")), (std::vector<float>{1, 2, 3}));
}

TEST(SafetensorsTest, WriterRejectsBadInputWithoutTouchingTheFile) {
  const std::string dir = TestDir();
  const std::string path = dir + "/bad.safetensors";
  std::string four = Bytes(std::vector<float>{1});
  struct Case {
    std::vector<TensorToWrite> tensors;
    const char* expect;
  };
  const Case cases[] = {
      {{Spec("w", SafetensorsDType::kF32, {2}, four)}, "needs 8 bytes, but 4 were given"},
      {{Spec("w", SafetensorsDType::kF32, {-1}, four)}, "negative dimension"},
      {{Spec("w", SafetensorsDType::kF32, {1}, four), Spec("w", SafetensorsDType::kF32, {1}, four)},
       "given twice"},
      {{Spec("__metadata__", SafetensorsDType::kF32, {1}, four)}, "reserved"},
      {{Spec("", SafetensorsDType::kF32, {1}, four)}, "empty name"},
      {{Spec("w", SafetensorsDType::kU8, {int64_t{1} << 40, int64_t{1} << 40}, four)}, "overflows"},
      {{Spec("bad \xFF utf8", SafetensorsDType::kF32, {1}, four)}, "invalid UTF-8"},
  };
  for (const Case& c : cases) {
    std::string msg = ErrorOf([&] { WriteSafetensors(path, c.tensors); });
    EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
    EXPECT_TRUE(ListDir(dir).empty()) << msg;
  }
  TensorToWrite null_data = Spec("w", SafetensorsDType::kF32, {1}, four);
  null_data.data = nullptr;
  EXPECT_NE(ErrorOf([&] { WriteSafetensors(path, {null_data}); }).find("null"), std::string::npos);
  std::string msg = ErrorOf([&] { WriteSafetensors(dir + "/no/such/dir/x.safetensors", {}); });
  EXPECT_NE(msg.find(dir + "/no/such/dir/x.safetensors"), std::string::npos) << msg;
  EXPECT_TRUE(ListDir(dir).empty());
}

// ---- sharded checkpoints --------------------------------------------------------------------

void WriteTwoShards(const std::string& dir, const std::string& index_name) {
  static const std::string a = Bytes(std::vector<float>{1, 2, 3, 4});
  static const std::string b = Bytes(std::vector<double>{5});
  static const std::string c = Bytes(std::vector<uint16_t>{FloatToBF16Bits(6.0f)});
  WriteSafetensors(dir + "/model-00001-of-00002.safetensors",
                   {Spec("blocks.0.w", SafetensorsDType::kF32, {2, 2}, a),
                    Spec("blocks.0.b", SafetensorsDType::kF64, {1}, b)},
                   {{"format", "pt"}});
  WriteSafetensors(dir + "/model-00002-of-00002.safetensors",
                   {Spec("head.w", SafetensorsDType::kBF16, {1}, c),
                    Spec("unlisted", SafetensorsDType::kBF16, {1}, c)});
  json::Value index = json::Value::MakeObject({
      {"metadata", json::Value::MakeObject({{"total_size", json::Value::Int(26)},
                                            {"note", json::Value::String("two shards")}})},
      {"weight_map", json::Value::MakeObject({
                         {"blocks.0.w", json::Value::String("model-00001-of-00002.safetensors")},
                         {"blocks.0.b", json::Value::String("model-00001-of-00002.safetensors")},
                         {"head.w", json::Value::String("model-00002-of-00002.safetensors")},
                     })},
  });
  WriteBytes(dir + "/" + index_name, json::Serialize(index));
}

void CheckTwoShards(const ShardedCheckpoint& ckpt) {
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"blocks.0.b", "blocks.0.w", "head.w"}));
  EXPECT_EQ(ckpt.shards().size(), 2u);
  EXPECT_EQ(ckpt.metadata().at("total_size"), "26");
  EXPECT_EQ(ckpt.metadata().at("note"), "two shards");
  EXPECT_EQ(ReadAsF32(ckpt.at("blocks.0.w")), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(ReadAsF64(ckpt.at("blocks.0.b")), std::vector<double>{5});
  EXPECT_EQ(ReadAsF32(ckpt.at("head.w")), std::vector<float>{6});
  EXPECT_NE(ckpt.shard_of("head.w").path().find("model-00002-of-00002.safetensors"),
            std::string::npos);
  EXPECT_EQ(&ckpt.shard_of("blocks.0.w"), &ckpt.shard_of("blocks.0.b"));  // opened once
  EXPECT_TRUE(ckpt.contains("head.w"));
  EXPECT_FALSE(ckpt.contains("unlisted"));  // the weight_map is authoritative
  std::string msg = ErrorOf([&] { ckpt.at("missing.key"); });
  EXPECT_NE(msg.find(ckpt.path()), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"missing.key\""), std::string::npos) << msg;
}

TEST(ShardedCheckpointTest, LoadsViaIndexAndDirectory) {
  const std::string dir = TestDir();
  WriteTwoShards(dir, "model.safetensors.index.json");
  auto by_index = ShardedCheckpoint::Open(dir + "/model.safetensors.index.json");
  EXPECT_EQ(by_index->path(), dir + "/model.safetensors.index.json");
  CheckTwoShards(*by_index);
  auto by_dir = ShardedCheckpoint::Open(dir);
  EXPECT_EQ(by_dir->path(), dir + "/model.safetensors.index.json");
  CheckTwoShards(*by_dir);
}

TEST(ShardedCheckpointTest, SingleFileAndDirectoryWithOneFile) {
  const std::string dir = TestDir();
  std::string a = Bytes(std::vector<float>{7});
  WriteSafetensors(dir + "/only.safetensors", {Spec("x", SafetensorsDType::kF32, {1}, a)},
                   {{"format", "pt"}});
  for (const std::string& p : {dir + "/only.safetensors", dir}) {
    auto ckpt = ShardedCheckpoint::Open(p);
    EXPECT_EQ(ckpt->path(), dir + "/only.safetensors");
    EXPECT_EQ(ckpt->names(), std::vector<std::string>{"x"});
    EXPECT_EQ(ckpt->metadata().at("format"), "pt");
    EXPECT_EQ(ReadAsF32(ckpt->at("x")), std::vector<float>{7});
    EXPECT_EQ(ckpt->shards().size(), 1u);
  }
}

TEST(ShardedCheckpointTest, Errors) {
  const std::string dir = TestDir();
  std::string a = Bytes(std::vector<float>{7});
  WriteSafetensors(dir + "/s1.safetensors", {Spec("x", SafetensorsDType::kF32, {1}, a)});
  WriteSafetensors(dir + "/s2.safetensors", {Spec("y", SafetensorsDType::kF32, {1}, a)});
  struct Case {
    const char* index;
    std::vector<std::string> expect;
  };
  const Case cases[] = {
      {R"({"weight_map": {"x": "s1.safetensors", "z": "s2.safetensors"}})",
       {"\"z\"", "s2.safetensors", "does not contain it"}},
      {R"({"weight_map": {"x": "../s1.safetensors"}})", {"\"x\"", "relative path"}},
      {R"({"weight_map": {"x": "/etc/passwd"}})", {"\"x\"", "relative path"}},
      {R"({"weight_map": {"x": "missing.safetensors"}})", {"missing.safetensors", "cannot open"}},
      {R"({"weight_map": {"x": 3}})", {"\"x\"", "shard file name"}},
      {R"({"weight_map": {}})", {"empty"}},
      {R"({"weight_map": ["x"]})", {"weight_map", "found a JSON array"}},
      {R"({"metadata": {}})", {"no \"weight_map\""}},
      {R"({"metadata": 3, "weight_map": {"x": "s1.safetensors"}})", {"\"metadata\""}},
      {R"([1])", {"must be a JSON object"}},
      {R"({"weight_map": {"x": "s1.safetensors",})", {"invalid JSON"}},
  };
  int i = 0;
  for (const Case& c : cases) {
    std::string index = dir + "/bad" + std::to_string(i++) + ".safetensors.index.json";
    WriteBytes(index, c.index);
    std::string msg = ErrorOf([&] { ShardedCheckpoint::Open(index); });
    EXPECT_NE(msg.find(index), std::string::npos) << msg;
    for (const std::string& e : c.expect) EXPECT_NE(msg.find(e), std::string::npos) << msg;
  }
  // Directories: several index files, several files without index, nothing.
  std::string msg = ErrorOf([&] { ShardedCheckpoint::Open(dir); });
  EXPECT_NE(msg.find("several index files"), std::string::npos) << msg;
  const std::string two = dir + "/two";
  ASSERT_EQ(::mkdir(two.c_str(), 0755), 0);
  WriteSafetensors(two + "/a.safetensors", {});
  WriteSafetensors(two + "/b.safetensors", {});
  msg = ErrorOf([&] { ShardedCheckpoint::Open(two); });
  EXPECT_NE(msg.find("a.safetensors, b.safetensors"), std::string::npos) << msg;
  const std::string empty = dir + "/empty";
  ASSERT_EQ(::mkdir(empty.c_str(), 0755), 0);
  msg = ErrorOf([&] { ShardedCheckpoint::Open(empty); });
  EXPECT_NE(msg.find(empty), std::string::npos) << msg;
  EXPECT_NE(msg.find("no *.safetensors.index.json or *.safetensors"), std::string::npos) << msg;
}

// ---- malformed files ------------------------------------------------------------------------

struct Malformed {
  const char* name;
  std::string bytes;
  std::vector<std::string> expect;  // substrings of the message besides the file path
};

std::string Entry(const std::string& body) { return "{\"w\":{" + body + "}}"; }

std::vector<Malformed> MalformedCases() {
  const std::string f32x4 = std::string(16, '\0');
  std::string nested_arrays = "{\"w\":" + std::string(100000, '[') + "}";
  std::string nested_objects;
  for (int i = 0; i < 20000; ++i) nested_objects += "{\"a\":";
  return {
      {"empty_file", "", {"0 bytes", "fewer than the 8-byte"}},
      {"five_bytes", std::string("\x05\x00\x00\x00\x00", 5), {"5 bytes"}},
      {"header_length_zero", LengthPrefix(0) + "{}", {"header length is 0"}},
      {"huge_header_length",
       LengthPrefix(~uint64_t{0}) + "{}",
       {"header length 18446744073709551615", "exceeds the limit"}},
      {"header_over_100mb", LengthPrefix(100'000'001) + "{}", {"exceeds the limit of 100000000"}},
      {"truncated_header",
       LengthPrefix(64) + "{\"w\":{\"dtype\":\"F32\"",
       {"header length 64", "exceeds the 19 bytes", "truncated"}},
      {"not_json", Image("hello, world"), {"invalid JSON", "line 1, column 1"}},
      {"json_array", Image("[1, 2, 3]"), {"must be a JSON object", "found a JSON array"}},
      {"json_string", Image("\"w\""), {"must be a JSON object", "found a JSON string"}},
      {"nul_padding", Image(std::string("{}\0\0\0\0\0\0", 8)), {"invalid JSON", "byte 0x00"}},
      {"trailing_garbage", Image("{} {}"), {"expected end of input"}},
      {"entry_not_object", Image("{\"w\":[1,2]}"), {"\"w\"", "expected an object"}},
      {"missing_dtype",
       Image(Entry(R"("shape":[4],"data_offsets":[0,16])"), f32x4),
       {"\"w\"", "missing \"dtype\""}},
      {"missing_shape",
       Image(Entry(R"("dtype":"F32","data_offsets":[0,16])"), f32x4),
       {"\"w\"", "missing \"shape\""}},
      {"missing_data_offsets",
       Image(Entry(R"("dtype":"F32","shape":[4])"), f32x4),
       {"\"w\"", "missing \"data_offsets\""}},
      {"dtype_not_string",
       Image(Entry(R"("dtype":4,"shape":[4],"data_offsets":[0,16])"), f32x4),
       {"\"w\"", "\"dtype\" must be a string", "found a JSON integer"}},
      {"unknown_dtype",
       Image(Entry(R"("dtype":"Q4_K","shape":[4],"data_offsets":[0,16])"), f32x4),
       {"\"w\"", "unsupported dtype \"Q4_K\"", "supported: F64, F32"}},
      {"lowercase_dtype",
       Image(Entry(R"("dtype":"f32","shape":[4],"data_offsets":[0,16])"), f32x4),
       {"\"w\"", "unsupported dtype \"f32\""}},
      {"shape_not_array",
       Image(Entry(R"("dtype":"F32","shape":4,"data_offsets":[0,16])"), f32x4),
       {"\"w\"", "\"shape\" must be an array"}},
      {"negative_dim",
       Image(Entry(R"("dtype":"F32","shape":[-4],"data_offsets":[0,16])"), f32x4),
       {"\"w\"", "must be non-negative, found -4"}},
      {"float_dim",
       Image(Entry(R"("dtype":"F32","shape":[4.0],"data_offsets":[0,16])"), f32x4),
       {"\"w\"", "must be an integer, found a JSON number"}},
      {"dim_beyond_int64",
       Image(Entry(R"("dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,16])"), f32x4),
       {"\"w\"", "must be an integer"}},
      {"shape_product_overflow",
       Image(Entry(R"("dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,16])"), f32x4),
       {"\"w\"", "[4294967296, 4294967296]", "more elements than fit in int64"}},
      {"byte_count_overflow",
       Image(Entry(R"("dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,16])"), f32x4),
       {"\"w\"", "overflows the byte count"}},
      {"size_mismatch",
       Image(Entry(R"("dtype":"F32","shape":[2,2],"data_offsets":[0,8])"), f32x4),
       {"\"w\"", "span 8 bytes", "[2, 2] of F32 needs 16 bytes"}},
      {"offsets_reversed",
       Image(Entry(R"("dtype":"F32","shape":[0],"data_offsets":[16,0])"), f32x4),
       {"\"w\"", "begin > end"}},
      {"offsets_one_element",
       Image(Entry(R"("dtype":"F32","shape":[4],"data_offsets":[16])"), f32x4),
       {"\"w\"", "[begin, end]", "an array of 1"}},
      {"offsets_not_array",
       Image(Entry(R"("dtype":"F32","shape":[4],"data_offsets":"0-16")"), f32x4),
       {"\"w\"", "[begin, end]", "found a JSON string"}},
      {"offsets_negative",
       Image(Entry(R"("dtype":"F32","shape":[4],"data_offsets":[-16,0])"), f32x4),
       {"\"w\"", "data_offsets begin must be non-negative"}},
      {"offsets_past_end",
       Image(Entry(R"("dtype":"F32","shape":[4],"data_offsets":[8,24])"), f32x4),
       {"\"w\"", "end beyond the data section of 16 bytes"}},
      {"truncated_data",
       Image(Entry(R"("dtype":"F32","shape":[4],"data_offsets":[0,16])"), std::string(10, '\0')),
       {"\"w\"", "beyond the data section of 10 bytes", "truncated"}},
      {"huge_offsets",
       Image(Entry(R"("dtype":"U8","shape":[16],"data_offsets":[9223372036854775800,)"
                   R"(9223372036854775816])"),
             f32x4),
       {"\"w\""}},
      {"overlapping_tensors",
       Image(R"({"first":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
             R"("second":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
             f32x4),
       {"\"first\"", "\"second\"", "overlap"}},
      {"identical_offsets",
       Image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
             R"("b":{"dtype":"I32","shape":[4],"data_offsets":[0,16]}})",
             f32x4),
       {"\"a\"", "\"b\"", "overlap"}},
      {"metadata_not_object",
       Image(R"({"__metadata__":"pt"})"),
       {"\"__metadata__\" must be an object", "found a JSON string"}},
      {"metadata_non_string_value",
       Image(R"({"__metadata__":{"format":"pt","step":3}})"),
       {"\"__metadata__\" entry \"step\" must be a string", "found a JSON integer"}},
      {"duplicate_keys",
       Image(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
             R"("w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
             f32x4),
       {"duplicate key \"w\""}},
      {"depth_bomb_arrays", Image(nested_arrays), {"nested deeper than the limit"}},
      {"depth_bomb_objects", Image(nested_objects), {"nested deeper than the limit"}},
      {"invalid_utf8_key",
       Image("{\"w\xC0\xAF\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", f32x4),
       {"invalid UTF-8"}},
      {"invalid_escape", Image(R"({"w\q":{}})"), {"valid escape"}},
      {"lone_surrogate", Image(R"({"w\ud800":{}})"), {"surrogate"}},
      {"control_char_in_key", Image("{\"w\n\":{}}"), {"control character"}},
      {"empty_tensor_name",
       Image(R"({"":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})"),
       {"empty name"}},
      {"unterminated_string", Image(R"({"w)"), {"unterminated string"}},
  };
}

TEST(SafetensorsMalformedTest, EveryCaseIsAnErrorNamingTheFile) {
  const std::string dir = TestDir();
  std::vector<Malformed> cases = MalformedCases();
  EXPECT_GE(cases.size(), 40u);
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir + "/" + c.name + ".safetensors";
    WriteBytes(path, c.bytes);
    std::string msg = ErrorOf([&] { SafetensorsFile::Open(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const std::string& e : c.expect) EXPECT_NE(msg.find(e), std::string::npos) << msg;
    // The same bytes through the in-memory entry point.
    std::string msg2 = ErrorOf([&] {
      ParseSafetensors(reinterpret_cast<const uint8_t*>(c.bytes.data()), c.bytes.size(), "mem");
    });
    EXPECT_NE(msg2.find("mem"), std::string::npos) << msg2;
  }
}

// Every truncation and many random byte edits of a valid file either parse or raise
// sdpo::Error; none crashes. (The libFuzzer target in io/fuzz goes much further.)
TEST(SafetensorsMalformedTest, TruncationsAndMutationsNeverCrash) {
  const std::string dir = TestDir();
  std::string a = Bytes(std::vector<float>{1, 2, 3});
  std::string b = Bytes(std::vector<uint16_t>{1, 2});
  WriteSafetensors(
      dir + "/v.safetensors",
      {Spec("a", SafetensorsDType::kF32, {3}, a), Spec("b", SafetensorsDType::kBF16, {2, 1}, b)},
      {{"format", "pt"}});
  const std::string valid = ReadBytes(dir + "/v.safetensors");
  auto parse = [](const std::string& s) {
    try {
      SafetensorsContents c =
          ParseSafetensors(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "mutant");
      for (const TensorEntry& e : c.tensors) {
        // Touch every byte each entry claims: must lie inside `s`.
        EXPECT_GE(e.data, reinterpret_cast<const uint8_t*>(s.data()));
        EXPECT_LE(e.data + e.nbytes, reinterpret_cast<const uint8_t*>(s.data()) + s.size());
        ReadAsF64(e);
      }
      return true;
    } catch (const Error&) {
      return false;
    }
  };
  EXPECT_TRUE(parse(valid));
  for (size_t len = 0; len < valid.size(); ++len) {
    EXPECT_FALSE(parse(valid.substr(0, len))) << len;
  }
  std::mt19937 rng(3);
  for (int i = 0; i < 5000; ++i) {
    std::string s = valid;
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) s[rng() % s.size()] = static_cast<char>(rng() & 0xFF);
    parse(s);
  }
}

}  // namespace
}  // namespace sdpo
