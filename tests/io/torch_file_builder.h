// Builds torch.save-shaped files byte by byte for tests and the fuzz seed corpus: a pickle writer
// for the opcodes a state_dict uses, a stored-entry zip writer, and a whole .pth made of both whose
// parts a test can break one at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sdpo::testing {

// Appends pickle opcodes (protocol 2).
class PickleWriter {
 public:
  PickleWriter& Proto() { return Op(0x80).Byte(2); }
  PickleWriter& Global(const std::string& module, const std::string& name) {
    return Op('c').Raw(module + "\n" + name + "\n");
  }
  PickleWriter& Str(const std::string& s) { return Op('X').Le(s.size(), 4).Raw(s); }
  PickleWriter& Int(int64_t v) {
    if (v >= 0 && v < 256) return Op('K').Byte(static_cast<uint8_t>(v));
    if (v >= INT32_MIN && v <= INT32_MAX) return Op('J').Le(static_cast<uint32_t>(v), 4);
    return Op(0x8a).Byte(8).Le(static_cast<uint64_t>(v), 8);
  }
  PickleWriter& Mark() { return Op('('); }
  PickleWriter& Tuple() { return Op('t'); }
  PickleWriter& EmptyTuple() { return Op(')'); }
  PickleWriter& EmptyDict() { return Op('}'); }
  PickleWriter& False() { return Op(0x89); }
  PickleWriter& Reduce() { return Op('R'); }
  PickleWriter& PersId() { return Op('Q'); }
  PickleWriter& SetItem() { return Op('s'); }
  PickleWriter& SetItems() { return Op('u'); }
  PickleWriter& Put(uint8_t i) { return Op('q').Byte(i); }
  PickleWriter& Get(uint8_t i) { return Op('h').Byte(i); }
  PickleWriter& Stop() { return Op('.'); }
  PickleWriter& Op(uint8_t op) { return Byte(op); }
  PickleWriter& Byte(uint8_t b) {
    bytes_.push_back(static_cast<char>(b));
    return *this;
  }
  PickleWriter& Le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) Byte(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  PickleWriter& Raw(const std::string& s) {
    bytes_ += s;
    return *this;
  }
  // An empty OrderedDict: GLOBAL collections.OrderedDict, (), REDUCE.
  PickleWriter& OrderedDict() { return Global("collections", "OrderedDict").EmptyTuple().Reduce(); }
  // The ints as a tuple.
  PickleWriter& IntTuple(const std::vector<int64_t>& v) {
    Mark();
    for (int64_t x : v) Int(x);
    return Tuple();
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

struct ZipFileEntry {
  std::string name;
  std::string data;
  uint16_t method = 0;  // written as is; the data is never compressed
  uint16_t flags = 0;
  uint64_t claimed_size = UINT64_MAX;  // the central directory's sizes (default: data.size())
};

// A zip archive of stored entries, data aligned to 64 bytes like torch.save's.
inline std::string ZipArchiveBytes(const std::vector<ZipFileEntry>& entries) {
  auto le = [](std::string& s, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
  };
  std::string out, central;
  for (const ZipFileEntry& e : entries) {
    const uint64_t size = e.claimed_size == UINT64_MAX ? e.data.size() : e.claimed_size;
    const uint32_t size32 = static_cast<uint32_t>(size > 0xFFFFFFFEu ? 0xFFFFFFFFu : size);
    const uint64_t offset = out.size();
    // Local header + padding extra field so that the data starts at a multiple of 64.
    size_t extra = (64 - (out.size() + 30 + e.name.size() + 4) % 64) % 64 + 4;
    le(out, 0x04034b50, 4);
    le(out, 20, 2);
    le(out, e.flags, 2);
    le(out, e.method, 2);
    le(out, 0, 4);  // time, date
    le(out, 0, 4);  // crc (not checked)
    le(out, size32, 4);
    le(out, size32, 4);
    le(out, e.name.size(), 2);
    le(out, extra, 2);
    out += e.name;
    le(out, 0x4246, 2);  // "FB", torch's padding record
    le(out, extra - 4, 2);
    out.append(extra - 4, 'Z');
    out += e.data;

    le(central, 0x02014b50, 4);
    le(central, 20, 2);
    le(central, 20, 2);
    le(central, e.flags, 2);
    le(central, e.method, 2);
    le(central, 0, 4);
    le(central, 0, 4);
    le(central, size32, 4);
    le(central, size32, 4);
    le(central, e.name.size(), 2);
    const bool zip64 = size32 == 0xFFFFFFFFu;
    le(central, zip64 ? 20 : 0, 2);
    le(central, 0, 2);  // comment
    le(central, 0, 2);  // disk
    le(central, 0, 2);
    le(central, 0, 4);
    le(central, offset, 4);
    central += e.name;
    if (zip64) {
      le(central, 0x0001, 2);
      le(central, 16, 2);
      le(central, size, 8);
      le(central, size, 8);
    }
  }
  const uint64_t cd_offset = out.size();
  out += central;
  le(out, 0x06054b50, 4);
  le(out, 0, 4);
  le(out, entries.size(), 2);
  le(out, entries.size(), 2);
  le(out, central.size(), 4);
  le(out, cd_offset, 4);
  le(out, 0, 2);
  return out;
}

// One tensor of a built state_dict, and its storage.
struct BuiltTensor {
  std::string name;
  std::string storage_key;
  std::string storage_type = "FloatStorage";
  int64_t storage_numel = 0;
  int64_t offset = 0;
  std::vector<int64_t> shape, strides;
};

// The data.pkl torch.save writes for an OrderedDict of the tensors (no memo reuse).
inline std::string StateDictPickle(const std::vector<BuiltTensor>& tensors) {
  PickleWriter p;
  p.Proto().OrderedDict().Mark();
  for (const BuiltTensor& t : tensors) {
    p.Str(t.name).Global("torch._utils", "_rebuild_tensor_v2").Mark();
    p.Mark().Str("storage").Global("torch", t.storage_type).Str(t.storage_key).Str("cpu");
    p.Int(t.storage_numel).Tuple().PersId();
    p.Int(t.offset).IntTuple(t.shape).IntTuple(t.strides).False().OrderedDict().Tuple().Reduce();
  }
  p.SetItems().Stop();
  return p.bytes();
}

// A whole .pth: "archive/data.pkl", "archive/data/<key>" of storage_numel * 4 bytes (element i
// holds float i, or byte i % 256 for other sizes) for every distinct storage, "archive/version".
inline std::vector<ZipFileEntry> TorchZipEntries(const std::string& pickle,
                                                 const std::vector<BuiltTensor>& tensors,
                                                 size_t element_size = 4) {
  std::vector<ZipFileEntry> entries = {{"archive/data.pkl", pickle}};
  std::vector<std::string> keys;
  for (const BuiltTensor& t : tensors) {
    bool seen = false;
    for (const std::string& k : keys) seen = seen || k == t.storage_key;
    if (seen) continue;
    keys.push_back(t.storage_key);
    std::string data;
    for (int64_t i = 0; i < t.storage_numel; ++i) {
      if (element_size == 4) {
        float f = static_cast<float>(i);
        data.append(reinterpret_cast<const char*>(&f), 4);
      } else {
        data.append(element_size, static_cast<char>(i));
      }
    }
    entries.push_back({"archive/data/" + t.storage_key, data});
  }
  entries.push_back({"archive/version", "3\n"});
  return entries;
}

}  // namespace sdpo::testing
