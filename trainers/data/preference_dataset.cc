#include "trainers/data/preference_dataset.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "io/json.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace sdpo::data {
namespace {

constexpr const char* kAllowedFields[] = {"context", "id",     "loser", "meta",
                                          "prompt",  "weight", "winner"};

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Why `path` is not a readable regular file, in words ("does not exist", "is a FIFO", ...).
std::string WhyNotRegularFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    struct stat link;
    if (err == ENOENT && ::lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
      return "is a symbolic link to a file that does not exist";
    }
    if (err == ENOENT) return "does not exist";
    if (err == ELOOP) return "is a symbolic link loop";
    return absl::StrCat("cannot be examined (", std::strerror(err), ")");
  }
  if (S_ISDIR(st.st_mode)) return "is a directory, not a file";
  if (S_ISFIFO(st.st_mode)) return "is a FIFO (named pipe), not a regular file";
  if (S_ISSOCK(st.st_mode)) return "is a socket, not a regular file";
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) return "is a device, not a regular file";
  return "is not a regular file";
}

// mkdir -p.
void MakeDirs(const std::string& dir) {
  if (dir.empty() || IsDirectory(dir)) return;
  const size_t slash = dir.find_last_of('/', dir.size() > 1 ? dir.size() - 2 : 0);
  if (slash != std::string::npos && slash > 0) MakeDirs(dir.substr(0, slash));
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    SDPO_FAIL(dir, ": cannot create directory: ", std::strerror(errno));
  }
}

// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
void WriteFileAtomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SDPO_CHECK(fd >= 0, path, ": cannot create ", tmp, ": ", std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      SDPO_FAIL(path, ": write to ", tmp, " failed: ", why);
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    SDPO_FAIL(path, ": cannot finish writing (fsync/rename of ", tmp, "): ", why);
  }
  const size_t slash = path.find_last_of('/');
  const std::string parent = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  const int dfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

const char* TypeOf(const json::Value& v) { return json::TypeName(v.type()); }

bool IsSupportedDType(SafetensorsDType d) {
  return d == SafetensorsDType::kF32 || d == SafetensorsDType::kBF16 ||
         d == SafetensorsDType::kF16 || d == SafetensorsDType::kF64;
}

// Converts `count` values from a safetensors buffer (possibly unaligned) to float.
void ConvertToF32(const TensorEntry& e, float* out) {
  const uint8_t* p = e.data;
  const int64_t n = e.numel;
  switch (e.dtype) {
    case SafetensorsDType::kF32:
      std::memcpy(out, p, static_cast<size_t>(n) * 4);
      return;
    case SafetensorsDType::kF64:
      for (int64_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = static_cast<float>(d);
      }
      return;
    case SafetensorsDType::kBF16:
    case SafetensorsDType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        out[i] = e.dtype == SafetensorsDType::kBF16 ? BF16BitsToFloat(bits) : F16BitsToFloat(bits);
      }
      return;
    default:
      SDPO_FAIL("ConvertToF32: unsupported dtype ", SafetensorsDTypeName(e.dtype), " of ", e.name);
  }
}

}  // namespace

PreferencePair InMemoryPairDataset::Get(int64_t index) const {
  SDPO_CHECK(index >= 0 && index < size(), "InMemoryPairDataset: index ", index,
             " out of range [0, ", size(), ")");
  return pairs_[static_cast<size_t>(index)];
}

PreferenceDataset::~PreferenceDataset() = default;

