#include "nn/module.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace sdpo::nn {

namespace {

std::string Join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : absl::StrCat(prefix, ".", name);
}

// "a, b, c" with at most `limit` names, then "... (N more)".
std::string ListNames(const std::vector<std::string>& names, size_t limit = 20) {
  std::vector<std::string> shown(names.begin(), names.begin() + std::min(limit, names.size()));
  std::string s = absl::StrJoin(shown, ", ");
  if (names.size() > limit) absl::StrAppend(&s, ", ... (", names.size() - limit, " more)");
  return s;
}

}  // namespace

// ----------------------------------------------------------------------------- TensorMapSource

std::vector<std::string> TensorMapSource::Keys() const {
  std::vector<std::string> keys;
  for (const auto& [k, v] : map_) keys.push_back(k);
  return keys;
}

Shape TensorMapSource::KeyShape(const std::string& key) const {
  auto it = map_.find(key);
  SDPO_CHECK(it != map_.end(), name_, ": no tensor named '", key, "'");
  return it->second.shape();
}

void TensorMapSource::CopyTo(const std::string& key, const Tensor& dst) const {
  auto it = map_.find(key);
  SDPO_CHECK(it != map_.end(), name_, ": no tensor named '", key, "'");
  ops::CopyInto(dst, it->second);
}

// ----------------------------------------------------------------------------- registration

void Module::CheckNewName(const std::string& name) const {
  SDPO_CHECK(!name.empty() && name.find('.') == std::string::npos, TypeName(), ": invalid name '",
             name, "' (names are non-empty and contain no '.')");
  bool taken = false;
  for (const Entry& e : params_) taken = taken || e.name == name;
  for (const Entry& e : buffers_) taken = taken || e.name == name;
  for (const auto& c : children_) taken = taken || c.first == name;
  SDPO_CHECK(!taken, TypeName(), ": the name '", name, "' is already registered");
}

Tensor Module::RegisterParameter(const std::string& name, Tensor value, bool requires_grad) {
  CheckNewName(name);
  SDPO_CHECK(value.defined(), TypeName(), ": parameter '", name, "' is undefined");
  SDPO_CHECK(IsFloating(value.dtype()), TypeName(), ": parameter '", name,
             "' must be floating-point, got ", value.str());
  SDPO_CHECK(value.is_leaf(), TypeName(), ": parameter '", name,
             "' must be a leaf tensor (detach it first)");
  value = ops::Contiguous(value);
  value.set_requires_grad(requires_grad);
  params_.push_back({name, value, true});
  return value;
}

Tensor Module::RegisterBuffer(const std::string& name, Tensor value, bool persistent) {
  CheckNewName(name);
  SDPO_CHECK(value.defined(), TypeName(), ": buffer '", name, "' is undefined");
  value = ops::Contiguous(Detach(value));
  buffers_.push_back({name, value, persistent});
  return value;
}

void Module::AddChild(const std::string& name, std::unique_ptr<Module> module) {
  CheckNewName(name);
  SDPO_CHECK(module != nullptr, TypeName(), ": child '", name, "' is null");
  module->SetComputeDType(compute_dtype_);
  children_.emplace_back(name, std::move(module));
}

void Module::AddChildAt(const std::string& path, std::unique_ptr<Module> module) {
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  Module* parent = this;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    Module* next = nullptr;
    for (const auto& c : parent->children_) {
      if (c.first == parts[i]) next = c.second.get();
    }
    if (next == nullptr) next = parent->RegisterModule(parts[i], std::make_unique<Module>());
    parent = next;
  }
  parent->AddChild(parts.back(), std::move(module));
}

// ----------------------------------------------------------------------------- traversal

template <typename Fn>
void Module::ForEachEntry(bool buffers, const std::string& prefix, Fn&& fn) const {
  for (const Entry& e : buffers ? buffers_ : params_) fn(Join(prefix, e.name), e);
  for (const auto& [name, child] : children_) child->ForEachEntry(buffers, Join(prefix, name), fn);
}

