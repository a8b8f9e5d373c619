#include "io/torch_pickle.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/zip.h"
#include "tensor/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "torch storages are read as little-endian; a big-endian host "
              "needs byte swapping");

namespace sdpo {
namespace {

constexpr int kMaxDims = 64;

// The only callables and classes a state_dict pickle may name.
enum class Global : uint8_t {
  kOrderedDict,
  kRebuildTensorV2,
  kRebuildTensor,
  kRebuildParameter,
  kStorageType,
};

struct StorageTypeName {
  const char* name;  // in module "torch"
  SafetensorsDType dtype;
};
constexpr StorageTypeName kStorageTypes[] = {
    {"FloatStorage", SafetensorsDType::kF32}, {"DoubleStorage", SafetensorsDType::kF64},
    {"HalfStorage", SafetensorsDType::kF16},  {"BFloat16Storage", SafetensorsDType::kBF16},
    {"LongStorage", SafetensorsDType::kI64},  {"IntStorage", SafetensorsDType::kI32},
    {"ShortStorage", SafetensorsDType::kI16}, {"CharStorage", SafetensorsDType::kI8},
    {"ByteStorage", SafetensorsDType::kU8},   {"BoolStorage", SafetensorsDType::kBool},
};

std::string AllowedGlobals() {
  std::vector<std::string> names = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                    "torch._utils._rebuild_tensor",
                                    "torch._utils._rebuild_parameter"};
  for (const StorageTypeName& s : kStorageTypes) names.push_back(absl::StrCat("torch.", s.name));
  return absl::StrJoin(names, ", ");
}

struct Object {
  enum Kind : uint8_t {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kStorage,
    kTensor
  };
  Kind kind = kNone;
  int64_t value = 0;                                // bool/int; storage or tensor index; Global
  SafetensorsDType dtype = SafetensorsDType::kF32;  // of a storage type
  double real = 0;
  std::string text;
  std::vector<Object*> items;  // tuple/list elements; dict: key, value, key, value, ...
};

const char* KindName(Object::Kind k) {
  static const char* const kNames[] = {"None", "bool", "int",    "float",   "str",   "tuple",
                                       "list", "dict", "global", "storage", "tensor"};
  return kNames[k];
}

struct Storage {
  std::string key;
  SafetensorsDType dtype;
  int64_t numel = 0;
  const uint8_t* data = nullptr;
  size_t file_offset = 0;
};

struct TensorRecord {
  size_t storage = 0;
  int64_t offset = 0;
  std::vector<int64_t> shape, strides;
};

std::string ShapeString(const std::vector<int64_t>& v) {
  return absl::StrCat("[", absl::StrJoin(v, ", "), "]");
}

// Runs data.pkl. Every object lives in `arena_` (memo references and self-containing containers
// need no ownership tracking); nothing is called or imported.
class Machine {
 public:
  Machine(std::string_view pickle, const ZipArchive& zip, const std::string& prefix,
          const uint8_t* base, const std::string& where)
      : pickle_(pickle), zip_(zip), prefix_(prefix), base_(base), where_(where) {}

  Object* Run();
  const std::vector<Storage>& storages() const { return storages_; }
  const std::vector<TensorRecord>& tensors() const { return tensors_; }

