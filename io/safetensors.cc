#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/json.h"
#include "tensor/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; a big-endian host needs byte swapping");

namespace sdpo {
namespace {

constexpr SafetensorsDType kAllDTypes[] = {
    SafetensorsDType::kF64, SafetensorsDType::kF32, SafetensorsDType::kF16, SafetensorsDType::kBF16,
    SafetensorsDType::kI64, SafetensorsDType::kI32, SafetensorsDType::kI16, SafetensorsDType::kI8,
    SafetensorsDType::kU8,  SafetensorsDType::kBool};

// Header nesting is 3 levels ({name: {"shape": [..]}}); anything much deeper is hostile.
constexpr int kHeaderMaxDepth = 16;

// A bounded, printable rendering of a tensor key for messages.
std::string Key(std::string_view key) {
  constexpr size_t kMax = 200;
  std::string out = "\"";
  for (size_t i = 0; i < key.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(key[i]);
    if (c < 0x20 || c == 0x7F) {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  if (key.size() > kMax) absl::StrAppend(&out, "...(", key.size(), " bytes)");
  return out;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::string SupportedDTypes() {
  std::vector<std::string> names;
  for (SafetensorsDType d : kAllDTypes) names.push_back(SafetensorsDTypeName(d));
  return absl::StrJoin(names, ", ");
}

// Reads a non-negative JSON integer for `what` of tensor `key`.
int64_t NonNegativeInt(const json::Value& v, const std::string& file, std::string_view key,
                       const char* what) {
  SDPO_CHECK(v.is_int(), file, ": tensor ", Key(key), ": ", what,
             " must be an integer, found a JSON ", json::TypeName(v.type()));
  SDPO_CHECK(v.as_int() >= 0, file, ": tensor ", Key(key), ": ", what,
             " must be non-negative, found ", v.as_int());
  return v.as_int();
}

TensorEntry ParseEntry(const std::string& key, const json::Value& v, const uint8_t* data,
                       size_t data_size, size_t data_start, const std::string& file) {
  SDPO_CHECK(!key.empty(), file, ": header has a tensor with an empty name");
  SDPO_CHECK(v.is_object(), file, ": tensor ", Key(key),
             ": expected an object {dtype, shape, data_offsets}, found a JSON ",
             json::TypeName(v.type()));
  TensorEntry e;
  e.name = key;

  const json::Value* dtype = v.find("dtype");
  SDPO_CHECK(dtype != nullptr, file, ": tensor ", Key(key), ": missing \"dtype\"");
  SDPO_CHECK(dtype->is_string(), file, ": tensor ", Key(key),
             ": \"dtype\" must be a string, found a JSON ", json::TypeName(dtype->type()));
  std::optional<SafetensorsDType> dt = ParseSafetensorsDType(dtype->as_string());
  SDPO_CHECK(dt.has_value(), file, ": tensor ", Key(key), ": unsupported dtype ",
             Key(dtype->as_string()), " (supported: ", SupportedDTypes(), ")");
  e.dtype = *dt;

  const json::Value* shape = v.find("shape");
  SDPO_CHECK(shape != nullptr, file, ": tensor ", Key(key), ": missing \"shape\"");
  SDPO_CHECK(shape->is_array(), file, ": tensor ", Key(key),
             ": \"shape\" must be an array of integers, found a JSON ",
             json::TypeName(shape->type()));
  int64_t numel = 1;
  for (const json::Value& d : shape->as_array()) {
    int64_t dim = NonNegativeInt(d, file, key, "every \"shape\" dimension");
    e.shape.push_back(dim);
  }
  for (int64_t dim : e.shape) {
    SDPO_CHECK(!__builtin_mul_overflow(numel, dim, &numel), file, ": tensor ", Key(key), ": shape ",
               ShapeString(e.shape), " has more elements than fit in int64");
  }
  e.numel = numel;
  uint64_t nbytes = 0;
  SDPO_CHECK(
      !__builtin_mul_overflow(static_cast<uint64_t>(numel),
                              static_cast<uint64_t>(SafetensorsElementSize(e.dtype)), &nbytes),
      file, ": tensor ", Key(key), ": shape ", ShapeString(e.shape), " of ",
      SafetensorsDTypeName(e.dtype), " overflows the byte count");

  const json::Value* offsets = v.find("data_offsets");
  SDPO_CHECK(offsets != nullptr, file, ": tensor ", Key(key), ": missing \"data_offsets\"");
  SDPO_CHECK(offsets->is_array() && offsets->as_array().size() == 2, file, ": tensor ", Key(key),
             ": \"data_offsets\" must be an array [begin, end], found ",
             offsets->is_array() ? absl::StrCat("an array of ", offsets->as_array().size())
                                 : absl::StrCat("a JSON ", json::TypeName(offsets->type())));
  uint64_t begin = NonNegativeInt(offsets->as_array()[0], file, key, "data_offsets begin");
  uint64_t end = NonNegativeInt(offsets->as_array()[1], file, key, "data_offsets end");
  SDPO_CHECK(begin <= end, file, ": tensor ", Key(key), ": data_offsets [", begin, ", ", end,
             "] has begin > end");
  SDPO_CHECK(end - begin == nbytes, file, ": tensor ", Key(key), ": data_offsets [", begin, ", ",
             end, "] span ", end - begin, " bytes, but shape ", ShapeString(e.shape), " of ",
             SafetensorsDTypeName(e.dtype), " needs ", nbytes, " bytes");
  SDPO_CHECK(end <= data_size, file, ": tensor ", Key(key), ": data_offsets [", begin, ", ", end,
             "] end beyond the data section of ", data_size, " bytes (truncated file?)");
  e.nbytes = static_cast<size_t>(nbytes);
  e.data = data + begin;
  e.offset = data_start + begin;
  return e;
}

struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

std::string Errno() { return std::strerror(errno); }

}  // namespace

const char* SafetensorsDTypeName(SafetensorsDType dtype) {
  switch (dtype) {
    case SafetensorsDType::kF64:
      return "F64";
    case SafetensorsDType::kF32:
      return "F32";
    case SafetensorsDType::kF16:
      return "F16";
    case SafetensorsDType::kBF16:
      return "BF16";
    case SafetensorsDType::kI64:
      return "I64";
    case SafetensorsDType::kI32:
      return "I32";
    case SafetensorsDType::kI16:
      return "I16";
    case SafetensorsDType::kI8:
      return "I8";
    case SafetensorsDType::kU8:
      return "U8";
    case SafetensorsDType::kBool:
      return "BOOL";
  }
  return "UNKNOWN";
}

size_t SafetensorsElementSize(SafetensorsDType dtype) {
  switch (dtype) {
    case SafetensorsDType::kF64:
    case SafetensorsDType::kI64:
      return 8;
    case SafetensorsDType::kF32:
    case SafetensorsDType::kI32:
      return 4;
    case SafetensorsDType::kF16:
    case SafetensorsDType::kBF16:
    case SafetensorsDType::kI16:
      return 2;
    case SafetensorsDType::kI8:
    case SafetensorsDType::kU8:
    case SafetensorsDType::kBool:
      return 1;
  }
  SDPO_FAIL("unknown SafetensorsDType ", static_cast<int>(dtype));
}

std::optional<SafetensorsDType> ParseSafetensorsDType(std::string_view name) {
  for (SafetensorsDType d : kAllDTypes) {
    if (name == SafetensorsDTypeName(d)) return d;
  }
  return std::nullopt;
}

std::optional<DType> ToDType(SafetensorsDType dtype) {
  switch (dtype) {
    case SafetensorsDType::kF64:
      return DType::kF64;
    case SafetensorsDType::kF32:
      return DType::kF32;
    case SafetensorsDType::kF16:
      return DType::kF16;
    case SafetensorsDType::kBF16:
      return DType::kBF16;
    case SafetensorsDType::kI64:
      return DType::kI64;
    case SafetensorsDType::kI32:
      return DType::kI32;
    case SafetensorsDType::kBool:
      return DType::kBool;
    case SafetensorsDType::kI16:
    case SafetensorsDType::kI8:
    case SafetensorsDType::kU8:
      return std::nullopt;
  }
  return std::nullopt;
}

SafetensorsDType ToSafetensorsDType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return SafetensorsDType::kF32;
    case DType::kF64:
      return SafetensorsDType::kF64;
    case DType::kBF16:
      return SafetensorsDType::kBF16;
    case DType::kF16:
      return SafetensorsDType::kF16;
    case DType::kI32:
      return SafetensorsDType::kI32;
    case DType::kI64:
      return SafetensorsDType::kI64;
    case DType::kBool:
      return SafetensorsDType::kBool;
  }
  SDPO_FAIL("ToSafetensorsDType: unknown DType ", static_cast<int>(dtype));
}

// ---------------------------------------------------------------------------------------------
// Reading

SafetensorsContents ParseSafetensors(const uint8_t* bytes, size_t size, const std::string& name) {
  SDPO_CHECK(size >= 8, name, ": not a safetensors file: it has ", size,
             " bytes, fewer than the 8-byte header length field");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  SDPO_CHECK(n > 0, name, ": header length is 0; expected a JSON object");
  SDPO_CHECK(n <= kMaxSafetensorsHeaderBytes, name, ": header length ", n, " exceeds the limit of ",
             kMaxSafetensorsHeaderBytes, " bytes (corrupt or not a safetensors file)");
  SDPO_CHECK(n <= size - 8, name, ": header length ", n, " exceeds the ", size - 8,
             " bytes that follow the length field (truncated file?)");

  SafetensorsContents out;
  out.header_size = static_cast<size_t>(n);
  out.data_size = size - 8 - out.header_size;
  const size_t data_start = 8 + out.header_size;
  const uint8_t* data = bytes + data_start;

  std::string_view header(reinterpret_cast<const char*>(bytes + 8), out.header_size);
  json::Value root =
      json::Parse(header, absl::StrCat(name, " (safetensors header)"), kHeaderMaxDepth);
  SDPO_CHECK(root.is_object(), name, ": safetensors header must be a JSON object, found a JSON ",
             json::TypeName(root.type()));

  for (const auto& [key, value] : root.as_object()) {
    if (key == "__metadata__") {
      SDPO_CHECK(value.is_object(), name,
                 ": \"__metadata__\" must be an object of strings, found a JSON ",
                 json::TypeName(value.type()));
      for (const auto& [mkey, mvalue] : value.as_object()) {
        SDPO_CHECK(mvalue.is_string(), name, ": \"__metadata__\" entry ", Key(mkey),
                   " must be a string, found a JSON ", json::TypeName(mvalue.type()));
        out.metadata.emplace(mkey, mvalue.as_string());
      }
      continue;
    }
    out.tensors.push_back(ParseEntry(key, value, data, out.data_size, data_start, name));
  }

  // Non-empty tensors must not share bytes.
  std::vector<const TensorEntry*> by_offset;
  for (const TensorEntry& e : out.tensors) {
    if (e.nbytes > 0) by_offset.push_back(&e);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorEntry* a, const TensorEntry* b) {
    return a->offset != b->offset ? a->offset < b->offset : a->name < b->name;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorEntry* prev = by_offset[i - 1];
    const TensorEntry* cur = by_offset[i];
    SDPO_CHECK(cur->offset >= prev->offset + prev->nbytes, name, ": tensors ", Key(prev->name),
               " (data_offsets [", prev->offset - data_start, ", ",
               prev->offset - data_start + prev->nbytes, "]) and ", Key(cur->name),
               " (data_offsets [", cur->offset - data_start, ", ",
               cur->offset - data_start + cur->nbytes, "]) overlap");
  }
  return out;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  FileDescriptor fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SDPO_CHECK(fd.fd >= 0, path, ": cannot open safetensors file: ", Errno());
  struct stat st;
  SDPO_CHECK(::fstat(fd.fd, &st) == 0, path, ": cannot stat safetensors file: ", Errno());
  SDPO_CHECK(S_ISREG(st.st_mode), path, ": not a regular file");

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ < 8) {
    uint8_t none[8] = {};
    ParseSafetensors(none, file->size_, path);  // throws: too short
  }
  void* map = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  SDPO_CHECK(map != MAP_FAILED, path, ": cannot mmap ", file->size_, " bytes: ", Errno());
  file->map_ = map;  // unmapped by the destructor, also when parsing throws below
  file->contents_ = ParseSafetensors(static_cast<const uint8_t*>(map), file->size_, path);
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, size_);
}

