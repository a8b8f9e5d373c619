#include "models/checkpoint_util.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tensor/ops.h"

namespace sdpo::ckpt {

bool IsLoraName(const std::string& name) {
  return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos;
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string ListFirst(const std::vector<std::string>& items, size_t n) {
  std::vector<std::string> head(items.begin(), items.begin() + std::min(n, items.size()));
  std::string s = absl::StrJoin(head, "; ");
  if (items.size() > n) absl::StrAppend(&s, "; ... (", items.size() - n, " more)");
  return s;
}

std::string ShapeOf(const TensorEntry& e) {
  return ShapeStr(Shape(e.shape.begin(), e.shape.end()));
}

void CopyEntry(const TensorEntry& e, const Tensor& dst) {
  if (dst.device().is_cpu() && dst.is_contiguous() && dst.dtype() == kF32 &&
      e.dtype == SafetensorsDType::kF32) {
    std::memcpy(dst.raw_data(), e.data, e.nbytes);
    return;
  }
  if (dst.dtype() == kF64) {
    ops::CopyInto(dst, Tensor::FromVector(ReadAsF64(e), dst.shape(), kF64));
    return;
  }
  std::vector<float> v = ReadAsF32(e);
  if (dst.device().is_cpu() && dst.is_contiguous() && dst.dtype() == kF32) {
    std::memcpy(dst.raw_data(), v.data(), v.size() * sizeof(float));
    return;
  }
  ops::CopyInto(dst, Tensor::FromVector(v, dst.shape(), kF32));
}

}  // namespace sdpo::ckpt