 private:
  template <typename... Parts>
  [[noreturn]] void Fail(const Parts&... parts) const {
    throw Error(absl::StrCat(where_, ": data.pkl byte ", op_pos_, ": ", parts...));
  }
  Object* New(Object::Kind kind) {
    if (arena_.size() >= kMaxTorchPickleObjects) {
      Fail("more than ", kMaxTorchPickleObjects, " objects; not a state_dict");
    }
    arena_.push_back(std::make_unique<Object>());
    arena_.back()->kind = kind;
    return arena_.back().get();
  }
  const uint8_t* Take(size_t n) {
    if (pickle_.size() - pos_ < n) {
      Fail("truncated: opcode needs ", n, " more bytes, ", pickle_.size() - pos_, " left");
    }
    const uint8_t* p = reinterpret_cast<const uint8_t*>(pickle_.data()) + pos_;
    pos_ += n;
    return p;
  }
  uint64_t TakeLe(int n) {
    const uint8_t* p = Take(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }
  std::string TakeLine() {
    const size_t nl = pickle_.find('\n', pos_);
    if (nl == std::string_view::npos || nl - pos_ > 256) Fail("GLOBAL name not terminated");
    std::string line(pickle_.substr(pos_, nl - pos_));
    pos_ = nl + 1;
    return line;
  }
  void Push(Object* o) {
    if (stack_.size() >= kMaxTorchPickleObjects) Fail("stack deeper than ", kMaxTorchPickleObjects);
    stack_.push_back(o);
  }
  Object* Pop() {
    const size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() <= floor) Fail("stack underflow");
    Object* o = stack_.back();
    stack_.pop_back();
    return o;
  }
  Object* Top() {
    if (stack_.empty()) Fail("stack underflow");
    return stack_.back();
  }
  std::vector<Object*> PopToMark() {
    if (marks_.empty()) Fail("no MARK before a collection opcode");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Object*> items(stack_.begin() + mark, stack_.end());
    stack_.resize(mark);
    return items;
  }
  Object* Container(Object::Kind kind, const char* opcode) {
    Object* o = Top();
    if (o->kind != kind)
      Fail(opcode, " expects a ", KindName(kind), ", found a ", KindName(o->kind));
    return o;
  }
  Object* Tuple(std::vector<Object*> items) {
    Object* t = New(Object::kTuple);
    t->items = std::move(items);
    return t;
  }
  Object* String(size_t n) {
    if (n > pickle_.size() - pos_) Fail("string of ", n, " bytes runs past the end of data.pkl");
    Object* s = New(Object::kString);
    s->text.assign(reinterpret_cast<const char*>(Take(n)), n);
    return s;
  }
  Object* Int(int64_t v) {
    Object* o = New(Object::kInt);
    o->value = v;
    return o;
  }
  void Memo(uint64_t index) {
    Object* top = Top();
    memo_[index] = top;
    if (memo_.size() > kMaxTorchPickleObjects) Fail("memo too large");
  }
  Object* Recall(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) Fail("memo entry ", index, " was never stored");
    return it->second;
  }

  Object* ResolveGlobal(const std::string& module, const std::string& name);
  Object* Call(Object* callable, Object* args);
  Object* PersistentLoad(Object* pid);
  Object* RebuildTensor(Object* args, bool v2);
  int64_t IntArg(const Object* o, const char* what);
  std::vector<int64_t> IntTuple(const Object* o, const char* what);

  std::string_view pickle_;
  const ZipArchive& zip_;
  std::string prefix_;
  const uint8_t* base_;
  const std::string& where_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<std::unique_ptr<Object>> arena_;
  std::vector<Object*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Object*> memo_;
  std::vector<Storage> storages_;
  std::map<std::string, size_t> storage_index_;
  std::vector<TensorRecord> tensors_;
};

Object* Machine::ResolveGlobal(const std::string& module, const std::string& name) {
  Object* g = New(Object::kGlobal);
  if (module == "collections" && name == "OrderedDict") {
    g->value = static_cast<int64_t>(Global::kOrderedDict);
    return g;
  }
  if (module == "torch._utils") {
    if (name == "_rebuild_tensor_v2") {
      g->value = static_cast<int64_t>(Global::kRebuildTensorV2);
      return g;
    }
    if (name == "_rebuild_tensor") {
      g->value = static_cast<int64_t>(Global::kRebuildTensor);
      return g;
    }
    if (name == "_rebuild_parameter") {
      g->value = static_cast<int64_t>(Global::kRebuildParameter);
      return g;
    }
  }
  if (module == "torch") {
    for (const StorageTypeName& s : kStorageTypes) {
      if (name == s.name) {
        g->value = static_cast<int64_t>(Global::kStorageType);
        g->dtype = s.dtype;
        return g;
      }
    }
  }
  Fail("refusing the global ", QuotedName(absl::StrCat(module, ".", name)),
       ": a state_dict pickle names only ", AllowedGlobals(),
       " (this file could run code if loaded with pickle; it is not loaded)");
}

int64_t Machine::IntArg(const Object* o, const char* what) {
  if (o->kind != Object::kInt) Fail(what, " must be an int, found a ", KindName(o->kind));
  return o->value;
}

