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

void CheckShapes(const std::vector<ExpectedShape>& expected, const std::string& where,
                 const std::string& model) {
  std::vector<std::string> missing, mismatched, bad_dtype;
  for (const ExpectedShape& x : expected) {
    if (x.entry == nullptr) {
      missing.push_back(absl::StrCat(x.label, ": expected shape ", ShapeStr(x.shape)));
      continue;
    }
    const TensorEntry& e = *x.entry;
    const bool floating = e.dtype == SafetensorsDType::kF32 || e.dtype == SafetensorsDType::kBF16 ||
                          e.dtype == SafetensorsDType::kF16 || e.dtype == SafetensorsDType::kF64;
    if (!floating) {
      bad_dtype.push_back(
          absl::StrCat(x.label, ": expected a floating dtype (F32, BF16, F16 or F64), found ",
                       SafetensorsDTypeName(e.dtype), " ", ShapeOf(e)));
    }
    if (Shape(e.shape.begin(), e.shape.end()) != x.shape) {
      mismatched.push_back(
          absl::StrCat(x.label, ": expected shape ", ShapeStr(x.shape), ", found ", ShapeOf(e)));
    }
  }
  SDPO_CHECK(missing.empty(), where, ": ", missing.size(), " missing key(s) for a model with ",
             model, ": ", ListFirst(missing));
  SDPO_CHECK(mismatched.empty(), where, ": shape mismatch for ", mismatched.size(),
             " key(s): ", ListFirst(mismatched), " (model config ", model, ")");
  SDPO_CHECK(bad_dtype.empty(), where, ": wrong dtype for ", bad_dtype.size(),
             " key(s): ", ListFirst(bad_dtype));
}

CopyCounts CheckAndCopy(const std::vector<ExpectedParameter>& expected,
                        const std::vector<std::string>& unexpected, bool strict,
                        const std::string& where, const std::string& model) {
  std::vector<ExpectedShape> shapes;
  shapes.reserve(expected.size());
  for (const ExpectedParameter& x : expected) shapes.push_back({x.label, x.entry, x.param.shape()});
  CheckShapes(shapes, where, model);
  SDPO_CHECK(!strict || unexpected.empty(), where, ": ", unexpected.size(),
             " unexpected key(s) the model does not have: ", ListFirst(unexpected));
  // A NaN or Inf weight would make every step non-finite: refuse it at load, naming the keys.
  std::vector<std::string> non_finite;
  for (const ExpectedParameter& x : expected) {
    const auto [index, value] = sdpo::FirstNonFinite(*x.entry);
    if (index >= 0) {
      non_finite.push_back(absl::StrCat(x.label, ": ", value, " at flat index ", index));
    }
  }
  SDPO_CHECK(non_finite.empty(), where, ": non-finite values in ", non_finite.size(),
             " tensor(s) (a corrupt file, or weights saved after training diverged): ",
             ListFirst(non_finite));
  CopyCounts counts;
  for (const ExpectedParameter& x : expected) {
    CopyEntry(*x.entry, x.param);
    counts.dtypes[SafetensorsDTypeName(x.entry->dtype)]++;
    counts.tensors++;
    counts.values += x.param.numel();
  }
  return counts;
}

void CheckSizeLimits(const std::vector<SizeLimit>& sizes, const std::string& source) {
  for (const SizeLimit& s : sizes) {
    SDPO_CHECK(s.value >= s.min && s.value <= s.max, source, ": config key \"", s.key, "\" is ",
               s.value, ", outside the supported range [", s.min, ", ", s.max, "]");
  }
}

std::pair<int64_t, double> FirstNonFinite(const Tensor& t) {
  if (!IsFloating(t.dtype())) return {-1, 0.0};
  const Tensor c = ops::Contiguous(ops::To(t, Device::CPU()));
  TensorEntry view;
  view.dtype = ToSafetensorsDType(c.dtype());
  view.shape = c.shape();
  view.numel = c.numel();
  view.data = static_cast<const uint8_t*>(c.raw_data());
  view.nbytes = c.nbytes();
  return sdpo::FirstNonFinite(view);
}

}  // namespace sdpo::ckpt
