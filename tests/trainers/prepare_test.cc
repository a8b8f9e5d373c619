// //trainers:prepare's library: the pair table (JSONL, CSV, label layouts) and
// its hostile rows, and the resumable encode-and-write loop with a stand-in
// video encoder (pooling, so that the test needs no VAE): the dataset opens,
// bad videos are errors naming the line or skips with the reason, and a run
// killed mid-way and rerun writes the same bytes as a straight run.
#include "trainers/prepare.h"

#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>

#include "io/video.h"
#include "tensor/error.h"
#include "trainers/data/preference_dataset.h"
#include "trainers/prepare_table.h"

namespace sdpo::trainers {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("prepare_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string WriteText(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = (fs::path(dir) / name).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// The error message of f(), or "" when it does not throw.
template <typename F>
std::string ErrorOf(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PairTable, ReadsJsonlWithWeightsAndIds) {
  const std::string dir = TempDir("jsonl");
  const std::string path = WriteText(dir, "pairs.jsonl",
                                     "{\"prompt\": \"a cat\", \"chosen\": \"a.mp4\", \"rejected\": "
                                     "\"b.mp4\"}\n\n"
                                     "{\"id\": \"p2\", \"prompt\": \"a dog\", \"chosen\": "
                                     "\"c.mp4\", \"rejected\": \"d.mp4\", \"weight\": 0.5}\n");
  const PairTable t = ReadPairTable(path, {}, false);
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].id, "line-1");
  EXPECT_EQ(t.rows[0].chosen, "a.mp4");
  EXPECT_EQ(t.rows[1].id, "p2");
  EXPECT_EQ(t.rows[1].line, 3);
  EXPECT_EQ(t.rows[1].weight, 0.5);
}

TEST(PairTable, ReadsCsvWithQuotedCommasQuotesAndLineBreaks) {
  const std::string dir = TempDir("csv");
  const std::string path = WriteText(dir, "pairs.csv",
                                     "prompt,chosen,rejected\r\n"
                                     "\"a cat, \"\"jumping\"\"\",a.mp4,b.mp4\r\n"
                                     "\"two\nlines\",c.mp4,d.mp4\n"
                                     "plain,e.mp4,f.mp4\n");
  const PairTable t = ReadPairTable(path, {}, false);
  ASSERT_EQ(t.rows.size(), 3u);
  EXPECT_EQ(t.rows[0].prompt, "a cat, \"jumping\"");
  EXPECT_EQ(t.rows[1].prompt, "two\nlines");
  EXPECT_EQ(t.rows[2].line, 5);  // the quoted line break moved it down
}

TEST(PairTable, LabelLayoutSwapsBWinsAndSkipsTies) {
  const std::string dir = TempDir("label");
  const std::string path = WriteText(dir, "videoalign.csv",
                                     "caption,path_A,path_B,preference\n"
                                     "x,a.mp4,b.mp4,A\n"
                                     "y,c.mp4,d.mp4,B\n"
                                     "z,e.mp4,f.mp4,tie\n");
  PairTableLayout layout;
  layout.prompt = "caption";
  layout.chosen = "path_A";
  layout.rejected = "path_B";
  layout.label = "preference";
  const PairTable t = ReadPairTable(path, layout, false);
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].chosen, "a.mp4");
  EXPECT_EQ(t.rows[1].chosen, "d.mp4");
  EXPECT_EQ(t.rows[1].rejected, "c.mp4");
  ASSERT_EQ(t.skipped.size(), 1u);
  EXPECT_EQ(t.skipped[0].line, 4);
  EXPECT_NE(t.skipped[0].reason.find("tie"), std::string::npos);
}

TEST(PairTable, MissingColumnIsAnErrorNamingItAndTheFlag) {
  const std::string dir = TempDir("missing_column");
  const std::string path = WriteText(dir, "pairs.csv", "prompt,chosen\nx,a.mp4\n");
  const std::string e = ErrorOf([&] { ReadPairTable(path, {}, true); });
  EXPECT_NE(e.find("line 1: no column \"rejected\""), std::string::npos) << e;
  EXPECT_NE(e.find("--rejected_column"), std::string::npos) << e;
}

TEST(PairTable, UnclosedQuoteNamesItsLine) {
  const std::string dir = TempDir("unclosed");
  const std::string path = WriteText(dir, "pairs.csv", "prompt,chosen,rejected\n\"open,a,b\n");
  const std::string e = ErrorOf([&] { ReadPairTable(path, {}, true); });
  EXPECT_NE(e.find("line 2: a quoted field is never closed"), std::string::npos) << e;
}