std::vector<int64_t> Machine::IntTuple(const Object* o, const char* what) {
  if (o->kind != Object::kTuple)
    Fail(what, " must be a tuple of ints, found a ", KindName(o->kind));
  if (o->items.size() > kMaxDims)
    Fail(what, " has ", o->items.size(), " dimensions (at most ", kMaxDims, ")");
  std::vector<int64_t> out;
  for (const Object* d : o->items) out.push_back(IntArg(d, what));
  return out;
}

Object* Machine::PersistentLoad(Object* pid) {
  // ('storage', storage type, key, location, numel)
  if (pid->kind != Object::kTuple || pid->items.size() != 5 ||
      pid->items[0]->kind != Object::kString || pid->items[0]->text != "storage") {
    Fail(
        "persistent id must be ('storage', type, key, location, numel), found "
        "a ",
        KindName(pid->kind),
        pid->kind == Object::kTuple ? absl::StrCat(" of ", pid->items.size()) : std::string());
  }
  const Object* type = pid->items[1];
  if (type->kind != Object::kGlobal || type->value != static_cast<int64_t>(Global::kStorageType)) {
    Fail("persistent id names a ", KindName(type->kind), " where a storage type belongs");
  }
  if (pid->items[2]->kind != Object::kString) Fail("storage key must be a str");
  const std::string& key = pid->items[2]->text;
  const int64_t numel = IntArg(pid->items[4], "storage numel");
  if (numel < 0) Fail("storage ", QuotedName(key), " has a negative size ", numel);

  auto it = storage_index_.find(key);
  if (it != storage_index_.end()) {
    const Storage& s = storages_[it->second];
    if (s.dtype != type->dtype || s.numel != numel) {
      Fail("storage ", QuotedName(key), " is declared twice, as ", numel, " ",
           SafetensorsDTypeName(type->dtype), " and as ", s.numel, " ",
           SafetensorsDTypeName(s.dtype));
    }
  } else {
    const std::string entry_name = absl::StrCat(prefix_, "data/", key);
    const ZipEntry* entry = zip_.find(entry_name);
    if (entry == nullptr) {
      Fail("storage ", QuotedName(key), " has no zip entry ", QuotedName(entry_name));
    }
    std::string_view bytes = zip_.Data(*entry);
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel),
                               static_cast<uint64_t>(SafetensorsElementSize(type->dtype)),
                               &nbytes) ||
        nbytes != bytes.size()) {
      Fail("storage ", QuotedName(key), " of ", numel, " ", SafetensorsDTypeName(type->dtype),
           " elements needs ", numel, " x ", SafetensorsElementSize(type->dtype),
           " bytes, but its entry holds ", bytes.size());
    }
    Storage s;
    s.key = key;
    s.dtype = type->dtype;
    s.numel = numel;
    s.data = reinterpret_cast<const uint8_t*>(bytes.data());
    s.file_offset = static_cast<size_t>(s.data - base_);
    it = storage_index_.emplace(key, storages_.size()).first;
    storages_.push_back(std::move(s));
  }
  Object* o = New(Object::kStorage);
  o->value = static_cast<int64_t>(it->second);
  return o;
}

Object* Machine::RebuildTensor(Object* args, bool v2) {
  // v2: (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]); v1:
  // (storage, storage_offset, size, stride).
  const size_t n = args->items.size();
  if (v2 ? (n != 6 && n != 7) : n != 4) {
    Fail("_rebuild_tensor", v2 ? "_v2" : "", " takes ", v2 ? "6 or 7" : "4", " arguments, found ",
         n);
  }
  const Object* storage = args->items[0];
  if (storage->kind != Object::kStorage) {
    Fail("tensor storage must be a persistent storage record, found a ", KindName(storage->kind));
  }
  TensorRecord t;
  t.storage = static_cast<size_t>(storage->value);
  t.offset = IntArg(args->items[1], "storage_offset");
  t.shape = IntTuple(args->items[2], "size");
  t.strides = IntTuple(args->items[3], "stride");
  if (v2) {
    if (args->items[4]->kind != Object::kBool) Fail("requires_grad must be a bool");
    const Object* hooks = args->items[5];
    if (hooks->kind != Object::kDict || !hooks->items.empty()) {
      Fail("backward_hooks must be an empty OrderedDict");
    }
  }
  Object* o = New(Object::kTensor);
  o->value = static_cast<int64_t>(tensors_.size());
  tensors_.push_back(std::move(t));
  return o;
}