const TensorEntry* FindSortedEntry(const std::vector<TensorEntry>& sorted, std::string_view name) {
  auto it = std::lower_bound(sorted.begin(), sorted.end(), name,
                             [](const TensorEntry& e, std::string_view n) { return e.name < n; });
  if (it == sorted.end() || it->name != name) return nullptr;
  return &*it;
}

std::vector<std::string> EntryNames(const std::vector<TensorEntry>& entries) {
  std::vector<std::string> out;
  out.reserve(entries.size());
  for (const TensorEntry& e : entries) out.push_back(e.name);
  return out;
}

std::vector<std::string> SafetensorsFile::names() const { return EntryNames(contents_.tensors); }

const TensorEntry* SafetensorsFile::find(std::string_view name) const {
  return FindSortedEntry(contents_.tensors, name);
}

const TensorEntry& SafetensorsFile::at(std::string_view name) const {
  const TensorEntry* e = find(name);
  SDPO_CHECK(e != nullptr, path_, ": no tensor ", Key(name), " in this file (it has ",
             contents_.tensors.size(), " tensors)");
  return *e;
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints

namespace {

namespace fs = std::filesystem;

std::string ChooseInDirectory(const std::string& dir) {
  std::vector<std::string> indexes, files;
  std::error_code ec;
  for (const auto& it : fs::directory_iterator(dir, ec)) {
    std::string fname = it.path().filename().string();
    if (absl::EndsWith(fname, ".safetensors.index.json")) indexes.push_back(fname);
    if (absl::EndsWith(fname, ".safetensors")) files.push_back(fname);
  }
  SDPO_CHECK(!ec, dir, ": cannot list directory: ", ec.message());
  std::sort(indexes.begin(), indexes.end());
  std::sort(files.begin(), files.end());
  SDPO_CHECK(indexes.size() <= 1, dir, ": ambiguous checkpoint directory: several index files (",
             absl::StrJoin(indexes, ", "), "); pass the index to use");
  if (indexes.size() == 1) return (fs::path(dir) / indexes[0]).string();
  SDPO_CHECK(!files.empty(), dir,
             ": no *.safetensors.index.json or *.safetensors file in this directory");
  SDPO_CHECK(files.size() == 1, dir, ": ambiguous checkpoint directory: ", files.size(),
             " .safetensors files (", absl::StrJoin(files, ", "),
             ") and no *.safetensors.index.json; pass the file to use");
  return (fs::path(dir) / files[0]).string();
}

}  // namespace

std::unique_ptr<ShardedCheckpoint> ShardedCheckpoint::Open(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return Open(ChooseInDirectory(path));

  std::unique_ptr<ShardedCheckpoint> ckpt(new ShardedCheckpoint());
  ckpt->path_ = path;
  if (!absl::EndsWith(path, ".json")) {
    ckpt->shards_.push_back(SafetensorsFile::Open(path));
    const SafetensorsFile* shard = ckpt->shards_.back().get();
    ckpt->metadata_ = shard->metadata();
    for (const TensorEntry& e : shard->tensors()) ckpt->index_.emplace(e.name, Location{shard, &e});
    return ckpt;
  }

  json::Value root = json::ParseFile(path);
  SDPO_CHECK(root.is_object(), path, ": checkpoint index must be a JSON object, found a JSON ",
             json::TypeName(root.type()));
  if (const json::Value* meta = root.find("metadata"); meta != nullptr && !meta->is_null()) {
    SDPO_CHECK(meta->is_object(), path, ": \"metadata\" must be an object, found a JSON ",
               json::TypeName(meta->type()));
    for (const auto& [k, v] : meta->as_object()) {
      ckpt->metadata_.emplace(k, v.is_string() ? v.as_string() : json::Serialize(v));
    }
  }
  const json::Value* weight_map = root.find("weight_map");
  SDPO_CHECK(weight_map != nullptr, path, ": checkpoint index has no \"weight_map\"");
  SDPO_CHECK(weight_map->is_object(), path,
             ": \"weight_map\" must be an object {tensor name: shard file}, found a JSON ",
             json::TypeName(weight_map->type()));
  SDPO_CHECK(!weight_map->as_object().empty(), path, ": \"weight_map\" is empty");

  const fs::path base = fs::path(path).parent_path();
  std::map<std::string, const SafetensorsFile*> opened;
  for (const auto& [name, shard_value] : weight_map->as_object()) {
    SDPO_CHECK(shard_value.is_string(), path, ": weight_map entry ", Key(name),
               " must be a shard file name, found a JSON ", json::TypeName(shard_value.type()));
    const std::string& shard_name = shard_value.as_string();
    auto it = opened.find(shard_name);
    if (it == opened.end()) {
      fs::path rel(shard_name);
      bool escapes =
          shard_name.empty() || rel.is_absolute() ||
          std::any_of(rel.begin(), rel.end(), [](const fs::path& p) { return p == ".."; });
      SDPO_CHECK(!escapes, path, ": weight_map entry ", Key(name), ": shard ", Key(shard_name),
                 " must be a relative path inside the index's directory");
      try {
        ckpt->shards_.push_back(SafetensorsFile::Open((base / rel).string()));
      } catch (const Error& e) {
        throw Error(absl::StrCat(path, ": shard ", Key(shard_name), " (holding tensor ", Key(name),
                                 "): ", e.what()));
      }
      it = opened.emplace(shard_name, ckpt->shards_.back().get()).first;
    }
    const TensorEntry* e = it->second->find(name);
    SDPO_CHECK(e != nullptr, path, ": weight_map maps tensor ", Key(name), " to shard ",
               it->second->path(), ", which does not contain it");
    ckpt->index_.emplace(name, Location{it->second, e});
  }
  return ckpt;
}

std::vector<std::string> ShardedCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, loc] : index_) out.push_back(name);
  return out;
}