struct HostileRow {
  std::string name, table, expected;
  int64_t line;
};

class HostileRows : public ::testing::TestWithParam<HostileRow> {};

// Each bad row is an error naming the file and line, or, with skip_bad_rows, a
// skip with the same reason while the good row is kept.
TEST_P(HostileRows, ErrorWithLineOrSkipWithReason) {
  const HostileRow& p = GetParam();
  const std::string dir = TempDir("hostile_" + p.name);
  const std::string path = WriteText(dir, p.name, p.table);
  const std::string e = ErrorOf([&] { ReadPairTable(path, {}, false); });
  EXPECT_NE(e.find(path + " line " + std::to_string(p.line) + ": "), std::string::npos) << e;
  EXPECT_NE(e.find(p.expected), std::string::npos) << e;
  const PairTable t = ReadPairTable(path, {}, true);
  ASSERT_EQ(t.skipped.size(), 1u);
  EXPECT_EQ(t.skipped[0].line, p.line);
  EXPECT_NE(t.skipped[0].reason.find(p.expected), std::string::npos) << t.skipped[0].reason;
  EXPECT_EQ(t.skipped[0].reason.find("check failed"), std::string::npos);
  EXPECT_EQ(t.rows.size(), 1u);
}

const char kGoodCsv[] = "prompt,chosen,rejected,id\nok,a.mp4,b.mp4,1\n";
const char kGoodJsonl[] = "{\"prompt\":\"ok\",\"chosen\":\"a.mp4\",\"rejected\":\"b.mp4\"}\n";

INSTANTIATE_TEST_SUITE_P(
    Tables, HostileRows,
    ::testing::Values(
        HostileRow{"empty_prompt.csv", std::string(kGoodCsv) + " ,c.mp4,d.mp4,2\n",
                   "empty or missing \"prompt\"", 3},
        HostileRow{"missing_video.jsonl",
                   std::string(kGoodJsonl) + "{\"prompt\":\"p\",\"chosen\":\"c.mp4\"}\n",
                   "empty or missing \"rejected\"", 2},
        HostileRow{"not_utf8.jsonl",
                   std::string(kGoodJsonl) + "{\"prompt\":\"caf\xe9\",\"chosen\":\"c.mp4\","
                                             "\"rejected\":\"d.mp4\"}\n",
                   "not valid UTF-8", 2},
        HostileRow{"not_utf8.csv", std::string(kGoodCsv) + "caf\xe9,c.mp4,d.mp4,2\n",
                   "not valid UTF-8", 3},
        HostileRow{"duplicate_id.csv", std::string(kGoodCsv) + "again,c.mp4,d.mp4,1\n",
                   "id \"1\" repeats line 2", 3},
        HostileRow{"bad_json.jsonl", std::string(kGoodJsonl) + "{\"prompt\": \"p\",\n", "the line",
                   2},
        HostileRow{"not_object.jsonl", std::string(kGoodJsonl) + "[1, 2]\n", "expected an object",
                   2},
        HostileRow{"bad_weight.csv",
                   "prompt,chosen,rejected,weight\nok,a.mp4,b.mp4,1\np,c.mp4,d."
                   "mp4,-1\n",
                   "expected a finite number >= 0", 3},
        HostileRow{"short_row.csv", std::string(kGoodCsv) + "p,c.mp4\n", "the row has 2 fields", 3},
        HostileRow{"same_video.csv", std::string(kGoodCsv) + "p,c.mp4,c.mp4,2\n", "the same video",
                   3}),
    [](const auto& info) {
      std::string n = info.param.name;
      for (char& c : n) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      return n;
    });

// A stand-in for the VAE: time stride 4 (1 + 4k -> 1 + k), 8 x 8 sum pooling,
// channels = RGB and their mean; deterministic, so datasets can be compared
// byte for byte. `fail_after` calls it throws, as a killed process would stop.
class PoolingEncoder : public VideoLatentEncoder {
 public:
  explicit PoolingEncoder(int fail_after = -1) : fail_after_(fail_after) {}
  Tensor Encode(const Tensor& video) override {
    if (fail_after_ >= 0 && calls_ == fail_after_) throw std::runtime_error("killed");
    ++calls_;
    const int64_t t = video.size(1), h = video.size(2), w = video.size(3);
    const int64_t f = 1 + (t - 1) / 4, lh = h / 8, lw = w / 8;
    std::vector<float> out(4 * f * lh * lw, 0.f);
    const float* v = video.data<float>();
    for (int64_t fi = 0; fi < f; ++fi) {
      for (int64_t y = 0; y < h; ++y) {
        for (int64_t x = 0; x < w; ++x) {
          for (int64_t c = 0; c < 3; ++c) {
            const float p = v[((c * t + fi * 4) * h + y) * w + x] / 64.f;
            out[((c * f + fi) * lh + y / 8) * lw + x / 8] += p;
            out[((3 * f + fi) * lh + y / 8) * lw + x / 8] += p / 3.f;
          }
        }
      }
    }
    return Tensor::FromVector(out, {4, f, lh, lw});
  }
  int calls() const { return calls_; }

