// Errors: sdpo reports every failure as an sdpo::Error exception carrying the file, line and a
// message that names the operation, the shapes / keys involved, what was expected and found.
#pragma once

#include <stdexcept>
#include <string>

#include "absl/strings/str_cat.h"

namespace sdpo {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
[[noreturn]] void ThrowError(const char* file, int line, const char* condition,
                             const std::string& message);
}  // namespace detail

}  // namespace sdpo

// SDPO_CHECK(cond, parts...): throws sdpo::Error with absl::StrCat(parts...) when !cond.
#define SDPO_CHECK(cond, ...)                                                         \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      ::sdpo::detail::ThrowError(__FILE__, __LINE__, #cond, ::absl::StrCat(__VA_ARGS__)); \
    }                                                                                 \
  } while (0)

#define SDPO_FAIL(...) ::sdpo::detail::ThrowError(__FILE__, __LINE__, nullptr, ::absl::StrCat(__VA_ARGS__))