Object* Machine::Call(Object* callable, Object* args) {
  if (callable->kind != Object::kGlobal) Fail("REDUCE calls a ", KindName(callable->kind));
  if (args->kind != Object::kTuple) Fail("REDUCE arguments must be a tuple");
  switch (static_cast<Global>(callable->value)) {
    case Global::kOrderedDict:
      if (!args->items.empty()) Fail("OrderedDict() takes no arguments in a state_dict");
      return New(Object::kDict);
    case Global::kRebuildTensorV2:
      return RebuildTensor(args, true);
    case Global::kRebuildTensor:
      return RebuildTensor(args, false);
    case Global::kRebuildParameter:
      if (args->items.size() != 3 || args->items[0]->kind != Object::kTensor) {
        Fail("_rebuild_parameter takes (tensor, requires_grad, backward_hooks)");
      }
      return args->items[0];
    case Global::kStorageType:
      break;
  }
  Fail("a storage type is called; storages come only from persistent ids");
}

Object* Machine::Run() {
  if (pickle_.size() > kMaxTorchPickleBytes) {
    Fail("data.pkl has ", pickle_.size(), " bytes, more than the limit of ", kMaxTorchPickleBytes);
  }
  while (true) {
    op_pos_ = pos_;
    const uint8_t op = *Take(1);
    switch (op) {
      case 0x80:  // PROTO
        if (*Take(1) > 5) Fail("unknown pickle protocol");
        break;
      case 0x95:  // FRAME
        Take(8);
        break;
      case 'c': {  // GLOBAL
        std::string module = TakeLine();
        std::string name = TakeLine();
        Push(ResolveGlobal(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        Object* name = Pop();
        Object* module = Pop();
        if (name->kind != Object::kString || module->kind != Object::kString) {
          Fail("STACK_GLOBAL needs two strings");
        }
        Push(ResolveGlobal(module->text, name->text));
        break;
      }
      case '}':
        Push(New(Object::kDict));
        break;
      case ']':
        Push(New(Object::kList));
        break;
      case ')':
        Push(Tuple({}));
        break;
      case '(':
        marks_.push_back(stack_.size());
        break;
      case 't':
        Push(Tuple(PopToMark()));
        break;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<Object*> items(op - 0x84);
        for (size_t i = items.size(); i-- > 0;) items[i] = Pop();
        Push(Tuple(std::move(items)));
        break;
      }
      case 'l': {  // LIST
        Object* list = New(Object::kList);
        list->items = PopToMark();
        Push(list);
        break;
      }
      case 'a': {  // APPEND
        Object* v = Pop();
        Container(Object::kList, "APPEND")->items.push_back(v);
        break;
      }
      case 'e': {  // APPENDS
        std::vector<Object*> items = PopToMark();
        Object* list = Container(Object::kList, "APPENDS");
        list->items.insert(list->items.end(), items.begin(), items.end());
        break;
      }
      case 's': {  // SETITEM
        Object* v = Pop();
        Object* k = Pop();
        Object* dict = Container(Object::kDict, "SETITEM");
        dict->items.push_back(k);
        dict->items.push_back(v);
        break;
      }
      case 'u': {  // SETITEMS
        std::vector<Object*> items = PopToMark();
        if (items.size() % 2 != 0) Fail("SETITEMS with an odd number of items");
        Object* dict = Container(Object::kDict, "SETITEMS");
        dict->items.insert(dict->items.end(), items.begin(), items.end());
        break;
      }
      case 'X':  // BINUNICODE
        Push(String(TakeLe(4)));
        break;
      case 0x8c:  // SHORT_BINUNICODE
      case 'U':   // SHORT_BINSTRING
        Push(String(TakeLe(1)));
        break;
      case 0x8d:  // BINUNICODE8
        Push(String(TakeLe(8)));
        break;
      case 'T': {  // BINSTRING (signed length)
        const int32_t n = static_cast<int32_t>(TakeLe(4));
        if (n < 0) Fail("negative string length");
        Push(String(static_cast<size_t>(n)));
        break;
      }
      case 'J':
        Push(Int(static_cast<int32_t>(TakeLe(4))));
        break;
      case 'K':
        Push(Int(static_cast<int64_t>(TakeLe(1))));
        break;
      case 'M':
        Push(Int(static_cast<int64_t>(TakeLe(2))));
        break;
      case 0x8a: {  // LONG1: n bytes of two's complement
        const size_t n = TakeLe(1);
        if (n > 8) Fail("integer of ", n, " bytes does not fit in int64");
        uint64_t v = n == 0 ? 0 : TakeLe(static_cast<int>(n));
        if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign
        Push(Int(static_cast<int64_t>(v)));
        break;
      }
      case 'G': {  // BINFLOAT, big-endian
        const uint8_t* p = Take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];
        Object* f = New(Object::kFloat);
        std::memcpy(&f->real, &bits, 8);
        Push(f);
        break;
      }
      case 'N':
        Push(New(Object::kNone));
        break;
      case 0x88:
      case 0x89: {  // NEWTRUE, NEWFALSE
        Object* b = New(Object::kBool);
        b->value = op == 0x88;
        Push(b);
        break;
      }
      case 'q':
        Memo(TakeLe(1));
        break;
      case 'r':
        Memo(TakeLe(4));
        break;
      case 0x94:  // MEMOIZE
        Memo(memo_.size());
        break;
      case 'h':
        Push(Recall(TakeLe(1)));
        break;
      case 'j':
        Push(Recall(TakeLe(4)));
        break;
      case 'Q':  // BINPERSID
        Push(PersistentLoad(Pop()));
        break;
      case 'R': {  // REDUCE
        Object* args = Pop();
        Object* callable = Pop();
        Push(Call(callable, args));
        break;
      }
      case 'b': {  // BUILD: an OrderedDict's __dict__ (its `_metadata`), not needed
        Object* state = Pop();
        Object* target = Top();
        if (target->kind != Object::kDict ||
            (state->kind != Object::kDict && state->kind != Object::kNone)) {
          Fail("BUILD of a ", KindName(target->kind), " with a ", KindName(state->kind),
               " state; only an OrderedDict's attributes are accepted");
        }
        break;
      }
      case '.': {  // STOP
        Object* result = Pop();
        if (!stack_.empty() || !marks_.empty()) Fail("STOP with objects left on the stack");
        return result;
      }
      default:
        Fail("opcode 0x", absl::Hex(op, absl::kZeroPad2),
             op >= 0x20 && op < 0x7F
                 ? absl::StrCat(" ('", std::string(1, static_cast<char>(op)), "')")
                 : std::string(),
             " is not one a state_dict pickle uses; refusing");
    }
  }
}