const TensorEntry* ShardedCheckpoint::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second.entry;
}

const ShardedCheckpoint::Location& ShardedCheckpoint::Locate(std::string_view name) const {
  auto it = index_.find(name);
  SDPO_CHECK(it != index_.end(), path_, ": no tensor ", Key(name), " in this checkpoint (it has ",
             index_.size(), " tensors in ", shards_.size(), " file(s))");
  return it->second;
}

const TensorEntry& ShardedCheckpoint::at(std::string_view name) const {
  return *Locate(name).entry;
}

const SafetensorsFile& ShardedCheckpoint::shard_of(std::string_view name) const {
  return *Locate(name).shard;
}

// ---------------------------------------------------------------------------------------------
// Conversion

namespace {

template <typename Out>
std::vector<Out> ReadAs(const TensorEntry& e) {
  std::vector<Out> out(static_cast<size_t>(e.numel));
  const uint8_t* p = e.data;
  const size_t n = out.size();
  auto each = [&](auto sample) {
    using T = decltype(sample);
    for (size_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, p + i * sizeof(T), sizeof(T));
      out[i] = static_cast<Out>(v);
    }
  };
  switch (e.dtype) {
    case SafetensorsDType::kF64:
      each(double{});
      break;
    case SafetensorsDType::kF32:
      each(float{});
      break;
    case SafetensorsDType::kI64:
      each(int64_t{});
      break;
    case SafetensorsDType::kI32:
      each(int32_t{});
      break;
    case SafetensorsDType::kI16:
      each(int16_t{});
      break;
    case SafetensorsDType::kI8:
      each(int8_t{});
      break;
    case SafetensorsDType::kU8:
      each(uint8_t{});
      break;
    case SafetensorsDType::kBool:
      for (size_t i = 0; i < n; ++i) out[i] = p[i] != 0 ? Out(1) : Out(0);
      break;
    case SafetensorsDType::kF16:
    case SafetensorsDType::kBF16: {
      const bool bf16 = e.dtype == SafetensorsDType::kBF16;
      for (size_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        out[i] = static_cast<Out>(bf16 ? BF16BitsToFloat(bits) : F16BitsToFloat(bits));
      }
      break;
    }
  }
  return out;
}

}  // namespace

