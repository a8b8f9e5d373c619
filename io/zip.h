// A bounds-checked reader for the central directory of a zip archive held in memory, for the
// archives torch.save writes (every entry STORED, i.e. not compressed). Compressed or encrypted
// entries are listed but refused when their bytes are asked for, so a hostile archive can never
// make the reader inflate anything. ZIP64 (archives or entries past 4 GiB) is supported.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sdpo {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 = stored, 8 = deflate, ...
  uint16_t flags = 0;   // general purpose bit flags (bit 0: encrypted)
  uint64_t compressed_size = 0;
  uint64_t size = 0;  // uncompressed
  uint64_t local_header_offset = 0;
};

// The validated central directory of an archive. `bytes` stays owned by the caller.
class ZipArchive {
 public:
  // Parses the end-of-central-directory record (and its ZIP64 form) and every central directory
  // entry; `name` identifies the archive in error messages. Throws sdpo::Error on any inconsistency
  // (truncation, offsets outside the archive, duplicate names, ...).
  ZipArchive(const uint8_t* bytes, size_t size, std::string name);

  const std::vector<ZipEntry>& entries() const { return entries_; }  // in directory order
  const ZipEntry* find(std::string_view name) const;                 // nullptr when absent
  // The bytes of a stored entry, inside the archive; throws for a compressed or encrypted entry or
  // one whose local header or data lie outside the archive.
  std::string_view Data(const ZipEntry& entry) const;

 private:
  const uint8_t* bytes_;
  size_t size_;
  std::string name_;
  std::vector<ZipEntry> entries_;
  std::map<std::string_view, size_t> index_;  // name -> position in entries_
};

// A bounded, printable, quoted rendering of a name read from a file, for error messages
// ("\"blocks.0\"", bytes outside printable ASCII as \xNN, at most 200 bytes shown).
std::string QuotedName(std::string_view name);

// True when the bytes start like a zip archive ("PK\x03\x04" or an empty archive's "PK\x05\x06").
bool LooksLikeZip(const uint8_t* bytes, size_t size);

}  // namespace sdpo
