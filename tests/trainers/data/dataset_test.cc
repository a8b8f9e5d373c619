#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "tensor/error.h"
#include "tensor/ops.h"
#include "tests/trainers/data/test_util.h"
#include "trainers/data/preference_dataset.h"

namespace sdpo::data {
namespace {

using testing::BitEqual;
using testing::MakePair;
using testing::ReadText;
using testing::SmallSpec;
using testing::TempDir;
using testing::WriteText;

TEST(PreferenceDatasetTest, RoundTrip) {
  const std::string dir = TempDir("roundtrip");
  WriterOptions o;
  o.pairs_per_shard = 3;
  PreferenceDatasetWriter writer(dir, o);
  for (int i = 0; i < 7; ++i) writer.Add(MakePair(i));
  EXPECT_EQ(writer.Finish(), 7);

  auto ds = PreferenceDataset::Open(dir, SmallSpec());
  ASSERT_EQ(ds->size(), 7);
  EXPECT_EQ(ds->shard_files(),
            (std::vector<std::string>{"shard-00000.safetensors", "shard-00001.safetensors",
                                      "shard-00002.safetensors"}));
  for (int i = 0; i < 7; ++i) {
    const PreferencePair want = MakePair(i);
    const PreferencePair got = ds->Get(i);
    EXPECT_EQ(got.id, want.id);
    EXPECT_EQ(got.prompt, want.prompt);
    EXPECT_DOUBLE_EQ(got.weight, want.weight);
    EXPECT_TRUE(BitEqual(got.winner, want.winner)) << i;
    EXPECT_TRUE(BitEqual(got.loser, want.loser)) << i;
    EXPECT_TRUE(BitEqual(got.context, want.context)) << i;
    EXPECT_EQ(got.winner.dtype(), kF32);
    EXPECT_EQ(ds->IndexOf(want.id), i);
    EXPECT_EQ(ds->latent_shape(i), (Shape{4, 3, 4, 5}));
  }
  EXPECT_EQ(ds->IndexOf("nope"), -1);
  EXPECT_THROW(ds->Get(7), Error);
  // Pairs 0 and 4 share prompt and context: stored once (shard 0 has 3 winners, 3 losers and the
  // contexts of prompts 0, 1, 2; pair 4's context refers back to shard 0).
  auto shard0 = SafetensorsFile::Open(dir + "/shard-00000.safetensors");
  EXPECT_EQ(shard0->tensors().size(), 9u);
  EXPECT_NE(ReadText(dir + "/manifest.jsonl").find("\"key\":\"000000.context\""),
            std::string::npos);
}

TEST(PreferenceDatasetTest, ReducedPrecisionOnDisk) {
  for (DType dtype : {kBF16, kF16}) {
    const std::string dir = TempDir(std::string("half_") + DTypeName(dtype));
    WriterOptions o;
    o.dtype = dtype;
    PreferenceDatasetWriter writer(dir, o);
    for (int i = 0; i < 3; ++i) writer.Add(MakePair(i));
    writer.Finish();
    auto ds = PreferenceDataset::Open(dir, SmallSpec());
    for (int i = 0; i < 3; ++i) {
      const PreferencePair want = MakePair(i);
      EXPECT_TRUE(BitEqual(ds->Get(i).winner, ops::Cast(ops::Cast(want.winner, dtype), kF32)));
    }
  }
}

TEST(PreferenceDatasetTest, VariableShapesWhenTheSpecAllows) {
  const std::string dir = TempDir("variable");
  PreferenceDatasetWriter writer(dir);
  writer.Add(MakePair(0, {4, 3, 4, 5}));
  writer.Add(MakePair(1, {4, 5, 2, 6}));
  writer.Finish();
  DatasetSpec any{4, 0, 0, 0, 8, 0};
  auto ds = PreferenceDataset::Open(dir, any);
  EXPECT_EQ(ds->Get(1).winner.shape(), (Shape{4, 5, 2, 6}));
  EXPECT_THROW(PreferenceDataset::Open(dir, SmallSpec()), Error);
}

TEST(PreferenceDatasetTest, HandWrittenManifest) {
  const std::string dir = TempDir("handwritten");
  const std::vector<float> w(4 * 3 * 4 * 5, 0.5f), c(2 * 8, 1.0f);
  WriteSafetensors(dir + "/data.safetensors",
                   {{"a", SafetensorsDType::kF32, {4, 3, 4, 5}, w.data(), w.size() * 4},
                    {"b", SafetensorsDType::kF32, {4, 3, 4, 5}, w.data(), w.size() * 4},
                    {"emb", SafetensorsDType::kF32, {2, 8}, c.data(), c.size() * 4}});
  WriteText(dir + "/manifest.jsonl",
            "{\"id\": \"x\", \"prompt\": \"p\", \"winner\": \"data.safetensors:a\", "
            "\"loser\": {\"file\": \"data.safetensors\", \"key\": \"b\"}, \"context\": "
            "\"data.safetensors:emb\", \"meta\": {\"label\": \"A\", \"source\": 3}}\r\n"
            "\n   \n");
  auto ds = PreferenceDataset::Open(dir, SmallSpec());
  ASSERT_EQ(ds->size(), 1);
  EXPECT_EQ(ds->Get(0).weight, 1.0);  // default
  EXPECT_EQ(ds->Get(0).loser.at({0, 0, 0, 0}), 0.5);
}

TEST(PreferenceDatasetWriterTest, ValidatesAndIsAtomic) {
  const std::string dir = TempDir("writer");
  {
    PreferenceDatasetWriter writer(dir);
    writer.Add(MakePair(0));
    EXPECT_THROW(writer.Add(MakePair(0)), Error);  // duplicate id
    PreferencePair bad = MakePair(1);
    bad.loser = ops::RandomNormal({4, 3, 4, 4}, 1, 0);
    EXPECT_THROW(writer.Add(bad), Error);
    bad = MakePair(2);
    bad.winner.data<float>()[3] = INFINITY;
    EXPECT_THROW(writer.Add(bad), Error);
    bad = MakePair(3);
    bad.weight = -1;
    EXPECT_THROW(writer.Add(bad), Error);
    bad = MakePair(4);
    bad.context = Tensor::Zeros({8});
    EXPECT_THROW(writer.Add(bad), Error);
    // Not finished: no manifest, so no dataset.
  }
  EXPECT_THROW(PreferenceDataset::Open(dir, SmallSpec()), Error);
  {
    PreferenceDatasetWriter writer(dir);
    EXPECT_THROW(writer.Finish(), Error);  // empty
  }
  PreferenceDatasetWriter writer(dir);
  writer.Add(MakePair(0));
  writer.Finish();
  EXPECT_THROW(writer.Add(MakePair(1)), Error);
  EXPECT_THROW(PreferenceDatasetWriter{dir}, Error);  // would overwrite a dataset
  WriterOptions overwrite;
  overwrite.overwrite = true;
  PreferenceDatasetWriter again(dir, overwrite);
  again.Add(MakePair(5));
  again.Finish();
  EXPECT_EQ(PreferenceDataset::Open(dir, SmallSpec())->Get(0).id, "pair-5");
}

// --- malformed datasets -------------------------------------------------------------------

// A directory with one valid shard "s.safetensors" holding good and bad tensors.
std::string MakeBrokenDir(const std::string& name) {
  const std::string dir = TempDir(name);
  std::vector<float> w(4 * 3 * 4 * 5), l(w.size()), nan(w.size(), 0.f);
  for (size_t i = 0; i < w.size(); ++i) {
    w[i] = 0.01f * static_cast<float>(i);
    l[i] = -w[i];
  }
  nan[41] = std::nanf("");
  std::vector<float> big(8 * 3 * 4 * 5, 0.f), narrow(4 * 3 * 4 * 4, 0.f);
  std::vector<float> c(2 * 8, 0.f), c16(2 * 16, 0.f), c_long(9 * 8, 0.f);
  std::vector<uint16_t> inf_bf16(w.size(), 0);
  inf_bf16[7] = 0x7f80;  // +inf
  std::vector<int32_t> ints(w.size(), 1);
  WriteSafetensors(
      dir + "/s.safetensors",
      {{"w", SafetensorsDType::kF32, {4, 3, 4, 5}, w.data(), w.size() * 4},
       {"l", SafetensorsDType::kF32, {4, 3, 4, 5}, l.data(), l.size() * 4},
       {"nan", SafetensorsDType::kF32, {4, 3, 4, 5}, nan.data(), nan.size() * 4},
       {"inf_bf16", SafetensorsDType::kBF16, {4, 3, 4, 5}, inf_bf16.data(), inf_bf16.size() * 2},
       {"big", SafetensorsDType::kF32, {8, 3, 4, 5}, big.data(), big.size() * 4},
       {"narrow", SafetensorsDType::kF32, {4, 3, 4, 4}, narrow.data(), narrow.size() * 4},
       {"rank3", SafetensorsDType::kF32, {4, 3, 20}, w.data(), w.size() * 4},
       {"ints", SafetensorsDType::kI32, {4, 3, 4, 5}, ints.data(), ints.size() * 4},
       {"c", SafetensorsDType::kF32, {2, 8}, c.data(), c.size() * 4},
       {"c16", SafetensorsDType::kF32, {2, 16}, c16.data(), c16.size() * 4},
       {"c_long", SafetensorsDType::kF32, {9, 8}, c_long.data(), c_long.size() * 4}});
  return dir;
}

std::string Line(const std::string& id, const std::string& winner = "s.safetensors:w",
                 const std::string& loser = "s.safetensors:l",
                 const std::string& context = "s.safetensors:c", const std::string& extra = "") {
  return "{\"id\": \"" + id + "\", \"prompt\": \"p\", \"winner\": \"" + winner +
         "\", \"loser\": \"" + loser + "\", \"context\": \"" + context + "\"" + extra + "}\n";
}

struct BrokenCase {
  std::string name;
  std::string manifest;               // content of manifest.jsonl ("<none>": no manifest)
  std::vector<std::string> expected;  // substrings of the error message
};

class BrokenDatasetTest : public ::testing::TestWithParam<BrokenCase> {};

TEST_P(BrokenDatasetTest, ClearError) {
  const BrokenCase& c = GetParam();
  const std::string dir = MakeBrokenDir("broken_" + c.name);
  if (c.manifest != "<none>") WriteText(dir + "/manifest.jsonl", c.manifest);
  if (c.name == "corrupt_shard") {
    // The header claims 64 bytes; the file has 8.
    WriteText(dir + "/t.safetensors", std::string("\x40\0\0\0\0\0\0\0", 8) + "{\"a\": 1}");
  }
  try {
    PreferenceDataset::Open(dir, SmallSpec());
    FAIL() << "no error for " << c.name;
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& s : c.expected) {
      EXPECT_NE(msg.find(s), std::string::npos) << "\"" << s << "\" not in: " << msg;
    }
  }
}

const std::string kOk = Line("ok");

INSTANTIATE_TEST_SUITE_P(
    Malformed, BrokenDatasetTest,
    ::testing::Values(
        BrokenCase{"no_manifest", "<none>", {"broken_no_manifest", "no manifest.jsonl"}},
        BrokenCase{"empty", "\n  \n", {"manifest.jsonl", "no pairs"}},
        BrokenCase{"bad_json",
                   kOk + "{\"id\": \"x\", \"prompt\": }\n",
                   {"manifest.jsonl line 2", "invalid JSON", "column 23"}},
        BrokenCase{"not_object", "[1, 2]\n", {"manifest.jsonl line 1", "expected a JSON object"}},
        BrokenCase{"missing_field",
                   kOk + "{\"id\": \"x\", \"prompt\": \"p\", \"winner\": \"s.safetensors:w\", "
                         "\"context\": \"s.safetensors:c\"}\n",
                   {"manifest.jsonl line 2", "missing \"loser\"", "\"x\""}},
        BrokenCase{
            "unknown_field",
            Line("x", "s.safetensors:w", "s.safetensors:l", "s.safetensors:c", ", \"wieght\": 2"),
            {"line 1", "unknown field \"wieght\""}},
        BrokenCase{"bad_weight",
                   Line("x", "s.safetensors:w", "s.safetensors:l", "s.safetensors:c",
                        ", \"weight\": -0.5"),
                   {"line 1", "\"weight\"", "-0.5"}},
        BrokenCase{"bad_reference",
                   Line("x", "s.safetensors"),
                   {"line 1", "\"winner\"", "<file>:<key>", "s.safetensors"}},
        BrokenCase{"path_escape",
                   Line("x", "../s.safetensors:w"),
                   {"line 1", "\"winner\"", "../s.safetensors", "relative path"}},
        BrokenCase{"missing_file",
                   kOk + Line("x", "s.safetensors:w", "gone.safetensors:l"),
                   {"line 2", "\"loser\"", "gone.safetensors", "does not exist"}},
        BrokenCase{"corrupt_shard",
                   Line("x", "t.safetensors:w"),
                   {"line 1", "t.safetensors", "not a valid safetensors file"}},
        BrokenCase{"missing_key",
                   kOk + Line("y", "s.safetensors:wx"),
                   {"line 2", "key \"wx\"", "s.safetensors", "11 tensors"}},
        BrokenCase{
            "bad_dtype", Line("x", "s.safetensors:ints"), {"line 1", "s.safetensors:ints", "I32"}},
        BrokenCase{"channels_mismatch",
                   Line("x", "s.safetensors:big", "s.safetensors:big"),
                   {"line 1", "s.safetensors:big", "[8, 3, 4, 5]", "[C=4, F=3, H=4, W=5]"}},
        BrokenCase{"rank_mismatch",
                   Line("x", "s.safetensors:w", "s.safetensors:rank3"),
                   {"line 1", "\"loser\"", "s.safetensors:rank3", "[4, 3, 20]"}},
        BrokenCase{"winner_loser_mismatch",
                   Line("x", "s.safetensors:w", "s.safetensors:narrow"),
                   {"line 1", "s.safetensors:narrow", "[4, 3, 4, 4]", "W=5"}},
        BrokenCase{"context_dim",
                   Line("x", "s.safetensors:w", "s.safetensors:l", "s.safetensors:c16"),
                   {"line 1", "\"context\"", "s.safetensors:c16", "[2, 16]", "D=8"}},
        BrokenCase{"context_too_long",
                   Line("x", "s.safetensors:w", "s.safetensors:l", "s.safetensors:c_long"),
                   {"line 1", "s.safetensors:c_long", "[9, 8]", "L <= 6"}},
        BrokenCase{"nan",
                   kOk + Line("x", "s.safetensors:nan"),
                   {"line 2", "s.safetensors:nan", "non-finite", "nan", "index 41"}},
        BrokenCase{"inf_bf16",
                   Line("x", "s.safetensors:w", "s.safetensors:inf_bf16"),
                   {"line 1", "s.safetensors:inf_bf16", "non-finite", "inf", "index 7"}},
        BrokenCase{"duplicate_id",
                   kOk + Line("x") + kOk,
                   {"line 3", "duplicate id \"ok\"", "first on line 1"}},
        BrokenCase{"empty_id", Line(""), {"line 1", "\"id\"", "non-empty string, found \"\""}}),
    [](const ::testing::TestParamInfo<BrokenCase>& info) { return info.param.name; });

TEST(PreferenceDatasetTest, WinnerLoserShapeMismatchWithAnySize) {
  const std::string dir = MakeBrokenDir("mismatch_any");
  WriteText(dir + "/manifest.jsonl", Line("x", "s.safetensors:w", "s.safetensors:narrow"));
  DatasetSpec any{4, 0, 0, 0, 8, 0};
  try {
    PreferenceDataset::Open(dir, any);
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("differ in shape"), std::string::npos) << msg;
    EXPECT_NE(msg.find("s.safetensors:w [4, 3, 4, 5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("s.safetensors:narrow [4, 3, 4, 4]"), std::string::npos) << msg;
  }
}

TEST(PreferenceDatasetTest, FiniteCheckCanBeSkipped) {
  const std::string dir = MakeBrokenDir("skip_finite");
  WriteText(dir + "/manifest.jsonl", Line("x", "s.safetensors:nan"));
  OpenOptions o;
  o.check_finite = false;
  EXPECT_EQ(PreferenceDataset::Open(dir, SmallSpec(), o)->size(), 1);
  EXPECT_THROW(PreferenceDataset::Open(dir, SmallSpec()), Error);
}

}  // namespace
}  // namespace sdpo::data
