// Module: a node of a model tree with named parameters, buffers and children.
//
// A parameter's dotted path from the root (`blocks.3.self_attn.q.weight`) is its key in a
// checkpoint: loading is a lookup by name, never a conversion. Every listing (NamedParameters,
// NamedModules, ...) follows registration order: a module's own tensors first, then each child
// subtree in turn (as PyTorch does).
//
// Precision policy: parameters are the f32 master copy (f64 in gradient checks). Each module has
// a compute dtype (f32 on CPU, bf16 on GPU) that its forward casts weights and inputs to; the
// cast is a graph node, so gradients arrive in the master dtype. Norms, softmax and reductions
// accumulate in f32 (or f64) whatever the compute dtype. See docs/modules.md.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"
#include "tensor/tensor.h"

namespace sdpo::nn {

// Name -> tensor, sorted by name (the in-memory form of a checkpoint).
using TensorMap = std::map<std::string, Tensor>;

// Where a load reads named tensors from: a TensorMap or a checkpoint file (nn/checkpoint_io.h).
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual std::vector<std::string> Keys() const = 0;
  virtual Shape KeyShape(const std::string& key) const = 0;
  // Writes the values of `key` into dst (converting to dst's dtype and device). The shapes
  // have been checked to match.
  virtual void CopyTo(const std::string& key, const Tensor& dst) const = 0;
  // Names the source in error messages ("state dict", a file path).
  virtual std::string Describe() const = 0;
};

// A TensorSource over a TensorMap (held by reference: it must outlive the source).
class TensorMapSource final : public TensorSource {
 public:
  explicit TensorMapSource(const TensorMap& map, std::string name = "state dict")
      : map_(map), name_(std::move(name)) {}
  std::vector<std::string> Keys() const override;
  Shape KeyShape(const std::string& key) const override;
  void CopyTo(const std::string& key, const Tensor& dst) const override;
  std::string Describe() const override { return name_; }

 private:
  const TensorMap& map_;
  std::string name_;
};

struct LoadReport {
  std::vector<std::string> loaded;      // keys copied into the module
  std::vector<std::string> missing;     // module keys the source lacks
  std::vector<std::string> unexpected;  // source keys the module lacks
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Short type name for printing ("Linear", "Attention").
  virtual std::string TypeName() const { return "Module"; }

  // --- registration ------------------------------------------------------------------------
  // Names are non-empty, contain no '.', and are unique among a module's parameters, buffers
  // and children. The returned handle shares its data with the registered tensor (keep it as a
  // member and use it in the forward).
  Tensor RegisterParameter(const std::string& name, Tensor value, bool requires_grad = true);
  // A buffer is state that is not trained (e.g. a position table). Persistent buffers are part
  // of the state dict.
  Tensor RegisterBuffer(const std::string& name, Tensor value, bool persistent = true);
  template <typename M>
  M* RegisterModule(const std::string& name, std::unique_ptr<M> module) {
    M* raw = module.get();
    AddChild(name, std::unique_ptr<Module>(std::move(module)));
    return raw;
  }
  // Like RegisterModule, but `path` may be dotted ("to_out.0", "net.0.proj"): missing
  // intermediate containers are created as plain Modules.
  template <typename M>
  M* RegisterModuleAt(const std::string& path, std::unique_ptr<M> module) {
    M* raw = module.get();
    AddChildAt(path, std::unique_ptr<Module>(std::move(module)));
    return raw;
  }

  // --- traversal (registration order; names are dotted paths relative to this module) -------
  std::vector<std::pair<std::string, Tensor>> NamedParameters() const;
  std::vector<Tensor> Parameters() const;
  // Parameters that currently require grad (what an optimizer should update).
  std::vector<std::pair<std::string, Tensor>> NamedTrainableParameters() const;
  std::vector<std::pair<std::string, Tensor>> NamedBuffers() const;
  // This module first (name ""), then every descendant, depth first.
  std::vector<std::pair<std::string, Module*>> NamedModules();
  std::vector<std::pair<std::string, const Module*>> NamedModules() const;
  const std::vector<std::pair<std::string, std::unique_ptr<Module>>>& children() const {
    return children_;
  }
  Module* FindModule(const std::string& path) const;    // nullptr when absent
  Tensor FindParameter(const std::string& path) const;  // undefined when absent
  int64_t NumParameters(bool trainable_only = false) const;

  // --- state dict ---------------------------------------------------------------------------
  // Parameters and persistent buffers by dotted name. The tensors share data with the module
  // (no copy): clone them to keep a snapshot.
  TensorMap StateDict() const;
  // Copies values into the existing parameters (converting dtype and device; the parameters
  // keep their dtype and identity). A shape mismatch is always an error naming the key and
  // both shapes. strict: any missing or unexpected key is an error listing them by name;
  // otherwise they are reported in the result.
  LoadReport LoadStateDict(const TensorMap& state, bool strict = true);
  LoadReport LoadStateDict(const TensorSource& source, bool strict = true);

  // --- precision, device, training flags (recursive) ----------------------------------------
  void SetComputeDType(DType dtype);
  DType compute_dtype() const { return compute_dtype_; }
  // Converts every floating parameter and buffer to `dtype` in place: handles held by layers
  // and optimizers see the new data. Accumulated gradients are dropped.
  void CastParameters(DType dtype);
  // Moves every parameter and buffer to `device` in place (gradients are dropped).
  void ToDevice(Device device);
  // Sets requires_grad on every parameter (false = frozen).
  void SetRequiresGrad(bool requires_grad);
  void ZeroGrad();

  // One line per module: "name: Type (params)". For logs.
  std::string Describe() const;

 protected:
  // x cast (differentiably) to this module's compute dtype.
  Tensor ToCompute(const Tensor& x) const { return cast(x, compute_dtype_); }

 private:
  struct Entry {
    std::string name;
    Tensor tensor;
    bool persistent = true;
  };
  void CheckNewName(const std::string& name) const;
  void AddChild(const std::string& name, std::unique_ptr<Module> module);
  void AddChildAt(const std::string& path, std::unique_ptr<Module> module);
  // Visits (path, entry) of parameters (buffers = false) or buffers (true), recursively.
  template <typename Fn>
  void ForEachEntry(bool buffers, const std::string& prefix, Fn&& fn) const;

  std::vector<Entry> params_;
  std::vector<Entry> buffers_;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
  DType compute_dtype_ = kF32;
};

// A list of modules named "0", "1", ... (`blocks.0.*`).
class ModuleList : public Module {
 public:
  std::string TypeName() const override { return "ModuleList"; }
  template <typename M>
  M* Append(std::unique_ptr<M> module) {
    M* raw = module.get();
    items_.push_back(raw);
    RegisterModule(std::to_string(items_.size() - 1), std::move(module));
    return raw;
  }
  int64_t size() const { return static_cast<int64_t>(items_.size()); }
  Module* operator[](int64_t i) const;
  template <typename M>
  M* at(int64_t i) const {
    M* m = dynamic_cast<M*>((*this)[i]);
    SDPO_CHECK(m != nullptr, "ModuleList: item ", i, " is a ", (*this)[i]->TypeName(),
               ", not the requested type");
    return m;
  }

 private:
  std::vector<Module*> items_;
};

// Replaces the data behind `dst`'s handle with `src`'s (same impl, so every handle sharing it
// sees the change). Keeps autograd flags; drops the accumulated gradient.
void ReplaceTensorData(const Tensor& dst, const Tensor& src);

}  // namespace sdpo::nn
