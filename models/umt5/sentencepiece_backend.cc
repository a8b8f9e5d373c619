// No Abseil header may be included here (see sentencepiece_backend.h).
#include "models/umt5/sentencepiece_backend.h"

#include <sentencepiece_processor.h>

namespace sdpo::umt5 {

struct SentencePieceBackend::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

SentencePieceBackend::SentencePieceBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SentencePieceBackend::~SentencePieceBackend() = default;

std::unique_ptr<SentencePieceBackend> SentencePieceBackend::Load(const std::string &path,
                                                                 std::string *error) {
  auto impl = std::make_unique<Impl>();
  const sentencepiece::util::Status status = impl->sp.Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return std::unique_ptr<SentencePieceBackend>(new SentencePieceBackend(std::move(impl)));
}

bool SentencePieceBackend::Encode(std::string_view text, std::vector<int> *ids,
                                  std::string *error) const {
  const sentencepiece::util::Status status = impl_->sp.Encode(text, ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

int SentencePieceBackend::PieceSize() const { return impl_->sp.GetPieceSize(); }
int SentencePieceBackend::EosId() const { return impl_->sp.eos_id(); }
int SentencePieceBackend::PadId() const { return impl_->sp.pad_id(); }

}  // namespace sdpo::umt5