// Flattens {name: tensor | dict | scalar} into entries named "outer.inner".
struct Flattener {
  const std::string& where;
  std::vector<std::pair<std::string, size_t>> tensors;  // name -> tensor record
  std::map<std::string, std::string> metadata;
  size_t visited = 0;  // a dict may hold itself several times: bound the whole walk

  void Walk(const Object* dict, const std::string& prefix, int depth) {
    if (depth > kMaxTorchNesting) {
      throw Error(absl::StrCat(where, ": dicts nested deeper than ", kMaxTorchNesting,
                               " levels at ", QuotedName(prefix)));
    }
    for (size_t i = 0; i + 1 < dict->items.size(); i += 2) {
      if (++visited > kMaxTorchPickleObjects) {
        throw Error(absl::StrCat(where, ": more than ", kMaxTorchPickleObjects,
                                 " dict entries (a dict that holds itself?)"));
      }
      const Object* k = dict->items[i];
      const Object* v = dict->items[i + 1];
      if (k->kind != Object::kString) {
        throw Error(absl::StrCat(where, ": a ", KindName(k->kind), " key under ",
                                 QuotedName(prefix), "; state_dict keys are str"));
      }
      const std::string name = prefix + k->text;
      switch (v->kind) {
        case Object::kTensor:
          tensors.emplace_back(name, static_cast<size_t>(v->value));
          break;
        case Object::kDict:
          Walk(v, name + ".", depth + 1);
          break;
        case Object::kNone:
          metadata[name] = "None";
          break;
        case Object::kBool:
          metadata[name] = v->value ? "True" : "False";
          break;
        case Object::kInt:
          metadata[name] = absl::StrCat(v->value);
          break;
        case Object::kFloat:
          metadata[name] = absl::StrCat(v->real);
          break;
        case Object::kString:
          metadata[name] = v->text;
          break;
        default:
          metadata[name] = absl::StrCat("(", KindName(v->kind), ", not read)");
      }
    }
  }
};

