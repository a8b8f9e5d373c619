#include "tensor/error.h"

namespace sdpo::detail {

void ThrowError(const char* file, int line, const char* condition, const std::string& message) {
  std::string where = absl::StrCat(" [", file, ":", line, "]");
  if (condition != nullptr) {
    throw Error(absl::StrCat(message, " (check failed: ", condition, ")", where));
  }
  throw Error(absl::StrCat(message, where));
}

}  // namespace sdpo::detail