std::vector<float> ReadAsF32(const TensorEntry& entry) { return ReadAs<float>(entry); }
std::vector<double> ReadAsF64(const TensorEntry& entry) { return ReadAs<double>(entry); }

std::pair<int64_t, double> FirstNonFinite(const TensorEntry& entry) {
  const bool floating =
      entry.dtype == SafetensorsDType::kF64 || entry.dtype == SafetensorsDType::kF32 ||
      entry.dtype == SafetensorsDType::kBF16 || entry.dtype == SafetensorsDType::kF16;
  if (!floating) return {-1, 0.0};
  constexpr int64_t kChunk = 1 << 16;
  const size_t element = SafetensorsElementSize(entry.dtype);
  for (int64_t start = 0; start < entry.numel; start += kChunk) {
    TensorEntry part = entry;
    part.numel = std::min(kChunk, entry.numel - start);
    part.shape = {part.numel};
    part.data = entry.data + static_cast<size_t>(start) * element;
    part.nbytes = static_cast<size_t>(part.numel) * element;
    // f64 holds every value of the narrower dtypes exactly (no overflow to Inf on conversion).
    const std::vector<double> values = ReadAsF64(part);
    for (int64_t i = 0; i < part.numel; ++i) {
      if (!std::isfinite(values[i])) return {start + i, values[i]};
    }
  }
  return {-1, 0.0};
}