bool RowMajor(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  int64_t expected = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

// Copies a strided view into row-major order.
std::vector<uint8_t> Gather(const uint8_t* base, size_t elem, const std::vector<int64_t>& shape,
                            const std::vector<int64_t>& strides, int64_t numel) {
  std::vector<uint8_t> out(static_cast<size_t>(numel) * elem);
  std::vector<int64_t> index(shape.size(), 0);
  int64_t offset = 0;
  for (int64_t n = 0; n < numel; ++n) {
    std::memcpy(out.data() + n * elem, base + offset * elem, elem);
    for (size_t d = shape.size(); d-- > 0;) {
      if (++index[d] < shape[d]) {
        offset += strides[d];
        break;
      }
      offset -= strides[d] * (shape[d] - 1);
      index[d] = 0;
    }
  }
  return out;
}

// `copy_budget`: bytes that strided views may still copy (the file size in all).
TensorEntry MakeEntry(const std::string& name, const TensorRecord& t, const Storage& s,
                      TorchContents& out, uint64_t& copy_budget, const std::string& where) {
  const std::string label = absl::StrCat(where, ": tensor ", QuotedName(name));
  SDPO_CHECK(t.shape.size() == t.strides.size(), label, ": size ", ShapeString(t.shape),
             " and stride ", ShapeString(t.strides), " differ in length");
  SDPO_CHECK(t.offset >= 0 && t.offset <= s.numel, label, ": storage offset ", t.offset,
             " is outside storage ", QuotedName(s.key), " of ", s.numel, " elements");
  TensorEntry e;
  e.name = name;
  e.dtype = s.dtype;
  e.shape = t.shape;
  int64_t numel = 1, last = t.offset;  // the last element's storage index
  for (size_t d = 0; d < t.shape.size(); ++d) {
    SDPO_CHECK(t.shape[d] >= 0 && t.strides[d] >= 0, label, ": size ", ShapeString(t.shape),
               " and stride ", ShapeString(t.strides), " must be non-negative");
    SDPO_CHECK(!__builtin_mul_overflow(numel, t.shape[d], &numel), label, ": size ",
               ShapeString(t.shape), " has more elements than fit in int64");
  }
  if (numel > 0) {
    for (size_t d = 0; d < t.shape.size(); ++d) {
      int64_t span = 0;
      SDPO_CHECK(!__builtin_mul_overflow(t.shape[d] - 1, t.strides[d], &span) &&
                     !__builtin_add_overflow(last, span, &last),
                 label, ": size ", ShapeString(t.shape), " with stride ", ShapeString(t.strides),
                 " overflows int64");
    }
    SDPO_CHECK(last < s.numel, label, ": size ", ShapeString(t.shape), ", stride ",
               ShapeString(t.strides), " and offset ", t.offset, " reach element ", last,
               " of storage ", QuotedName(s.key), ", which has ", s.numel);
  }
  e.numel = numel;
  const size_t elem = SafetensorsElementSize(s.dtype);
  e.nbytes = static_cast<size_t>(numel) * elem;  // <= storage bytes when row-major (checked below)
  const uint8_t* start = s.data + static_cast<size_t>(t.offset) * elem;
  if (numel == 0 || RowMajor(t.shape, t.strides)) {
    e.data = start;
    e.offset = s.file_offset + static_cast<size_t>(t.offset) * elem;
    return e;
  }
  // A strided view (e.g. a saved transpose): copied, but never larger than its storage, so that
  // stride-0 broadcasts cannot expand a small file into a huge allocation.
  SDPO_CHECK(numel <= s.numel, label, ": a strided view (size ", ShapeString(t.shape), ", stride ",
             ShapeString(t.strides), ") of ", numel, " elements is larger than its storage of ",
             s.numel, "; such broadcast views are refused");
  SDPO_CHECK(static_cast<uint64_t>(e.nbytes) <= copy_budget, label,
             ": strided views need more copies than the file's size; refused");
  copy_budget -= e.nbytes;
  out.owned.push_back(Gather(start, elem, t.shape, t.strides, numel));
  e.data = out.owned.back().data();
  e.offset = s.file_offset;
  return e;
}

struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

TorchContents ParseTorchCheckpoint(const uint8_t* bytes, size_t size, const std::string& name) {
  if (size >= 2 && bytes[0] == 0x80 && bytes[1] <= 5) {
    SDPO_FAIL(name,
              ": a legacy (pre-1.6, non-zip) torch.save file; it is not read. "
              "Re-save it with "
              "torch.save in PyTorch >= 1.6 or convert it to safetensors");
  }
  SDPO_CHECK(LooksLikeZip(bytes, size), name,
             ": not a PyTorch checkpoint: expected a zip archive (torch.save "
             "since PyTorch 1.6)");
  ZipArchive zip(bytes, size, name);

  // The pickle is "<archive>/data.pkl" with no other folder level.
  const ZipEntry* pkl = nullptr;
  for (const ZipEntry& e : zip.entries()) {
    const size_t slash = e.name.find('/');
    if (slash == std::string::npos || e.name.substr(slash + 1) != "data.pkl") continue;
    SDPO_CHECK(pkl == nullptr, name, ": two pickles, ", QuotedName(pkl->name), " and ",
               QuotedName(e.name), "; expected one <archive>/data.pkl");
    pkl = &e;
  }
  SDPO_CHECK(pkl != nullptr, name, ": no <archive>/data.pkl in the zip archive (",
             zip.entries().size(), " entries); not a torch.save file");
  TorchContents out;
  out.archive = pkl->name.substr(0, pkl->name.find('/'));
  const std::string prefix = out.archive + "/";
  if (const ZipEntry* order = zip.find(prefix + "byteorder")) {
    const std::string_view value = zip.Data(*order);
    SDPO_CHECK(value == "little", name, ": byteorder is ", QuotedName(value),
               "; only little-endian checkpoints are read");
  }

  Machine machine(zip.Data(*pkl), zip, prefix, bytes, name);
  const Object* root = machine.Run();
  SDPO_CHECK(root->kind == Object::kDict, name, ": data.pkl holds a ", KindName(root->kind),
             ", not a dict of tensors (a state_dict)");
  Flattener flat{name, {}, {}};
  flat.Walk(root, "", 0);

  std::set<std::string_view> seen;
  uint64_t copy_budget = size;
  for (const auto& [key, index] : flat.tensors) {
    SDPO_CHECK(seen.insert(key).second, name, ": tensor ", QuotedName(key), " appears twice");
    SDPO_CHECK(flat.metadata.count(key) == 0, name, ": key ", QuotedName(key),
               " is both a tensor and a value");
    const TensorRecord& t = machine.tensors()[index];
    out.tensors.push_back(MakeEntry(key, t, machine.storages()[t.storage], out, copy_budget, name));
  }
  std::sort(out.tensors.begin(), out.tensors.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return a.name < b.name; });
  out.metadata = std::move(flat.metadata);
  return out;
}

