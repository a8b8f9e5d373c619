// Tensor: a strided view (shape, strides in elements, offset) of a shared Storage.
//
// This class holds data and metadata only. Raw (non-differentiable) kernels are the free
// functions in tensor/ops.h (namespace sdpo::ops); the differentiable API that models use is in
// autograd/ops.h (namespace sdpo). Autograd bookkeeping rides along in an AutogradMeta that
// this layer stores but does not interpret.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/storage.h"

namespace sdpo {

using Shape = std::vector<int64_t>;

std::string ShapeStr(const Shape& shape);  // "[2, 3, 4]"
int64_t NumElements(const Shape& shape);
Shape ContiguousStrides(const Shape& shape);

class Node;  // autograd/node.h
class Tensor;

// Autograd state of a tensor (owned here, interpreted by autograd/).
struct AutogradMeta {
  bool requires_grad = false;
  std::shared_ptr<Tensor> grad;     // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;    // the node that produced this tensor (non-leaf)
  std::weak_ptr<Node> accumulator;  // leaf: the node that accumulates into `grad`
  bool retain_grad = false;         // non-leaf: also store its gradient in `grad`
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements
  DType dtype = kF32;
  std::shared_ptr<AutogradMeta> autograd;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- creation -------------------------------------------------------------------------
  static Tensor Empty(const Shape& shape, DType dtype = kF32, Device device = Device::CPU());
  static Tensor Zeros(const Shape& shape, DType dtype = kF32, Device device = Device::CPU());
  static Tensor Ones(const Shape& shape, DType dtype = kF32, Device device = Device::CPU());
  static Tensor Full(const Shape& shape, double value, DType dtype = kF32,
                     Device device = Device::CPU());
  static Tensor Scalar(double value, DType dtype = kF32, Device device = Device::CPU());
  // [start, end) with step, like numpy.arange.
  static Tensor Arange(double start, double end, double step = 1, DType dtype = kF32,
                       Device device = Device::CPU());
  // Copies host values (converted to `dtype`) into a new tensor.
  static Tensor FromVector(const std::vector<double>& values, const Shape& shape,
                           DType dtype = kF32, Device device = Device::CPU());
  static Tensor FromVector(const std::vector<float>& values, const Shape& shape,
                           DType dtype = kF32, Device device = Device::CPU());
  static Tensor FromVector(const std::vector<int64_t>& values, const Shape& shape,
                           DType dtype = kI64, Device device = Device::CPU());
  // A view of an existing storage (shape/strides in elements).
  static Tensor FromStorage(std::shared_ptr<Storage> storage, const Shape& shape,
                            const Shape& strides, int64_t offset, DType dtype);

  // --- metadata ---------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return NumElements(impl().shape); }
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * ElementSize(dtype()); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  bool SharesStorage(const Tensor& other) const { return storage() == other.storage(); }
  std::string str() const;  // "f32[2, 3] cpu"

  // Pointer to the first element (storage + offset). Typed access checks the dtype.
  void* raw_data() const;
  template <typename T>
  T* data() const;

  // Reads one element as double (any dtype, any device: copies if needed). For tests/metrics.
  double item() const;                            // requires numel() == 1
  double at(std::initializer_list<int64_t> index) const;
  std::vector<double> ToVector() const;  // all elements in row-major order, as double
  std::vector<float> ToFloatVector() const;

  // --- autograd state (interpreted by autograd/) ------------------------------------------
  bool requires_grad() const;
  // Marks a leaf as requiring grad. Returns *this for chaining.
  Tensor& set_requires_grad(bool requires_grad);
  Tensor grad() const;  // undefined when none accumulated
  void set_grad(const Tensor& grad);
  void zero_grad();  // drops the accumulated gradient
  bool is_leaf() const;
  const std::shared_ptr<Node>& grad_fn() const;
  AutogradMeta& autograd_meta() const;  // creates it on first use
  bool has_autograd_meta() const { return impl_ && impl_->autograd != nullptr; }

  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Type for dtype dispatch in kernels.
template <typename T>
DType DTypeOf();
template <> inline DType DTypeOf<float>() { return kF32; }
template <> inline DType DTypeOf<double>() { return kF64; }
template <> inline DType DTypeOf<BF16>() { return kBF16; }
template <> inline DType DTypeOf<F16>() { return kF16; }
template <> inline DType DTypeOf<int32_t>() { return kI32; }
template <> inline DType DTypeOf<int64_t>() { return kI64; }
template <> inline DType DTypeOf<bool>() { return kBool; }

template <typename T>
T* Tensor::data() const {
  SDPO_CHECK(dtype() == DTypeOf<T>(), "data<", DTypeName(DTypeOf<T>()), ">() on a ",
             DTypeName(dtype()), " tensor");
  return static_cast<T*>(raw_data());
}

// Normalises a possibly negative dim against a rank; names `op` in the error.
int64_t WrapDim(int64_t dim, int64_t rank, const char* op);

}  // namespace sdpo