// ---------------------------------------------------------------------------------------------
// Writing

namespace {

// A temporary file that is closed and removed unless Commit() renamed it into place.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path) : path_(path) {
    static std::atomic<uint64_t> counter{0};
    tmp_ = absl::StrCat(path, ".tmp.", ::getpid(), ".", counter.fetch_add(1));
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    SDPO_CHECK(fd_ >= 0, path_, ": cannot create temporary file ", tmp_, ": ", Errno());
  }
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }

  void Write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      size_t chunk = std::min<size_t>(n, size_t{1} << 30);
      ssize_t w = ::write(fd_, p, chunk);
      if (w < 0 && errno == EINTR) continue;
      SDPO_CHECK(w > 0, path_, ": writing ", tmp_, " failed: ", w < 0 ? Errno() : "wrote 0 bytes");
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  void Commit() {
    SDPO_CHECK(::fsync(fd_) == 0, path_, ": fsync of ", tmp_, " failed: ", Errno());
    int fd = fd_;
    fd_ = -1;
    SDPO_CHECK(::close(fd) == 0, path_, ": close of ", tmp_, " failed: ", Errno());
    SDPO_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, path_, ": rename from ", tmp_,
               " failed: ", Errno());
    committed_ = true;
    std::string dir = std::filesystem::path(path_).parent_path().string();
    if (dir.empty()) dir = ".";
    FileDescriptor dfd;
    dfd.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    SDPO_CHECK(dfd.fd >= 0, path_, ": cannot open directory ", dir, " to fsync it: ", Errno());
    SDPO_CHECK(::fsync(dfd.fd) == 0, path_, ": fsync of directory ", dir, " failed: ", Errno());
  }

 private:
  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Validate everything before touching the file system.
  std::set<std::string_view> seen;
  for (const TensorToWrite& t : tensors) {
    SDPO_CHECK(!t.name.empty(), path, ": cannot write a tensor with an empty name");
    SDPO_CHECK(t.name != "__metadata__", path, ": \"__metadata__\" is reserved, not a tensor name");
    SDPO_CHECK(seen.insert(t.name).second, path, ": tensor ", Key(t.name), " given twice");
    int64_t numel = 1;
    for (int64_t d : t.shape) {
      SDPO_CHECK(d >= 0, path, ": tensor ", Key(t.name), ": negative dimension in shape ",
                 ShapeString(t.shape));
      SDPO_CHECK(!__builtin_mul_overflow(numel, d, &numel), path, ": tensor ", Key(t.name),
                 ": shape ", ShapeString(t.shape), " overflows int64");
    }
    uint64_t nbytes = 0;
    SDPO_CHECK(
        !__builtin_mul_overflow(static_cast<uint64_t>(numel),
                                static_cast<uint64_t>(SafetensorsElementSize(t.dtype)), &nbytes),
        path, ": tensor ", Key(t.name), ": byte count overflows");
    SDPO_CHECK(nbytes == t.nbytes, path, ": tensor ", Key(t.name), ": shape ", ShapeString(t.shape),
               " of ", SafetensorsDTypeName(t.dtype), " needs ", nbytes, " bytes, but ", t.nbytes,
               " were given");
    SDPO_CHECK(t.data != nullptr || t.nbytes == 0, path, ": tensor ", Key(t.name),
               ": data is null");
  }

  // Data order: larger elements first (keeps every tensor aligned), then by name.
  std::vector<const TensorToWrite*> order;
  for (const TensorToWrite& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    size_t ea = SafetensorsElementSize(a->dtype), eb = SafetensorsElementSize(b->dtype);
    return ea != eb ? ea > eb : a->name < b->name;
  });
  std::map<std::string_view, std::pair<uint64_t, uint64_t>> offsets;
  uint64_t cursor = 0;
  for (const TensorToWrite* t : order) {
    offsets[t->name] = {cursor, cursor + t->nbytes};
    cursor += t->nbytes;
  }

  // Header: "__metadata__" first, then tensors sorted by name.
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header.append("\"__metadata__\":{");
    bool first_meta = true;
    for (const auto& [k, v] : metadata) {
      if (!first_meta) header.push_back(',');
      first_meta = false;
      absl::StrAppend(&header, json::Quote(k), ":", json::Quote(v));
    }
    header.push_back('}');
    first = false;
  }
  std::vector<const TensorToWrite*> by_name;
  for (const TensorToWrite& t : tensors) by_name.push_back(&t);
  std::sort(by_name.begin(), by_name.end(),
            [](const TensorToWrite* a, const TensorToWrite* b) { return a->name < b->name; });
  for (const TensorToWrite* t : by_name) {
    if (!first) header.push_back(',');
    first = false;
    auto [begin, end] = offsets[t->name];
    absl::StrAppend(&header, json::Quote(t->name), ":{\"dtype\":\"", SafetensorsDTypeName(t->dtype),
                    "\",\"shape\":[", absl::StrJoin(t->shape, ","), "],\"data_offsets\":[", begin,
                    ",", end, "]}");
  }
  header.push_back('}');
  header.append((8 - (8 + header.size()) % 8) % 8, ' ');
  SDPO_CHECK(header.size() <= kMaxSafetensorsHeaderBytes, path, ": header of ", header.size(),
             " bytes exceeds the limit of ", kMaxSafetensorsHeaderBytes);

  uint8_t length[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(n >> (8 * i));

  AtomicFile file(path);
  file.Write(length, 8);
  file.Write(header.data(), header.size());
  for (const TensorToWrite* t : order) {
    if (t->nbytes > 0) file.Write(t->data, t->nbytes);
  }
  file.Commit();
}

}  // namespace sdpo
