// Helpers shared by the model checkpoint loaders (models/wan21, models/cogvideox): path tests,
// error-message formatting and copying a safetensors entry into a parameter with conversion.
#pragma once

#include <string>
#include <vector>

#include "models/safetensors.h"
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

}  // namespace sdpo::ckpt
