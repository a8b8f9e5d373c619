// What the dataset reports about the storage and layout a user gets wrong: shards that are a FIFO,
// a directory, a symbolic link loop or a dangling link (and a manifest that is not a file) are
// named as such; a UTF-8 byte-order mark at the start of the manifest is accepted; a latent whose
// F/H/W do not fit the model's patch is refused at Open naming the manifest line and the tensor.
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"
#include "tests/error_testing.h"
#include "tests/trainers/data/test_util.h"
#include "trainers/data/preference_dataset.h"

namespace sdpo::data {
namespace {

using sdpo::testing::ExpectErrorContains;
using testing::MakePair;
using testing::ReadText;
using testing::SmallSpec;
using testing::TempDir;
using testing::WriteText;

// A valid one-pair dataset in `name`.
std::string OnePair(const std::string& name) {
  const std::string dir = TempDir(name);
  PreferenceDatasetWriter writer(dir);
  writer.Add(MakePair(0));
  writer.Finish();
  return dir;
}

TEST(DatasetStorageTest, AByteOrderMarkBeforeTheManifestIsAccepted) {
  const std::string dir = OnePair("bom");
  const std::string manifest = dir + "/manifest.jsonl";
  WriteText(manifest, "\xEF\xBB\xBF" + ReadText(manifest));
  EXPECT_EQ(PreferenceDataset::Open(dir, SmallSpec())->size(), 1);
}

TEST(DatasetStorageTest, ShardsThatAreNotFilesAreNamedForWhatTheyAre) {
  const std::string dir = OnePair("kinds");
  const std::string manifest = ReadText(dir + "/manifest.jsonl");
  ASSERT_EQ(::mkfifo((dir + "/fifo.safetensors").c_str(), 0644), 0);
  ASSERT_EQ(::mkdir((dir + "/dir.safetensors").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("loop.safetensors", (dir + "/loop.safetensors").c_str()), 0);
  ASSERT_EQ(::symlink("gone.safetensors", (dir + "/dangling.safetensors").c_str()), 0);
  const std::pair<std::string, std::string> cases[] = {
      {"fifo.safetensors", "which is a FIFO (named pipe), not a regular file"},
      {"dir.safetensors", "which is a directory, not a file"},
      {"loop.safetensors", "which is a symbolic link loop"},
      {"dangling.safetensors", "which is a symbolic link to a file that does not exist"},
      {"absent.safetensors", "which does not exist"},
  };
  for (const auto& [file, why] : cases) {
    std::string edited = manifest;
    const size_t at = edited.find("shard-00000.safetensors");
    ASSERT_NE(at, std::string::npos);
    edited.replace(at, std::string("shard-00000.safetensors").size(), file);
    WriteText(dir + "/manifest.jsonl", edited);
    ExpectErrorContains([&] { PreferenceDataset::Open(dir, SmallSpec()); },
                        {"manifest.jsonl line 1", "refers to file \"" + file + "\"", why});
  }
}

TEST(DatasetStorageTest, AManifestThatIsNotAFileIsNamedForWhatItIs) {
  const std::string dir = TempDir("manifest_fifo");
  ASSERT_EQ(::mkfifo((dir + "/manifest.jsonl").c_str(), 0644), 0);
  ExpectErrorContains([&] { PreferenceDataset::Open(dir, SmallSpec()); },
                      {"manifest.jsonl is a FIFO (named pipe), not a regular file"});
}

TEST(DatasetStorageTest, LatentsThatDoNotFitThePatchAreRefusedAtOpen) {
  const std::string dir = OnePair("patch");  // latents [4, 3, 4, 5]
  DatasetSpec spec = SmallSpec();
  spec.patch = {1, 2, 2};  // W = 5 is not a multiple of 2
  ExpectErrorContains([&] { PreferenceDataset::Open(dir, spec); },
                      {"manifest.jsonl line 1", "\"winner\" shard-00000.safetensors:000000.winner",
                       "[4, 3, 4, 5]", "multiples of the model's patch size (1, 2, 2)"});
  spec.patch = {1, 1, 1};
  EXPECT_EQ(PreferenceDataset::Open(dir, spec)->size(), 1);
}

}  // namespace
}  // namespace sdpo::data