std::unique_ptr<PreferenceDataset> PreferenceDataset::Open(const std::string& dir,
                                                           const DatasetSpec& spec,
                                                           const OpenOptions& options) {
  SDPO_CHECK(spec.channels > 0 && spec.text_dim > 0, "PreferenceDataset::Open(", dir,
             "): the spec needs channels > 0 and text_dim > 0, "
             "got channels ",
             spec.channels, ", text_dim ", spec.text_dim);
  SDPO_CHECK(spec.frames >= 0 && spec.height >= 0 && spec.width >= 0 && spec.max_text_len >= 0,
             "PreferenceDataset::Open(", dir, "): negative size in the spec");
  SDPO_CHECK(spec.patch[0] > 0 && spec.patch[1] > 0 && spec.patch[2] > 0,
             "PreferenceDataset::Open(", dir, "): the spec's patch sizes must be positive");
  SDPO_CHECK(IsDirectory(dir), dir, ": not a directory (a preference dataset is a directory with ",
             kManifestName, " and safetensors shards; see docs/data.md)");
  const std::string manifest = JoinPath(dir, kManifestName);
  if (!IsRegularFile(manifest)) {
    const std::string why = WhyNotRegularFile(manifest);
    SDPO_CHECK(why != "does not exist", dir, ": no ", kManifestName,
               " (a preference dataset is a directory with ", kManifestName,
               " and safetensors shards; see docs/data.md)");
    SDPO_FAIL(manifest, " ", why);
  }
  std::ifstream in(manifest, std::ios::binary);
  SDPO_CHECK(in.good(), manifest, ": cannot open for reading");

  std::unique_ptr<PreferenceDataset> ds(new PreferenceDataset());
  ds->dir_ = dir;
  std::map<std::string, int64_t> first_line_of_id;
  std::set<std::pair<const SafetensorsFile*, const TensorEntry*>> checked_finite;

  const std::string expected_latent = absl::StrCat(
      "[C=", spec.channels, ", F=", spec.frames > 0 ? absl::StrCat(spec.frames) : "any",
      ", H=", spec.height > 0 ? absl::StrCat(spec.height) : "any",
      ", W=", spec.width > 0 ? absl::StrCat(spec.width) : "any", "]");

  std::string text;
  int64_t line_number = 0;
  while (std::getline(in, text)) {
    ++line_number;
    // A UTF-8 byte-order mark (written by some Windows editors) is not part of the JSON.
    if (line_number == 1 && text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = absl::StrCat(manifest, " line ", line_number);

    json::Value v;
    try {
      v = json::Parse(text, where);
    } catch (const Error& e) {
      // A manifest line is one line: drop the parser's "line 1, " to avoid two line numbers.
      std::string msg = e.what();
      const size_t at = msg.find("at line 1, column");
      if (at != std::string::npos) msg.erase(at + 3, 8);
      throw Error(msg);
    }
    SDPO_CHECK(v.is_object(), where, ": expected a JSON object (one pair per line), found ",
               TypeOf(v));
    for (const auto& [key, value] : v.as_object()) {
      const bool known =
          std::find_if(std::begin(kAllowedFields), std::end(kAllowedFields),
                       [&](const char* f) { return key == f; }) != std::end(kAllowedFields);
      SDPO_CHECK(known, where, ": unknown field \"", key, "\"; allowed fields are ",
                 absl::StrJoin(kAllowedFields, ", "), " (free-form data goes in \"meta\")");
    }

    Entry entry;
    entry.line = line_number;
    const json::Value* id = v.find("id");
    SDPO_CHECK(id != nullptr, where, ": missing \"id\"");
    SDPO_CHECK(id->is_string() && !id->as_string().empty(), where,
               ": \"id\" must be a non-empty string, found ",
               id->is_string() ? "\"\"" : TypeOf(*id));
    entry.id = id->as_string();
    const auto [it, inserted] = first_line_of_id.emplace(entry.id, line_number);
    SDPO_CHECK(inserted, where, ": duplicate id \"", entry.id, "\" (first on line ", it->second,
               ")");
    const json::Value* prompt = v.find("prompt");
    SDPO_CHECK(prompt != nullptr, where, ": missing \"prompt\" (pair \"", entry.id, "\")");
    SDPO_CHECK(prompt->is_string(), where, ": \"prompt\" must be a string, found ",
               TypeOf(*prompt));
    entry.prompt = prompt->as_string();
    if (const json::Value* w = v.find("weight")) {
      SDPO_CHECK(w->is_number(), where, ": \"weight\" must be a number, found ", TypeOf(*w));
      entry.weight = w->as_double();
      SDPO_CHECK(std::isfinite(entry.weight) && entry.weight >= 0, where,
                 ": \"weight\" must be finite and >= 0, found ", entry.weight);
    }

    // Resolves a reference {"file": ..., "key": ...} or "file:key".
    auto resolve = [&](const char* field) -> Ref {
      const json::Value* r = v.find(field);
      SDPO_CHECK(r != nullptr, where, ": missing \"", field, "\" (pair \"", entry.id, "\")");
      std::string file, key;
      if (r->is_string()) {
        const std::string& s = r->as_string();
        const size_t colon = s.find(':');
        SDPO_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < s.size(), where, ": \"",
                   field, "\" must read \"<file>:<key>\", found \"", s, "\"");
        file = s.substr(0, colon);
        key = s.substr(colon + 1);
      } else if (r->is_object()) {
        const json::Value* f = r->find("file");
        const json::Value* k = r->find("key");
        SDPO_CHECK(f != nullptr && k != nullptr && f->is_string() && k->is_string() &&
                       r->as_object().size() == 2,
                   where, ": \"", field,
                   "\" must be {\"file\": <string>, \"key\": <string>}, found ",
                   json::Serialize(*r));
        file = f->as_string();
        key = k->as_string();
      } else {
        SDPO_FAIL(where, ": \"", field,
                  "\" must be {\"file\": ..., \"key\": ...} or \"<file>:<key>\", found ",
                  TypeOf(*r));
      }
      SDPO_CHECK(
          !file.empty() && file[0] != '/' && file.find("..") == std::string::npos && !key.empty(),
          where, ": \"", field, "\" file \"", file, "\" and key \"", key,
          "\" must be non-empty, and the file a relative path inside the dataset "
          "directory (no '/' at the start, no '..')");
      auto fit = ds->files_.find(file);
      if (fit == ds->files_.end()) {
        const std::string path = JoinPath(dir, file);
        SDPO_CHECK(IsRegularFile(path), where, ": \"", field, "\" refers to file \"", file,
                   "\" in ", dir, ", which ", WhyNotRegularFile(path));
        std::unique_ptr<SafetensorsFile> opened;
        try {
          opened = SafetensorsFile::Open(path);
        } catch (const Error& e) {
          SDPO_FAIL(where, ": \"", field, "\" refers to ", path,
                    ", which is not a valid safetensors file: ", e.what());
        }
        fit = ds->files_.emplace(file, std::move(opened)).first;
      }
      const SafetensorsFile* sf = fit->second.get();
      const TensorEntry* te = sf->find(key);
      SDPO_CHECK(te != nullptr, where, ": \"", field, "\" key \"", key, "\" is not in ", file,
                 " (which has ", sf->tensors().size(), " tensors)");
      SDPO_CHECK(IsSupportedDType(te->dtype), where, ": \"", field, "\" ", file, ":", key,
                 " has dtype ", SafetensorsDTypeName(te->dtype),
                 "; expected F32, BF16, F16 or F64");
      if (options.check_finite && checked_finite.emplace(sf, te).second) {
        const auto [index, value] = FirstNonFinite(*te);
        SDPO_CHECK(index < 0, where, ": \"", field, "\" ", file, ":", key,
                   " has a non-finite value (", value, ") at flat index ", index, " of shape ",
                   ShapeStr(te->shape));
      }
      return Ref{sf, te, file};
    };
    auto name = [](const Ref& r) { return absl::StrCat(r.file_name, ":", r.entry->name); };

    entry.winner = resolve("winner");
    entry.loser = resolve("loser");
    entry.context = resolve("context");
    for (const auto& [field, ref] : {std::pair<const char*, Ref>{"winner", entry.winner},
                                     std::pair<const char*, Ref>{"loser", entry.loser}}) {
      const Shape& s = ref.entry->shape;
      const bool ok = s.size() == 4 && s[0] == spec.channels &&
                      (spec.frames == 0 || s[1] == spec.frames) &&
                      (spec.height == 0 || s[2] == spec.height) &&
                      (spec.width == 0 || s[3] == spec.width) && s[1] > 0 && s[2] > 0 && s[3] > 0;
      SDPO_CHECK(ok, where, ": \"", field, "\" ", name(ref), " has shape ", ShapeStr(s),
                 "; the model expects a latent ", expected_latent);
      const bool fits =
          s[1] % spec.patch[0] == 0 && s[2] % spec.patch[1] == 0 && s[3] % spec.patch[2] == 0;
      SDPO_CHECK(fits, where, ": \"", field, "\" ", name(ref), " has shape ", ShapeStr(s),
                 "; F, H and W must be multiples of the model's patch size (", spec.patch[0], ", ",
                 spec.patch[1], ", ", spec.patch[2], ")");
    }
    SDPO_CHECK(entry.winner.entry->shape == entry.loser.entry->shape, where, ": winner ",
               name(entry.winner), " ", ShapeStr(entry.winner.entry->shape), " and loser ",
               name(entry.loser), " ", ShapeStr(entry.loser.entry->shape),
               " differ in shape (a pair is noised and compared elementwise)");
    const Shape& cs = entry.context.entry->shape;
    const bool context_ok = cs.size() == 2 && cs[0] >= 1 && cs[1] == spec.text_dim &&
                            (spec.max_text_len == 0 || cs[0] <= spec.max_text_len);
    SDPO_CHECK(
        context_ok, where, ": \"context\" ", name(entry.context), " has shape ", ShapeStr(cs),
        "; the model expects a text embedding [L, D=", spec.text_dim,
        "] with 1 <= L <= ", spec.max_text_len > 0 ? absl::StrCat(spec.max_text_len) : "any");
    ds->index_of_.emplace(entry.id, static_cast<int64_t>(ds->entries_.size()));
    ds->entries_.push_back(std::move(entry));
  }
  SDPO_CHECK(!in.bad(), manifest, ": read error after line ", line_number);
  SDPO_CHECK(!ds->entries_.empty(), manifest, ": no pairs (the dataset is empty)");
  return ds;
}