 private:
  int fail_after_;
  int calls_ = 0;
};

Tensor PromptEmbedding(const std::string& prompt) {
  std::vector<float> v(2 * 8);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(prompt[i % prompt.size()]) / 100;
  return Tensor::FromVector(v, {2, 8});
}

// Writes `n` small mp4 clips (9 frames of 32 x 48 at 8 fps, each its own
// pattern).
void WriteClips(const std::string& dir, int n) {
  for (int k = 0; k < n; ++k) {
    std::vector<float> px(3 * 9 * 32 * 48);
    for (size_t i = 0; i < px.size(); ++i) px[i] = ((i * (k + 3) + k * 17) % 200) / 100.f - 1.f;
    video::WriteOptions o;
    o.fps = 8;
    video::WriteMp4((fs::path(dir) / ("clip" + std::to_string(k) + ".mp4")).string(),
                    Tensor::FromVector(px, {3, 9, 32, 48}), o);
  }
}

PrepareOptions SmallOptions(const std::string& videos, const std::string& out) {
  PrepareOptions o;
  o.videos_dir = videos;
  o.out = out;
  o.frames = 9;
  o.height = 32;
  o.width = 32;
  o.fps = 8;
  o.progress = false;
  o.writer.pairs_per_shard = 2;
  return o;
}

std::map<std::string, std::string> DirBytes(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream f(e.path(), std::ios::binary);
    files[fs::relative(e.path(), dir).string()] =
        std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }
  return files;
}

class PrepareDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    videos_ = (fs::path(dir_) / "videos").string();
    fs::create_directories(videos_);
    WriteClips(videos_, 4);
    table_path_ = WriteText(dir_, "pairs.csv",
                            "prompt,chosen,rejected,weight\n"
                            "red,clip0.mp4,clip1.mp4,1\n"
                            "red,clip2.mp4,clip3.mp4,2\n"
                            "blue,clip1.mp4,clip2.mp4,\n"
                            "green,clip3.mp4,clip0.mp4,0.5\n"
                            "blue,clip0.mp4,clip2.mp4,1\n");
  }
  std::string dir_, videos_, table_path_;
};

TEST_F(PrepareDatasetTest, WritesADatasetTheTrainerOpens) {
  const PairTable table = ReadPairTable(table_path_, {}, false);
  const std::string out = (fs::path(dir_) / "data").string();
  PoolingEncoder encoder;
  const PrepareSummary s =
      PrepareDataset(table, SmallOptions(videos_, out), encoder, PromptEmbedding);
  EXPECT_EQ(s.pairs, 5);
  EXPECT_EQ(s.encoded_now, 5);
  EXPECT_TRUE(s.skipped.empty());
  EXPECT_FALSE(fs::exists(fs::path(out) / ".prepare"));
  data::DatasetSpec spec;
  spec.channels = 4;
  spec.text_dim = 8;
  auto ds = data::PreferenceDataset::Open(out, spec);
  ASSERT_EQ(ds->size(), 5);
  EXPECT_EQ(ds->prompt(2), "blue");
  EXPECT_EQ(ds->weight(1), 2.0);
  EXPECT_EQ(ds->latent_shape(0), (std::vector<int64_t>{4, 3, 4, 4}));
  // The winner is the chosen clip's encoding (f32 on disk here: the same bits).
  PoolingEncoder reference;
  const Tensor expected = reference.Encode(ReadClip(videos_ + "/clip2.mp4", SmallOptions("", "")));
  const Tensor got = ds->Get(1).winner;
  ASSERT_EQ(got.numel(), expected.numel());
  for (int64_t i = 0; i < got.numel(); ++i) {
    ASSERT_EQ(got.data<float>()[i], expected.data<float>()[i]) << i;
  }
  // A second run refuses to replace the finished dataset.
  PoolingEncoder again;
  EXPECT_NE(ErrorOf([&] {
              PrepareDataset(table, SmallOptions(videos_, out), again, PromptEmbedding);
            }).find("already holds a dataset"),
            std::string::npos);
}

