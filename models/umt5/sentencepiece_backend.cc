// No Abseil header may be included here (see sentencepiece_backend.h).
//
// Debian's libsentencepiece.so carries and exports its own copy of parts of Abseil (flags,
// strings). Linked into a binary that also links Debian's Abseil and parses Abseil flags
// (//trainers:sample), the two copies interpose each other's symbols and the flag registry
// deadlocks at start-up. So the library is not linked: it is opened here with RTLD_LOCAL |
// RTLD_DEEPBIND (its references stay inside it, ours never reach it) and used through its
// vtable; the two non-virtual functions needed (util::Status's destructor and ToString) are
// looked up by name. Nothing of the library is linked into the binary.
#include "models/umt5/sentencepiece_backend.h"

#include <dlfcn.h>
#include <sentencepiece_processor.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

namespace {

constexpr char kLibrary[] = "libsentencepiece.so.0";

void* Library(std::string* error) {
  static void* handle = nullptr;
  static std::string load_error;
  static std::once_flag once;
  std::call_once(once, [] {
    handle = ::dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle == nullptr) {
      const char* e = ::dlerror();
      load_error = std::string("cannot open ") + kLibrary +
                   " (Debian: libsentencepiece0): " + (e != nullptr ? e : "unknown error");
    }
  });
  if (handle == nullptr && error != nullptr) *error = load_error;
  return handle;
}

// A function of the library by its (mangled) name; nullptr when absent.
void* Symbol(const char* name) {
  void* lib = Library(nullptr);
  return lib == nullptr ? nullptr : ::dlsym(lib, name);
}

template <typename Fn>
Fn Required(const char* name) {
  void* p = Symbol(name);
  if (p == nullptr) std::abort();  // only reached after a successful Load, which checked them
  return reinterpret_cast<Fn>(p);
}

constexpr char kProcessorCtor[] = "_ZN13sentencepiece22SentencePieceProcessorC1Ev";
constexpr char kStatusDtor[] = "_ZN13sentencepiece4util6StatusD1Ev";
constexpr char kStatusToString[] = "_ZNK13sentencepiece4util6Status8ToStringB5cxx11Ev";

using sentencepiece::SentencePieceProcessor;

// The library's util::Status as this file holds it: its one member is a std::unique_ptr<Rep>
// (null = OK). It has a non-trivial destructor, so like util::Status it is returned through a
// hidden return slot; destruction and ToString are the library's.
struct RawStatus {
  void* rep = nullptr;
  RawStatus() = default;
  RawStatus(const RawStatus&) = delete;
  RawStatus& operator=(const RawStatus&) = delete;
  ~RawStatus() {
    if (rep != nullptr) Required<void (*)(RawStatus*)>(kStatusDtor)(this);
  }
  bool ok() const { return rep == nullptr; }
  std::string ToString() const {
    return Required<std::string (*)(const RawStatus*)>(kStatusToString)(this);
  }
};
static_assert(sizeof(RawStatus) == sizeof(sentencepiece::util::Status), "util::Status layout");

// The function in the vtable slot of a virtual member function (Itanium C++ ABI: a pointer to a
// virtual member holds 1 + the slot's byte offset in the vtable).
template <typename Pmf>
void* VirtualFunction(const SentencePieceProcessor* object, Pmf pmf) {
  struct Representation {
    uintptr_t ptr;
    ptrdiff_t adj;
  };
  static_assert(sizeof(Pmf) == sizeof(Representation), "Itanium member pointers");
  Representation r;
  std::memcpy(&r, &pmf, sizeof(r));
  if ((r.ptr & 1) == 0 || r.adj != 0) std::abort();  // not a virtual member of the primary base
  const char* vtable = *reinterpret_cast<const char* const*>(object);
  return *reinterpret_cast<void* const*>(vtable + r.ptr - 1);
}

using LoadFn = RawStatus (*)(SentencePieceProcessor*, std::string_view);
using EncodeFn = RawStatus (*)(const SentencePieceProcessor*, std::string_view, std::vector<int>*);

RawStatus CallLoad(SentencePieceProcessor* sp, std::string_view path) {
  using Pmf = sentencepiece::util::Status (SentencePieceProcessor::*)(absl::string_view);
  return reinterpret_cast<LoadFn>(
      VirtualFunction(sp, static_cast<Pmf>(&SentencePieceProcessor::Load)))(sp, path);
}

RawStatus CallEncode(const SentencePieceProcessor* sp, std::string_view text,
                     std::vector<int>* ids) {
  using Pmf = sentencepiece::util::Status (SentencePieceProcessor::*)(absl::string_view,
                                                                      std::vector<int>*) const;
  return reinterpret_cast<EncodeFn>(
      VirtualFunction(sp, static_cast<Pmf>(&SentencePieceProcessor::Encode)))(sp, text, ids);
}

}  // namespace

namespace sdpo::umt5 {

struct SentencePieceBackend::Impl {
  sentencepiece::SentencePieceProcessor* sp = nullptr;  // constructed in raw memory
  ~Impl() {
    if (sp != nullptr) {
      sp->~SentencePieceProcessor();  // virtual: the library's destructor
      ::operator delete(sp);
    }
  }
};

SentencePieceBackend::SentencePieceBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SentencePieceBackend::~SentencePieceBackend() = default;

std::unique_ptr<SentencePieceBackend> SentencePieceBackend::Load(const std::string& path,
                                                                 std::string* error) {
  if (Library(error) == nullptr) return nullptr;
  for (const char* name : {kProcessorCtor, kStatusDtor, kStatusToString}) {
    if (Symbol(name) == nullptr) {
      *error = std::string(kLibrary) + " lacks " + name + " (an incompatible version)";
      return nullptr;
    }
  }
  auto impl = std::make_unique<Impl>();
  void* memory = ::operator new(sizeof(sentencepiece::SentencePieceProcessor));
  Required<void (*)(void*)>(kProcessorCtor)(memory);
  impl->sp = static_cast<sentencepiece::SentencePieceProcessor*>(memory);
  const RawStatus status = CallLoad(impl->sp, path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return std::unique_ptr<SentencePieceBackend>(new SentencePieceBackend(std::move(impl)));
}

bool SentencePieceBackend::Encode(std::string_view text, std::vector<int>* ids,
                                  std::string* error) const {
  const RawStatus status = CallEncode(impl_->sp, text, ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

int SentencePieceBackend::PieceSize() const { return impl_->sp->GetPieceSize(); }
int SentencePieceBackend::EosId() const { return impl_->sp->eos_id(); }
int SentencePieceBackend::PadId() const { return impl_->sp->pad_id(); }

}  // namespace sdpo::umt5