const PreferenceDataset::Entry& PreferenceDataset::entry(int64_t index) const {
  SDPO_CHECK(index >= 0 && index < size(), dir_, ": pair index ", index, " out of range [0, ",
             size(), ")");
  return entries_[static_cast<size_t>(index)];
}

Tensor PreferenceDataset::Load(const Ref& ref) const {
  Tensor t = Tensor::Empty(ref.entry->shape, kF32);
  ConvertToF32(*ref.entry, t.data<float>());
  return t;
}

PreferencePair PreferenceDataset::Get(int64_t index) const {
  const Entry& e = entry(index);
  PreferencePair p;
  p.id = e.id;
  p.prompt = e.prompt;
  p.winner = Load(e.winner);
  p.loser = Load(e.loser);
  p.context = Load(e.context);
  p.weight = e.weight;
  return p;
}

const std::string& PreferenceDataset::id(int64_t index) const { return entry(index).id; }
const std::string& PreferenceDataset::prompt(int64_t index) const { return entry(index).prompt; }
double PreferenceDataset::weight(int64_t index) const { return entry(index).weight; }
const std::vector<int64_t>& PreferenceDataset::latent_shape(int64_t index) const {
  return entry(index).winner.entry->shape;
}
const std::vector<int64_t>& PreferenceDataset::context_shape(int64_t index) const {
  return entry(index).context.entry->shape;
}