std::vector<std::pair<std::string, Tensor>> Module::NamedParameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  ForEachEntry(false, "",
               [&](const std::string& n, const Entry& e) { out.emplace_back(n, e.tensor); });
  return out;
}

std::vector<Tensor> Module::Parameters() const {
  std::vector<Tensor> out;
  ForEachEntry(false, "", [&](const std::string&, const Entry& e) { out.push_back(e.tensor); });
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::NamedTrainableParameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  ForEachEntry(false, "", [&](const std::string& n, const Entry& e) {
    if (e.tensor.requires_grad()) out.emplace_back(n, e.tensor);
  });
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::NamedBuffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  ForEachEntry(true, "",
               [&](const std::string& n, const Entry& e) { out.emplace_back(n, e.tensor); });
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::NamedModules() {
  std::vector<std::pair<std::string, Module*>> out;
  std::vector<std::pair<std::string, Module*>> stack = {{"", this}};
  while (!stack.empty()) {
    auto [name, m] = stack.back();
    stack.pop_back();
    out.emplace_back(name, m);
    for (auto it = m->children_.rbegin(); it != m->children_.rend(); ++it) {
      stack.emplace_back(Join(name, it->first), it->second.get());
    }
  }
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::NamedModules() const {
  std::vector<std::pair<std::string, const Module*>> out;
  for (auto& [n, m] : const_cast<Module*>(this)->NamedModules()) out.emplace_back(n, m);
  return out;
}

Module* Module::FindModule(const std::string& path) const {
  Module* m = const_cast<Module*>(this);
  if (path.empty()) return m;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    Module* next = nullptr;
    for (const auto& c : m->children_) {
      if (c.first == part) next = c.second.get();
    }
    if (next == nullptr) return nullptr;
    m = next;
  }
  return m;
}

Tensor Module::FindParameter(const std::string& path) const {
  size_t dot = path.rfind('.');
  const Module* owner = dot == std::string::npos ? this : FindModule(path.substr(0, dot));
  if (owner == nullptr) return Tensor();
  std::string leaf = dot == std::string::npos ? path : path.substr(dot + 1);
  for (const Entry& e : owner->params_) {
    if (e.name == leaf) return e.tensor;
  }
  return Tensor();
}

int64_t Module::NumParameters(bool trainable_only) const {
  int64_t n = 0;
  ForEachEntry(false, "", [&](const std::string&, const Entry& e) {
    if (!trainable_only || e.tensor.requires_grad()) n += e.tensor.numel();
  });
  return n;
}

// ----------------------------------------------------------------------------- state dict

TensorMap Module::StateDict() const {
  TensorMap out;
  ForEachEntry(false, "", [&](const std::string& n, const Entry& e) { out[n] = e.tensor; });
  ForEachEntry(true, "", [&](const std::string& n, const Entry& e) {
    if (e.persistent) out[n] = e.tensor;
  });
  return out;
}

LoadReport Module::LoadStateDict(const TensorMap& state, bool strict) {
  return LoadStateDict(TensorMapSource(state), strict);
}

LoadReport Module::LoadStateDict(const TensorSource& source, bool strict) {
  std::vector<std::pair<std::string, Tensor>> targets;
  ForEachEntry(false, "",
               [&](const std::string& n, const Entry& e) { targets.emplace_back(n, e.tensor); });
  ForEachEntry(true, "", [&](const std::string& n, const Entry& e) {
    if (e.persistent) targets.emplace_back(n, e.tensor);
  });
  std::vector<std::string> keys = source.Keys();
  std::set<std::string> available(keys.begin(), keys.end());
  std::set<std::string> wanted;
  for (const auto& t : targets) wanted.insert(t.first);

  LoadReport report;
  for (const auto& t : targets) {
    if (!available.count(t.first)) report.missing.push_back(t.first);
  }
  for (const std::string& k : keys) {
    if (!wanted.count(k)) report.unexpected.push_back(k);
  }
  if (strict && (!report.missing.empty() || !report.unexpected.empty())) {
    std::string msg = absl::StrCat("LoadStateDict from ", source.Describe(), ": ");
    if (!report.missing.empty()) {
      absl::StrAppend(&msg, report.missing.size(), " missing key(s): ", ListNames(report.missing));
    }
    if (!report.unexpected.empty()) {
      absl::StrAppend(&msg, report.missing.empty() ? "" : "; ", report.unexpected.size(),
                      " unexpected key(s): ", ListNames(report.unexpected));
    }
    SDPO_FAIL(msg);
  }
  // Check every shape before writing anything, so a failed load leaves the module untouched.
  std::vector<std::string> mismatches;
  for (const auto& [name, tensor] : targets) {
    if (!available.count(name)) continue;
    Shape found = source.KeyShape(name);
    if (found != tensor.shape()) {
      mismatches.push_back(absl::StrCat(name, ": module ", ShapeStr(tensor.shape()), " vs ",
                                        ShapeStr(found), " in the source"));
    }
  }
  SDPO_CHECK(mismatches.empty(), "LoadStateDict from ", source.Describe(), ": shape mismatch for ",
             mismatches.size(), " key(s): ", ListNames(mismatches, 10));
  NoGradGuard no_grad;
  for (const auto& [name, tensor] : targets) {
    if (!available.count(name)) continue;
    source.CopyTo(name, tensor);
    report.loaded.push_back(name);
  }
  return report;
}

// ----------------------------------------------------------------------------- precision etc.

void ReplaceTensorData(const Tensor& dst, const Tensor& src) {
  TensorImpl& impl = dst.impl();
  impl.storage = src.storage();
  impl.offset = src.offset();
  impl.shape = src.shape();
  impl.strides = src.strides();
  impl.dtype = src.dtype();
  if (impl.autograd) impl.autograd->grad.reset();
}

void Module::SetComputeDType(DType dtype) {
  SDPO_CHECK(IsFloating(dtype), "SetComputeDType: needs a floating dtype, got ", DTypeName(dtype));
  compute_dtype_ = dtype;
  for (auto& c : children_) c.second->SetComputeDType(dtype);
}

void Module::CastParameters(DType dtype) {
  SDPO_CHECK(IsFloating(dtype), "CastParameters: needs a floating dtype, got ", DTypeName(dtype));
  auto cast_entry = [dtype](const std::string&, const Entry& e) {
    if (IsFloating(e.tensor.dtype()) && e.tensor.dtype() != dtype) {
      ReplaceTensorData(e.tensor, ops::Cast(e.tensor, dtype));
    }
  };
  ForEachEntry(false, "", cast_entry);
  ForEachEntry(true, "", cast_entry);
}

void Module::ToDevice(Device device) {
  auto move_entry = [device](const std::string&, const Entry& e) {
    if (e.tensor.device() != device) ReplaceTensorData(e.tensor, ops::To(e.tensor, device));
  };
  ForEachEntry(false, "", move_entry);
  ForEachEntry(true, "", move_entry);
}

void Module::SetRequiresGrad(bool requires_grad) {
  ForEachEntry(false, "", [requires_grad](const std::string&, const Entry& e) {
    Tensor(e.tensor).set_requires_grad(requires_grad);
  });
}

void Module::ZeroGrad() {
  ForEachEntry(false, "", [](const std::string&, const Entry& e) { Tensor(e.tensor).zero_grad(); });
}

std::string Module::Describe() const {
  std::string out;
  for (const auto& [name, m] : NamedModules()) {
    int64_t own = 0;
    for (const Entry& e : m->params_) own += e.tensor.numel();
    absl::StrAppend(&out, name.empty() ? "(root)" : name, ": ", m->TypeName(), " (", own,
                    " params)\n");
  }
  return out;
}

// ----------------------------------------------------------------------------- ModuleList

Module* ModuleList::operator[](int64_t i) const {
  SDPO_CHECK(i >= 0 && i < size(), "ModuleList: index ", i, " out of range [0, ", size(), ")");
  return items_[i];
}

}  // namespace sdpo::nn
