// Helpers shared by the model checkpoint loaders (models/wan21, models/cogvideox): path tests,
// error-message formatting and copying a safetensors entry into a parameter with conversion.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"
#include "tensor/tensor.h"

namespace sdpo::ckpt {

// True for PEFT adapter names (<module>.lora_A.weight / .lora_B.weight).
bool IsLoraName(const std::string& name);
// The directory part of a path ("." when there is none).
std::string DirName(const std::string& path);
bool IsFile(const std::string& path);  // a regular file
// "a; b; c; ... (N more)": the first n items, for error messages.
std::string ListFirst(const std::vector<std::string>& items, size_t n = 8);
std::string ShapeOf(const TensorEntry& e);  // "[2, 3]"
// Copies an entry (any float dtype on disk) into dst (same shape), converting to dst's dtype
// and device; the f32-on-disk-into-f32-CPU case is a plain memcpy.
void CopyEntry(const TensorEntry& e, const Tensor& dst);

// A model parameter expected in a checkpoint: `label` names it in error messages, `entry` is the
// checkpoint's tensor for it (null: missing).
struct ExpectedParameter {
  std::string label;
  const TensorEntry* entry = nullptr;
  Tensor param;
};
struct CopyCounts {
  std::map<std::string, int64_t> dtypes;  // safetensors dtype name -> tensor count
  int64_t tensors = 0;                    // parameters loaded
  int64_t values = 0;                     // their elements
};
// Checks every expected parameter (present, a floating dtype on disk, the parameter's shape)
// and, when strict, that there are no `unexpected` keys: each kind of problem fails with one
// error naming `where` and listing the keys (missing ones also name `model`, its config). Then
// copies every entry into its parameter.
// Also refuses NaN/Inf in any entry (naming the keys) before copying anything.
CopyCounts CheckAndCopy(const std::vector<ExpectedParameter>& expected,
                        const std::vector<std::string>& unexpected, bool strict,
                        const std::string& where, const std::string& model);

// The parameters a config implies checked against a checkpoint's tensors BEFORE the model is
// built, with the same messages as CheckAndCopy: a config that disagrees with the file (or a
// hostile one) fails naming the keys instead of allocating what the config says. With a
// matching config, the model is no larger than the file's tensors. `lookup` gives the entry of a
// parameter name (null: missing) and its label for messages.
struct ExpectedShape {
  std::string label;
  const TensorEntry* entry = nullptr;
  Shape shape;
};
void CheckShapes(const std::vector<ExpectedShape>& expected, const std::string& where,
                 const std::string& model);

// A config size and the range it must lie in: checked when a config is read, so that a value no
// real model has (num_layers = 10^6, dim = 10^9) is refused naming its key instead of being
// allocated. The bounds are far above the released models.
struct SizeLimit {
  const char* key;
  int64_t value;
  int64_t min, max;
};
void CheckSizeLimits(const std::vector<SizeLimit>& sizes, const std::string& source);

// The first NaN or Inf of a tensor (any device, floating dtype) as (flat index, value), or
// index -1 when all values are finite.
std::pair<int64_t, double> FirstNonFinite(const Tensor& t);

}  // namespace sdpo::ckpt