int64_t PreferenceDataset::IndexOf(const std::string& id) const {
  auto it = index_of_.find(id);
  return it == index_of_.end() ? -1 : it->second;
}

std::vector<std::string> PreferenceDataset::shard_files() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : files_) out.push_back(name);
  return out;
}

// --- writer -------------------------------------------------------------------------------

struct PreferenceDatasetWriter::Pending {
  struct Stored {
    std::string key;
    SafetensorsDType dtype;
    Shape shape;
    std::string bytes;
  };
  std::vector<Stored> tensors;
  // Contexts already stored: (prompt, content hash) -> "file" / "key".
  std::map<std::pair<std::string, std::pair<uint64_t, uint64_t>>,
           std::pair<std::string, std::string>>
      contexts;
  std::set<std::string> ids;
};

namespace {

std::pair<uint64_t, uint64_t> ContentHash(const Shape& shape, const std::string& bytes) {
  uint64_t a = 0xcbf29ce484222325ull, b = 0x9E3779B97F4A7C15ull;
  auto mix = [&](uint8_t c) {
    a = (a ^ c) * 0x100000001b3ull;
    b = (b + c + 1) * 0xff51afd7ed558ccdull;
    b ^= b >> 29;
  };
  for (int64_t d : shape) {
    for (int k = 0; k < 8; ++k) mix(static_cast<uint8_t>(static_cast<uint64_t>(d) >> (8 * k)));
  }
  for (char c : bytes) mix(static_cast<uint8_t>(c));
  return {a, b};
}

// The tensor's values in `dtype`, little-endian row-major bytes.
std::string ToBytes(const Tensor& t, DType dtype) {
  Tensor c = ops::Contiguous(ops::Cast(ops::To(t, Device::CPU()), dtype));
  return std::string(static_cast<const char*>(c.raw_data()), c.nbytes());
}

}  // namespace

PreferenceDatasetWriter::PreferenceDatasetWriter(std::string dir, WriterOptions options)
    : dir_(std::move(dir)), options_(options), pending_(std::make_unique<Pending>()) {
  SDPO_CHECK(!dir_.empty(), "PreferenceDatasetWriter: empty directory name");
  SDPO_CHECK(options_.pairs_per_shard >= 1, "PreferenceDatasetWriter(", dir_,
             "): pairs_per_shard must be >= 1, got ", options_.pairs_per_shard);
  SDPO_CHECK(options_.dtype == kF32 || options_.dtype == kBF16 || options_.dtype == kF16,
             "PreferenceDatasetWriter(", dir_, "): dtype must be f32, bf16 or f16, got ",
             DTypeName(options_.dtype));
  MakeDirs(dir_);
  SDPO_CHECK(options_.overwrite || !IsRegularFile(JoinPath(dir_, PreferenceDataset::kManifestName)),
             dir_, ": already holds a ", PreferenceDataset::kManifestName,
             " (set WriterOptions::overwrite to replace the dataset)");
}