TEST_F(PrepareDatasetTest, KilledRunResumesToTheSameBytes) {
  const PairTable table = ReadPairTable(table_path_, {}, false);
  const std::string straight = (fs::path(dir_) / "straight").string();
  PoolingEncoder encoder;
  PrepareDataset(table, SmallOptions(videos_, straight), encoder, PromptEmbedding);

  const std::string resumed = (fs::path(dir_) / "resumed").string();
  PoolingEncoder dies(
      /*fail_after=*/5);  // mid-way through row 3 (two clips per row)
  EXPECT_THROW(PrepareDataset(table, SmallOptions(videos_, resumed), dies, PromptEmbedding),
               std::runtime_error);
  EXPECT_FALSE(fs::exists(fs::path(resumed) / "manifest.jsonl"));
  PoolingEncoder rest;
  const PrepareSummary s =
      PrepareDataset(table, SmallOptions(videos_, resumed), rest, PromptEmbedding);
  EXPECT_EQ(s.done_before, 2);
  EXPECT_EQ(s.encoded_now, 3);
  EXPECT_EQ(rest.calls(), 6);
  EXPECT_EQ(DirBytes(resumed), DirBytes(straight));
}

TEST_F(PrepareDatasetTest, ResumeWithOtherSettingsIsRefused) {
  const PairTable table = ReadPairTable(table_path_, {}, false);
  const std::string out = (fs::path(dir_) / "data").string();
  PoolingEncoder dies(/*fail_after=*/1);
  EXPECT_THROW(PrepareDataset(table, SmallOptions(videos_, out), dies, PromptEmbedding),
               std::runtime_error);
  PrepareOptions other = SmallOptions(videos_, out);
  other.fps = 4;
  other.frames = 5;
  PoolingEncoder encoder;
  EXPECT_NE(ErrorOf([&] {
              PrepareDataset(table, other, encoder, PromptEmbedding);
            }).find("holds an unfinished run with other settings"),
            std::string::npos);
}

TEST_F(PrepareDatasetTest, BadVideosAreErrorsNamingTheLineOrSkipsWithTheReason) {
  WriteText(videos_, "corrupt.mp4", std::string(2000, 'x'));
  const std::string path = WriteText(dir_, "bad.jsonl",
                                     "{\"prompt\":\"a\",\"chosen\":\"clip0.mp4\",\"rejected\":"
                                     "\"clip1.mp4\"}\n"
                                     "{\"prompt\":\"b\",\"chosen\":\"gone.mp4\",\"rejected\":"
                                     "\"clip1.mp4\"}\n"
                                     "{\"prompt\":\"c\",\"chosen\":\"clip0.mp4\",\"rejected\":"
                                     "\"corrupt.mp4\"}\n");
  const PairTable table = ReadPairTable(path, {}, false);
  PoolingEncoder encoder;
  const std::string e = ErrorOf([&] {
    PrepareDataset(table, SmallOptions(videos_, dir_ + "/strict"), encoder, PromptEmbedding);
  });
  EXPECT_NE(e.find(path + " line 2: chosen video gone.mp4"), std::string::npos) << e;

  PrepareOptions o = SmallOptions(videos_, dir_ + "/lenient");
  o.skip_bad_rows = true;
  const PrepareSummary s = PrepareDataset(table, o, encoder, PromptEmbedding);
  EXPECT_EQ(s.pairs, 1);
  ASSERT_EQ(s.skipped.size(), 2u);
  EXPECT_EQ(s.skipped[0].line, 2);
  EXPECT_NE(s.skipped[0].reason.find("chosen video gone.mp4"), std::string::npos);
  EXPECT_EQ(s.skipped[1].line, 3);
  EXPECT_NE(s.skipped[1].reason.find("rejected video corrupt.mp4"), std::string::npos);
  const std::string summary = FormatSummary(s, path, o.out);
  EXPECT_NE(summary.find("skipped 2 rows"), std::string::npos) << summary;
}

TEST_F(PrepareDatasetTest, TooShortClipSaysSo) {
  PrepareOptions o = SmallOptions(videos_, "");
  o.frames = 33;
  EXPECT_NE(ErrorOf([&] { ReadClip(videos_ + "/clip0.mp4", o); }).find("too short"),
            std::string::npos);
}

}  // namespace
}  // namespace sdpo::trainers
