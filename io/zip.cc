#include "io/zip.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "tensor/error.h"

namespace sdpo {
namespace {

constexpr uint32_t kLocalHeaderSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kEndSize = 22;
constexpr size_t kZip64EndSize = 56;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;
constexpr size_t kMaxComment = 0xFFFF;

uint64_t Le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Overrides the 0xFFFFFFFF fields of a central entry from its ZIP64 extra field (id 0x0001).
void ApplyZip64Extra(const uint8_t* extra, size_t len, bool need_size, bool need_csize,
                     bool need_offset, ZipEntry& e, const std::string& archive) {
  size_t pos = 0;
  while (pos + 4 <= len) {
    const uint64_t id = Le(extra + pos, 2), n = Le(extra + pos + 2, 2);
    SDPO_CHECK(pos + 4 + n <= len, archive, ": entry ", QuotedName(e.name), ": extra field of ", n,
               " bytes runs past the ", len, "-byte extra area");
    if (id == 0x0001) {
      const uint8_t* p = extra + pos + 4;
      size_t used = 0;
      auto next = [&](uint64_t& field, const char* what) {
        SDPO_CHECK(used + 8 <= n, archive, ": entry ", QuotedName(e.name),
                   ": ZIP64 extra field of ", n, " bytes lacks the ", what);
        field = Le(p + used, 8);
        used += 8;
      };
      if (need_size) next(e.size, "uncompressed size");
      if (need_csize) next(e.compressed_size, "compressed size");
      if (need_offset) next(e.local_header_offset, "local header offset");
      return;
    }
    pos += 4 + n;
  }
  SDPO_FAIL(archive, ": entry ", QuotedName(e.name),
            ": sizes or offset are 0xFFFFFFFF but there is no ZIP64 extra field");
}

}  // namespace

std::string QuotedName(std::string_view s) {
  constexpr size_t kMax = 200;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c >= 0x7F) {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  if (s.size() > kMax) absl::StrAppend(&out, "...(", s.size(), " bytes)");
  return out;
}

bool LooksLikeZip(const uint8_t* bytes, size_t size) {
  if (size < 4) return false;
  const uint32_t sig = static_cast<uint32_t>(Le(bytes, 4));
  return sig == kLocalHeaderSig || sig == kEndSig;
}

ZipArchive::ZipArchive(const uint8_t* bytes, size_t size, std::string name)
    : bytes_(bytes), size_(size), name_(std::move(name)) {
  SDPO_CHECK(size_ >= kEndSize, name_, ": not a zip archive: ", size_,
             " bytes, fewer than the 22-byte end-of-central-directory record "
             "(truncated file?)");
  // The end record is the last 22 bytes plus a comment of at most 64 KiB: search backwards.
  size_t end = size_;  // not found
  const size_t lowest = size_ - kEndSize > kMaxComment ? size_ - kEndSize - kMaxComment : 0;
  for (size_t pos = size_ - kEndSize + 1; pos-- > lowest;) {
    if (Le(bytes_ + pos, 4) == kEndSig && pos + kEndSize + Le(bytes_ + pos + 20, 2) <= size_) {
      end = pos;
      break;
    }
  }
  SDPO_CHECK(end != size_, name_,
             ": no zip end-of-central-directory record in the last 64 KiB "
             "(truncated file or not "
             "a zip archive)");
  const uint8_t* e = bytes_ + end;
  SDPO_CHECK(Le(e + 4, 2) == 0 && Le(e + 6, 2) == 0, name_,
             ": multi-disk zip archives are not supported (disk ", Le(e + 4, 2), ")");
  uint64_t count = Le(e + 10, 2), cd_size = Le(e + 12, 4), cd_offset = Le(e + 16, 4);
  if (end >= kZip64LocatorSize && Le(bytes_ + end - kZip64LocatorSize, 4) == kZip64LocatorSig) {
    const uint64_t z64 = Le(bytes_ + end - kZip64LocatorSize + 8, 8);
    SDPO_CHECK(z64 <= end - kZip64LocatorSize && end - kZip64LocatorSize - z64 >= kZip64EndSize,
               name_, ": ZIP64 end record offset ", z64, " is outside the archive of ", size_,
               " bytes");
    const uint8_t* z = bytes_ + z64;
    SDPO_CHECK(Le(z, 4) == kZip64EndSig, name_, ": no ZIP64 end record at offset ", z64);
    count = Le(z + 32, 8);
    cd_size = Le(z + 40, 8);
    cd_offset = Le(z + 48, 8);
    end = static_cast<size_t>(z64);
  }
  SDPO_CHECK(cd_offset <= end && cd_size <= end - cd_offset, name_, ": central directory [",
             cd_offset, ", +", cd_size, ") lies outside the ", end,
             " bytes before its end record (truncated file?)");
  // Each entry takes at least 46 bytes, which bounds the count before anything is allocated.
  SDPO_CHECK(count <= cd_size / kCentralSize, name_, ": the end record claims ", count,
             " entries, but the ", cd_size, "-byte central directory holds at most ",
             cd_size / kCentralSize);
  entries_.reserve(static_cast<size_t>(count));
  const uint8_t* p = bytes_ + cd_offset;
  const uint8_t* cd_end = p + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    SDPO_CHECK(static_cast<size_t>(cd_end - p) >= kCentralSize, name_, ": central directory entry ",
               i, " is truncated");
    SDPO_CHECK(Le(p, 4) == kCentralSig, name_, ": central directory entry ", i,
               " has a bad signature (corrupt archive)");
    const size_t name_len = Le(p + 28, 2), extra_len = Le(p + 30, 2), comment_len = Le(p + 32, 2);
    SDPO_CHECK(kCentralSize + name_len + extra_len + comment_len <= static_cast<size_t>(cd_end - p),
               name_, ": central directory entry ", i, " runs past the central directory");
    ZipEntry z;
    z.flags = static_cast<uint16_t>(Le(p + 8, 2));
    z.method = static_cast<uint16_t>(Le(p + 10, 2));
    z.compressed_size = Le(p + 20, 4);
    z.size = Le(p + 24, 4);
    z.local_header_offset = Le(p + 42, 4);
    z.name.assign(reinterpret_cast<const char*>(p + kCentralSize), name_len);
    const bool need_size = z.size == 0xFFFFFFFF, need_csize = z.compressed_size == 0xFFFFFFFF,
               need_offset = z.local_header_offset == 0xFFFFFFFF;
    if (need_size || need_csize || need_offset) {
      ApplyZip64Extra(p + kCentralSize + name_len, extra_len, need_size, need_csize, need_offset, z,
                      name_);
    }
    SDPO_CHECK(z.local_header_offset < size_, name_, ": entry ", QuotedName(z.name),
               ": local header offset ", z.local_header_offset, " is past the end of the ", size_,
               "-byte archive");
    entries_.push_back(std::move(z));
    p += kCentralSize + name_len + extra_len + comment_len;
  }
  for (size_t i = 0; i < entries_.size(); ++i) {
    const ZipEntry& z = entries_[i];
    SDPO_CHECK(index_.emplace(z.name, i).second, name_, ": entry ", QuotedName(z.name),
               " appears twice in the central directory");
  }
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::string_view ZipArchive::Data(const ZipEntry& e) const {
  SDPO_CHECK((e.flags & 1) == 0, name_, ": entry ", QuotedName(e.name), " is encrypted");
  SDPO_CHECK(e.method == 0, name_, ": entry ", QuotedName(e.name), " is compressed (method ",
             e.method,
             "); only stored entries are read, as torch.save writes them "
             "(re-save the file with "
             "torch.save, or convert it to safetensors)");
  SDPO_CHECK(e.compressed_size == e.size, name_, ": stored entry ", QuotedName(e.name),
             " has compressed size ", e.compressed_size, " != size ", e.size);
  const uint64_t lho = e.local_header_offset;
  SDPO_CHECK(lho <= size_ && size_ - lho >= kLocalSize, name_, ": entry ", QuotedName(e.name),
             ": local header at ", lho, " is truncated");
  const uint8_t* h = bytes_ + lho;
  SDPO_CHECK(Le(h, 4) == kLocalHeaderSig, name_, ": entry ", QuotedName(e.name),
             ": no local header signature at offset ", lho, " (corrupt archive)");
  const uint64_t start = lho + kLocalSize + Le(h + 26, 2) + Le(h + 28, 2);
  SDPO_CHECK(start <= size_ && e.size <= size_ - start, name_, ": entry ", QuotedName(e.name), ": ",
             e.size, " bytes at offset ", start, " run past the end of the ", size_,
             "-byte archive (truncated file?)");
  return std::string_view(reinterpret_cast<const char*>(bytes_ + start),
                          static_cast<size_t>(e.size));
}

}  // namespace sdpo
