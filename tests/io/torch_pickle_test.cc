// The PyTorch checkpoint reader: files written by torch.save load bit-identically to the
// safetensors fixtures they were made from (tools/make_weight_variants.py), strided views and every
// dtype come out right, and hostile files (built here byte by byte) are refused with a message that
// names the problem.
#include "io/torch_pickle.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "tensor/dtype.h"
#include "tests/error_testing.h"
#include "tests/fixtures_path.h"
#include "tests/io/torch_file_builder.h"

namespace sdpo {
namespace {

using testing::BuiltTensor;
using testing::ExpectErrorContains;
using testing::PickleWriter;
using testing::StateDictPickle;
using testing::TorchZipEntries;
using testing::ZipArchiveBytes;
using testing::ZipFileEntry;

const std::string kTestData = "tests/io/testdata/";

TorchContents Parse(const std::string& bytes, const std::string& name = "hostile.pth") {
  return ParseTorchCheckpoint(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name);
}

std::string Bytes(const TensorEntry& e) {
  return std::string(reinterpret_cast<const char*>(e.data), e.nbytes);
}

std::vector<float> Floats(const TensorEntry& e) {
  EXPECT_EQ(e.dtype, SafetensorsDType::kF32) << e.name;
  return ReadAsF32(e);
}

// Every tensor of `pth` has the name, dtype, shape and bytes of the safetensors `reference`.
void ExpectSameTensors(const std::string& pth, const std::string& reference) {
  auto torch = TorchCheckpoint::Open(pth);
  auto ref = SafetensorsFile::Open(reference);
  ASSERT_EQ(torch->names(), ref->names());
  for (const TensorEntry& r : ref->tensors()) {
    const TensorEntry& t = torch->at(r.name);
    EXPECT_EQ(t.dtype, r.dtype) << r.name;
    EXPECT_EQ(t.shape, r.shape) << r.name;
    EXPECT_EQ(t.numel, r.numel) << r.name;
    EXPECT_TRUE(Bytes(t) == Bytes(r)) << r.name << ": bytes differ";
  }
}

TEST(TorchPickleTest, VaeFixtureSavedByTorchLoadsBitIdentically) {
  const std::string ref = testing::FixturePath("wan_vae/tiny_a.weights.safetensors");
  if (ref.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  ExpectSameTensors(kTestData + "wan_vae_tiny_a.pth", ref);
  EXPECT_EQ(TorchCheckpoint::Open(kTestData + "wan_vae_tiny_a.pth")->tensors().size(), 194u);
}

TEST(TorchPickleTest, DitFixtureSavedByTorchLoadsBitIdentically) {
  const std::string ref = testing::FixturePath("wan21/tiny_a.weights.safetensors");
  if (ref.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  ExpectSameTensors(kTestData + "wan21_tiny_a.pth", ref);
}

TEST(TorchPickleTest, Bf16CheckpointHoldsTheRoundedFixtureValues) {
  const std::string ref_path = testing::FixturePath("wan21/tiny_a.weights.safetensors");
  if (ref_path.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  auto torch = TorchCheckpoint::Open(kTestData + "wan21_tiny_a.bf16.pth");
  auto ref = SafetensorsFile::Open(ref_path);
  ASSERT_EQ(torch->names(), ref->names());
  for (const TensorEntry& r : ref->tensors()) {
    const TensorEntry& t = torch->at(r.name);
    ASSERT_EQ(t.dtype, SafetensorsDType::kBF16) << r.name;
    ASSERT_EQ(t.shape, r.shape) << r.name;
    const std::vector<float> values = ReadAsF32(r);
    // torch rounds f32 to bf16 to nearest even, as FloatToBF16Bits does: the bits must agree.
    for (size_t i = 0; i < values.size(); ++i) {
      uint16_t bits;
      std::memcpy(&bits, t.data + 2 * i, 2);
      ASSERT_EQ(bits, FloatToBF16Bits(values[i])) << r.name << "[" << i << "]";
    }
  }
}

TEST(TorchPickleTest, ViewsDtypesNestingAndScalars) {
  auto ck = TorchCheckpoint::Open(kTestData + "views.pth");
  const std::vector<std::string> expected = {
      "bf16",         "bool",  "double", "empty",  "half",     "long",     "nested.deeper.x",
      "nested.inner", "param", "plain",  "scalar", "shared.a", "shared.b", "sliced",
      "transposed"};
  std::vector<std::string> sorted_expected = expected;
  std::sort(sorted_expected.begin(), sorted_expected.end());
  EXPECT_EQ(ck->names(), sorted_expected);

  // sliced = base[1:3, 2:5] and transposed = base.t() view one storage: sliced[i][j] is
  // transposed[2 + j][1 + i]. Both were copied out of their strided layout.
  const std::vector<float> sliced = Floats(ck->at("sliced"));
  const std::vector<float> transposed = Floats(ck->at("transposed"));
  ASSERT_EQ(ck->at("sliced").shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(ck->at("transposed").shape, (std::vector<int64_t>{6, 4}));
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 3; ++j) EXPECT_EQ(sliced[i * 3 + j], transposed[(2 + j) * 4 + 1 + i]);
  }
  EXPECT_EQ(Floats(ck->at("shared.a")), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(Floats(ck->at("shared.b")), (std::vector<float>{6, 7, 8, 9, 10, 11}));
  EXPECT_EQ(ReadAsF64(ck->at("long")), (std::vector<double>{-3, 0, 1099511627776.0}));
  EXPECT_EQ(ck->at("long").dtype, SafetensorsDType::kI64);
  EXPECT_EQ(ReadAsF64(ck->at("bool")), (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(ck->at("half").dtype, SafetensorsDType::kF16);
  EXPECT_EQ(ck->at("bf16").dtype, SafetensorsDType::kBF16);
  EXPECT_EQ(ck->at("double").dtype, SafetensorsDType::kF64);
  EXPECT_EQ(ck->at("scalar").shape, std::vector<int64_t>{});
  EXPECT_EQ(Floats(ck->at("scalar")), std::vector<float>{2.5f});
  EXPECT_EQ(ck->at("empty").shape, (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(ck->at("empty").nbytes, 0u);
  EXPECT_EQ(Floats(ck->at("param")), (std::vector<float>{1, 1}));
  EXPECT_EQ(Floats(ck->at("nested.inner")), (std::vector<float>{7, 7}));
  EXPECT_EQ(Floats(ck->at("nested.deeper.x")), std::vector<float>{1});
  EXPECT_EQ(ck->metadata().at("epoch"), "3");
  EXPECT_EQ(ck->metadata().at("note"), "hello");
}

TEST(TorchPickleTest, OpenCheckpointChoosesTheReaderByContent) {
  auto pth = OpenCheckpoint(kTestData + "views.pth");
  EXPECT_NE(dynamic_cast<TorchCheckpoint*>(pth.get()), nullptr);
  // A torch file named .safetensors is still read as what it is.
  const std::string dir = testing::FreshTmpDir("open_checkpoint");
  std::filesystem::copy_file(kTestData + "views.pth", dir + "/renamed.safetensors");
  EXPECT_NE(dynamic_cast<TorchCheckpoint*>(OpenCheckpoint(dir + "/renamed.safetensors").get()),
            nullptr);
  // A directory with one torch file and no safetensors opens it.
  const std::string only = testing::FreshTmpDir("open_checkpoint_dir");
  std::filesystem::copy_file(kTestData + "views.pth", only + "/model.pth");
  EXPECT_TRUE(OpenCheckpoint(only)->contains("plain"));
  std::filesystem::copy_file(kTestData + "views.pth", only + "/other.bin");
  ExpectErrorContains([&] { OpenCheckpoint(only); },
                      {"ambiguous checkpoint directory", "model.pth", "other.bin"});
}

// ---- hostile files ---------------------------------------------------------------------------

// A valid two-tensor file whose parts the hostile cases change.
std::vector<BuiltTensor> GoodTensors() {
  return {{"a.weight", "0", "FloatStorage", 6, 0, {2, 3}, {3, 1}},
          {"b", "1", "FloatStorage", 4, 1, {3}, {1}}};
}

std::string TorchFile(const std::string& pickle, const std::vector<BuiltTensor>& t) {
  return ZipArchiveBytes(TorchZipEntries(pickle, t));
}

std::string WithTensor(BuiltTensor changed) {
  std::vector<BuiltTensor> t = GoodTensors();
  t[0] = std::move(changed);
  return TorchFile(StateDictPickle(t), t);
}

// A pickle that reduces `module.name` with a string argument, as an exploit would.
std::string CallGlobal(const std::string& module, const std::string& name) {
  PickleWriter p;
  p.Proto().Global(module, name).Mark().Str("echo owned").Tuple().Reduce().Stop();
  return TorchFile(p.bytes(), {});
}

struct HostileCase {
  std::string name;
  std::function<std::string()> bytes;
  std::vector<std::string> message;
};

std::vector<HostileCase> HostileCases() {
  std::vector<HostileCase> cases;
  auto add = [&](std::string name, std::function<std::string()> bytes,
                 std::vector<std::string> message) {
    cases.push_back({std::move(name), std::move(bytes), std::move(message)});
  };
  add("os_system", [] { return CallGlobal("os", "system"); }, {"refusing the global", "os.system"});
  add("builtins_eval", [] { return CallGlobal("builtins", "eval"); }, {"\"builtins.eval\""});
  add("subprocess_popen", [] { return CallGlobal("subprocess", "Popen"); },
      {"\"subprocess.Popen\""});
  add("posix_system_stack_global",
      [] {
        PickleWriter p;
        p.Proto().Op(0x8c).Byte(5).Raw("posix").Op(0x8c).Byte(6).Raw("system").Op(0x93);
        p.Mark().Str("id").Tuple().Reduce().Stop();
        return TorchFile(p.bytes(), {});
      },
      {"\"posix.system\""});
  add("other_torch_global", [] { return CallGlobal("torch.serialization", "load"); },
      {"\"torch.serialization.load\"", "collections.OrderedDict"});
  add("unknown_opcode_newobj",
      [] {
        PickleWriter p;
        p.Proto().OrderedDict().EmptyTuple().Op(0x81).Stop();
        return TorchFile(p.bytes(), {});
      },
      {"opcode 0x81", "refusing"});
  add("unknown_opcode_inst",
      [] {
        PickleWriter p;
        p.Proto().Op('i').Raw("os\nsystem\n").Stop();
        return TorchFile(p.bytes(), {});
      },
      {"opcode 0x69 ('i')"});
  add("truncated_zip",
      [] {
        std::string f = TorchFile(StateDictPickle(GoodTensors()), GoodTensors());
        return f.substr(0, f.size() / 2);
      },
      {"no zip end-of-central-directory record"});
  add("truncated_pickle",
      [] {
        std::string pkl = StateDictPickle(GoodTensors());
        return TorchFile(pkl.substr(0, pkl.size() - 7), GoodTensors());
      },
      {"data.pkl byte"});
  add("storage_offset_past_end",
      [] {
        return WithTensor({"a", "0", "FloatStorage", 6, 7, {1}, {1}});
      },
      {"storage offset 7", "6 elements"});
  add("view_past_storage_end",
      [] {
        return WithTensor({"a", "0", "FloatStorage", 6, 2, {2, 3}, {3, 1}});
      },
      {"reach element 7", "which has 6"});
  add("negative_shape",
      [] {
        return WithTensor({"a", "0", "FloatStorage", 6, 0, {-2, 3}, {3, 1}});
      },
      {"must be non-negative"});
  add("huge_shape",
      [] {
        return WithTensor({"a", "0", "FloatStorage", 6, 0, {1LL << 40, 1LL << 40}, {0, 0}});
      },
      {"more elements than fit in int64"});
  add("stride_overflow",
      [] {
        return WithTensor({"a", "0", "FloatStorage", 6, 0, {3, 2}, {1LL << 62, 1}});
      },
      {"overflows int64"});
  add("broadcast_expansion",
      [] {
        return WithTensor({"a", "0", "FloatStorage", 6, 0, {100000, 6}, {0, 1}});
      },
      {"larger than its storage"});
  add("wrong_dtype_size",
      [] {
        std::vector<BuiltTensor> t = GoodTensors();
        t[0].storage_type = "DoubleStorage";  // 6 doubles need 48 bytes; the entry has 24
        return ZipArchiveBytes(TorchZipEntries(StateDictPickle(t), GoodTensors()));
      },
      {"storage \"0\" of 6 F64 elements needs 6 x 8 bytes, but its entry holds "
       "24"});
  add("memo_never_stored",
      [] {
        PickleWriter p;
        p.Proto().Get(9).Stop();
        return TorchFile(p.bytes(), {});
      },
      {"memo entry 9 was never stored"});
  add("dict_holding_itself",
      [] {
        PickleWriter p;  // d = {}; d["x"] = d
        p.Proto().EmptyDict().Put(0).Str("x").Get(0).SetItem().Stop();
        return TorchFile(p.bytes(), {});
      },
      {"nested deeper than 32"});
  add("deep_nesting",
      [] {
        PickleWriter p;
        p.Proto();
        for (int i = 0; i < 40; ++i) p.EmptyDict().Str("k");
        p.EmptyDict();
        for (int i = 0; i < 40; ++i) p.SetItem();
        return TorchFile(p.Stop().bytes(), {});
      },
      {"nested deeper than 32"});
  add("duplicate_keys",
      [] {
        std::vector<BuiltTensor> t = GoodTensors();
        t[1].name = t[0].name;
        return TorchFile(StateDictPickle(t), t);
      },
      {"tensor \"a.weight\" appears twice"});
  add("missing_data_entry",
      [] {
        std::vector<ZipFileEntry> e =
            TorchZipEntries(StateDictPickle(GoodTensors()), GoodTensors());
        e.erase(e.begin() + 1);
        return ZipArchiveBytes(e);
      },
      {"storage \"0\" has no zip entry \"archive/data/0\""});
  add("zip_bomb_sizes",
      [] {
        std::vector<ZipFileEntry> e =
            TorchZipEntries(StateDictPickle(GoodTensors()), GoodTensors());
        e[1].claimed_size = 1ULL << 40;  // a terabyte claimed by a 24-byte entry
        return ZipArchiveBytes(e);
      },
      {"1099511627776 bytes at offset", "run past the end"});
  add("compressed_entry",
      [] {
        std::vector<ZipFileEntry> e =
            TorchZipEntries(StateDictPickle(GoodTensors()), GoodTensors());
        e[0].method = 8;
        return ZipArchiveBytes(e);
      },
      {"\"archive/data.pkl\" is compressed (method 8)"});
  add("encrypted_entry",
      [] {
        std::vector<ZipFileEntry> e =
            TorchZipEntries(StateDictPickle(GoodTensors()), GoodTensors());
        e[0].flags = 1;
        return ZipArchiveBytes(e);
      },
      {"is encrypted"});
  add("duplicate_zip_entry",
      [] {
        std::vector<ZipFileEntry> e =
            TorchZipEntries(StateDictPickle(GoodTensors()), GoodTensors());
        e.push_back(e[1]);
        return ZipArchiveBytes(e);
      },
      {"\"archive/data/0\" appears twice in the central directory"});
  add("legacy_format",
      [] { return std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 14); },
      {"legacy (pre-1.6, non-zip) torch.save file"});
  add("not_a_zip", [] { return std::string("GIF89a not a checkpoint"); },
      {"not a PyTorch checkpoint"});
  add("no_data_pkl",
      [] {
        return ZipArchiveBytes({{"archive/version", "3\n"}});
      },
      {"no <archive>/data.pkl"});
  add("top_level_list",
      [] {
        PickleWriter p;
        p.Proto().Op(']').Stop();
        return TorchFile(p.bytes(), {});
      },
      {"holds a list, not a dict of tensors"});
  add("stack_underflow",
      [] {
        PickleWriter p;
        p.Proto().Reduce().Stop();
        return TorchFile(p.bytes(), {});
      },
      {"stack underflow"});
  add("int_key",
      [] {
        PickleWriter p;
        p.Proto().EmptyDict().Int(1).Int(2).SetItem().Stop();
        return TorchFile(p.bytes(), {});
      },
      {"a int key", "keys are str"});
  add("string_past_end",
      [] {
        PickleWriter p;
        p.Proto().Op('X').Le(0xFFFFFFFFu, 4).Raw("abc");
        return TorchFile(p.bytes(), {});
      },
      {"runs past the end of data.pkl"});
  add("long_integer",
      [] {
        PickleWriter p;
        p.Proto().Op(0x8a).Byte(9).Raw(std::string(9, '\x01')).Stop();
        return TorchFile(p.bytes(), {});
      },
      {"integer of 9 bytes"});
  add("storage_type_called",
      [] {
        PickleWriter p;
        p.Proto().Global("torch", "FloatStorage").Mark().Int(1 << 20).Tuple().Reduce().Stop();
        return TorchFile(p.bytes(), {});
      },
      {"storage type is called"});
  add("big_endian",
      [] {
        std::vector<ZipFileEntry> e =
            TorchZipEntries(StateDictPickle(GoodTensors()), GoodTensors());
        e.push_back({"archive/byteorder", "big"});
        return ZipArchiveBytes(e);
      },
      {"byteorder is \"big\""});
  add("central_directory_count_lie",
      [] {
        std::string f = TorchFile(StateDictPickle(GoodTensors()), GoodTensors());
        f[f.size() - 22 + 10] = '\xff';  // total entries
        f[f.size() - 22 + 11] = '\x7f';
        return f;
      },
      {"claims 32767 entries"});
  add("storage_redeclared",
      [] {
        std::vector<BuiltTensor> t = GoodTensors();
        t[1].storage_key = "0";
        t[1].storage_type = "HalfStorage";
        return TorchFile(StateDictPickle(t), GoodTensors());
      },
      {"storage \"0\" is declared twice"});
  return cases;
}

TEST(TorchPickleTest, TheGoodBaseOfTheHostileCasesLoads) {
  TorchContents c = Parse(TorchFile(StateDictPickle(GoodTensors()), GoodTensors()), "good.pth");
  ASSERT_EQ(c.tensors.size(), 2u);
  EXPECT_EQ(Floats(c.tensors[0]), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(Floats(c.tensors[1]), (std::vector<float>{1, 2, 3}));  // offset 1 of 0,1,2,3
}

TEST(TorchPickleTest, HostileFilesAreRefusedWithAClearMessage) {
  const std::vector<HostileCase> cases = HostileCases();
  EXPECT_GE(cases.size(), 20u);
  const char* dump = std::getenv("SDPO_DUMP_HOSTILE_PTH");  // writes the files for the fuzz corpus
  for (const HostileCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string bytes = c.bytes();
    if (dump != nullptr) std::ofstream(std::string(dump) + "/" + c.name + ".pth") << bytes;
    std::vector<std::string> message = c.message;
    message.push_back("hostile.pth");  // every message names the file
    ExpectErrorContains([&] { Parse(bytes); }, message);
  }
}

TEST(TorchPickleTest, HostileFilesOnDiskAreRefusedByOpen) {
  const std::string dir = testing::FreshTmpDir("hostile_pth");
  const std::string empty = dir + "/empty.pth";
  std::ofstream(empty).flush();
  ExpectErrorContains([&] { TorchCheckpoint::Open(empty); }, {empty, "empty file"});
  const std::string evil = dir + "/evil.pth";
  std::ofstream(evil) << CallGlobal("os", "system");
  ExpectErrorContains([&] { OpenCheckpoint(evil); }, {evil, "\"os.system\""});
  ExpectErrorContains([&] { TorchCheckpoint::Open(dir + "/absent.pth"); },
                      {"absent.pth", "cannot open"});
}

}  // namespace
}  // namespace sdpo