std::unique_ptr<TorchCheckpoint> TorchCheckpoint::Open(const std::string& path) {
  FileDescriptor fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SDPO_CHECK(fd.fd >= 0, path, ": cannot open torch checkpoint: ", std::strerror(errno));
  struct stat st;
  SDPO_CHECK(::fstat(fd.fd, &st) == 0, path, ": cannot stat: ", std::strerror(errno));
  SDPO_CHECK(S_ISREG(st.st_mode), path, ": not a regular file");
  std::unique_ptr<TorchCheckpoint> file(new TorchCheckpoint());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  SDPO_CHECK(file->size_ > 0, path, ": empty file; not a torch checkpoint");
  void* map = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  SDPO_CHECK(map != MAP_FAILED, path, ": cannot mmap ", file->size_,
             " bytes: ", std::strerror(errno));
  file->map_ = map;  // unmapped by the destructor, also when parsing throws below
  file->contents_ = ParseTorchCheckpoint(static_cast<const uint8_t*>(map), file->size_, path);
  return file;
}

TorchCheckpoint::~TorchCheckpoint() {
  if (map_ != nullptr) ::munmap(map_, size_);
}

std::vector<std::string> TorchCheckpoint::names() const { return EntryNames(contents_.tensors); }

const TensorEntry* TorchCheckpoint::find(std::string_view name) const {
  return FindSortedEntry(contents_.tensors, name);
}

const TensorEntry& TorchCheckpoint::at(std::string_view name) const {
  const TensorEntry* e = find(name);
  SDPO_CHECK(e != nullptr, path_, ": no tensor ", QuotedName(name), " in this checkpoint (it has ",
             contents_.tensors.size(), " tensors)");
  return *e;
}

}  // namespace sdpo