PreferenceDatasetWriter::~PreferenceDatasetWriter() = default;

void PreferenceDatasetWriter::Add(const PreferencePair& pair) {
  SDPO_CHECK(!finished_, dir_, ": Add() after Finish()");
  const std::string who = absl::StrCat(dir_, ": pair \"", pair.id, "\"");
  SDPO_CHECK(!pair.id.empty(), dir_, ": pair ", count_, " has an empty id");
  SDPO_CHECK(pending_->ids.insert(pair.id).second, who, ": duplicate id");
  auto check = [&](const Tensor& t, const char* field, int64_t rank) {
    SDPO_CHECK(t.defined() && t.dim() == rank && IsFloating(t.dtype()) && t.numel() > 0, who,
               ": \"", field, "\" must be a non-empty floating tensor of rank ", rank, ", got ",
               t.defined() ? t.str() : "undefined");
    const std::vector<double> v = t.ToVector();
    for (size_t i = 0; i < v.size(); ++i) {
      SDPO_CHECK(std::isfinite(v[i]), who, ": \"", field, "\" has a non-finite value (", v[i],
                 ") at flat index ", i);
    }
  };
  check(pair.winner, "winner", 4);
  check(pair.loser, "loser", 4);
  check(pair.context, "context", 2);
  SDPO_CHECK(pair.winner.shape() == pair.loser.shape(), who, ": winner ",
             ShapeStr(pair.winner.shape()), " and loser ", ShapeStr(pair.loser.shape()),
             " differ in shape");
  SDPO_CHECK(std::isfinite(pair.weight) && pair.weight >= 0, who,
             ": weight must be finite and >= 0, got ", pair.weight);

  const std::string file = absl::StrFormat("shard-%05d.safetensors", shard_index_);
  const SafetensorsDType st = ToSafetensorsDType(options_.dtype);
  const std::string prefix = absl::StrFormat("%06d", count_);
  pending_->tensors.push_back(
      {prefix + ".winner", st, pair.winner.shape(), ToBytes(pair.winner, options_.dtype)});
  pending_->tensors.push_back(
      {prefix + ".loser", st, pair.loser.shape(), ToBytes(pair.loser, options_.dtype)});
  std::string context_bytes = ToBytes(pair.context, options_.dtype);
  const auto hash_key =
      std::make_pair(pair.prompt, ContentHash(pair.context.shape(), context_bytes));
  auto cit = pending_->contexts.find(hash_key);
  if (cit == pending_->contexts.end()) {
    const std::string key = prefix + ".context";
    pending_->tensors.push_back({key, st, pair.context.shape(), std::move(context_bytes)});
    cit = pending_->contexts.emplace(hash_key, std::make_pair(file, key)).first;
  }

  auto ref = [](const std::string& f, const std::string& k) {
    return json::Value::MakeObject(
        {{"file", json::Value::String(f)}, {"key", json::Value::String(k)}});
  };
  json::Value line = json::Value::MakeObject({
      {"id", json::Value::String(pair.id)},
      {"prompt", json::Value::String(pair.prompt)},
      {"winner", ref(file, prefix + ".winner")},
      {"loser", ref(file, prefix + ".loser")},
      {"context", ref(cit->second.first, cit->second.second)},
      {"weight", json::Value::Double(pair.weight)},
  });
  manifest_lines_.push_back(json::Serialize(line));
  ++count_;
  if (count_ % options_.pairs_per_shard == 0) FlushShard();
}

void PreferenceDatasetWriter::FlushShard() {
  if (pending_->tensors.empty()) return;
  const std::string file = absl::StrFormat("shard-%05d.safetensors", shard_index_);
  std::vector<TensorToWrite> tensors;
  for (const Pending::Stored& s : pending_->tensors) {
    tensors.push_back({s.key, s.dtype, s.shape, s.bytes.data(), s.bytes.size()});
  }
  WriteSafetensors(JoinPath(dir_, file), tensors, {{"format", "sdpo-preference-shard"}});
  pending_->tensors.clear();
  ++shard_index_;
}

int64_t PreferenceDatasetWriter::Finish() {
  SDPO_CHECK(!finished_, dir_, ": Finish() called twice");
  SDPO_CHECK(count_ > 0, dir_, ": Finish() with no pairs (an empty dataset cannot be opened)");
  FlushShard();
  std::string manifest;
  for (const std::string& line : manifest_lines_) absl::StrAppend(&manifest, line, "\n");
  WriteFileAtomically(JoinPath(dir_, PreferenceDataset::kManifestName), manifest);
  finished_ = true;
  return count_;
}

}  // namespace sdpo::data
