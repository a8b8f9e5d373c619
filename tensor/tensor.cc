#include "tensor/tensor.h"

#include <cstring>

#include "absl/strings/str_join.h"
#include "tensor/cpu/scalar.h"
#include "tensor/ops.h"

namespace sdpo {

std::string ShapeStr(const Shape& shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Shape ContiguousStrides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

int64_t WrapDim(int64_t dim, int64_t rank, const char* op) {
  int64_t r = std::max<int64_t>(rank, 1);
  SDPO_CHECK(dim >= -r && dim < r, op, ": dim ", dim, " out of range for a tensor of rank ", rank);
  return dim < 0 ? dim + r : dim;
}

TensorImpl& Tensor::impl() const {
  SDPO_CHECK(impl_ != nullptr, "use of an undefined tensor");
  return *impl_;
}

Tensor Tensor::Empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) SDPO_CHECK(d >= 0, "Empty: negative dimension in shape ", ShapeStr(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage =
      std::make_shared<Storage>(static_cast<size_t>(NumElements(shape)) * ElementSize(dtype), device);
  impl->shape = shape;
  impl->strides = ContiguousStrides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::FromStorage(std::shared_ptr<Storage> storage, const Shape& shape,
                           const Shape& strides, int64_t offset, DType dtype) {
  SDPO_CHECK(shape.size() == strides.size(), "FromStorage: shape ", ShapeStr(shape), " and strides ",
             ShapeStr(strides), " differ in rank");
  SDPO_CHECK(storage != nullptr, "FromStorage: null storage for shape ", ShapeStr(shape));
  // The view must lie inside the storage: a bad view would read or write out of bounds.
  const int64_t capacity = static_cast<int64_t>(storage->nbytes() / ElementSize(dtype));
  int64_t lo = offset, hi = offset;  // lowest and highest element touched
  bool empty = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    SDPO_CHECK(shape[i] >= 0, "FromStorage: negative size in shape ", ShapeStr(shape));
    if (shape[i] == 0) empty = true;
    if (shape[i] > 1) (strides[i] < 0 ? lo : hi) += (shape[i] - 1) * strides[i];
  }
  SDPO_CHECK(offset >= 0 && (empty || (lo >= 0 && hi < capacity)),
             "FromStorage: a ", DTypeName(dtype), " view with shape ", ShapeStr(shape),
             ", strides ", ShapeStr(strides), " and offset ", offset,
             " does not fit in a storage of ", capacity, " elements");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::Full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = Empty(shape, dtype, device);
  ops::Fill(t, value);
  return t;
}

Tensor Tensor::Zeros(const Shape& shape, DType dtype, Device device) {
  return Full(shape, 0.0, dtype, device);
}
Tensor Tensor::Ones(const Shape& shape, DType dtype, Device device) {
  return Full(shape, 1.0, dtype, device);
}
Tensor Tensor::Scalar(double value, DType dtype, Device device) {
  return Full({}, value, dtype, device);
}

Tensor Tensor::Arange(double start, double end, double step, DType dtype, Device device) {
  SDPO_CHECK(step != 0, "Arange: step must be non-zero");
  int64_t n = static_cast<int64_t>(std::ceil((end - start) / step));
  n = std::max<int64_t>(n, 0);
  std::vector<double> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = start + static_cast<double>(i) * step;
  return FromVector(values, {n}, dtype, device);
}

namespace {
template <typename V>
Tensor FromHost(const std::vector<V>& values, const Shape& shape, DType dtype, Device device) {
  SDPO_CHECK(static_cast<int64_t>(values.size()) == NumElements(shape), "FromVector: ",
             values.size(), " values for shape ", ShapeStr(shape));
  Tensor t = Tensor::Empty(shape, dtype, Device::CPU());
  cpu::DispatchAll(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* out = static_cast<T*>(t.raw_data());
    for (size_t i = 0; i < values.size(); ++i) out[i] = cpu::ConvertTo<T>(values[i]);
  });
  return device.is_cpu() ? t : ops::To(t, device);
}
}  // namespace

Tensor Tensor::FromVector(const std::vector<double>& values, const Shape& shape, DType dtype,
                          Device device) {
  return FromHost(values, shape, dtype, device);
}
Tensor Tensor::FromVector(const std::vector<float>& values, const Shape& shape, DType dtype,
                          Device device) {
  return FromHost(values, shape, dtype, device);
}
Tensor Tensor::FromVector(const std::vector<int64_t>& values, const Shape& shape, DType dtype,
                          Device device) {
  return FromHost(values, shape, dtype, device);
}

int64_t Tensor::size(int64_t d) const {
  SDPO_CHECK(dim() > 0, "size(", d, ") of a 0-d tensor ", str());
  return shape()[WrapDim(d, dim(), "size")];
}
int64_t Tensor::stride(int64_t d) const {
  SDPO_CHECK(dim() > 0, "stride(", d, ") of a 0-d tensor ", str());
  return strides()[WrapDim(d, dim(), "stride")];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return absl::StrCat(DTypeName(dtype()), ShapeStr(shape()), " ", device().str());
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl().storage->data()) +
         impl().offset * static_cast<int64_t>(ElementSize(impl().dtype));
}

std::vector<double> Tensor::ToVector() const {
  Tensor host = ops::Contiguous(device().is_cpu() ? *this : ops::To(*this, Device::CPU()));
  std::vector<double> out(host.numel());
  const char* p = static_cast<const char*>(host.raw_data());
  size_t es = ElementSize(host.dtype());
  for (int64_t i = 0; i < host.numel(); ++i) out[i] = cpu::LoadAsDouble(p + i * es, host.dtype());
  return out;
}

std::vector<float> Tensor::ToFloatVector() const {
  std::vector<double> d = ToVector();
  return std::vector<float>(d.begin(), d.end());
}

double Tensor::item() const {
  SDPO_CHECK(numel() == 1, "item() on a tensor with ", numel(), " elements ", str());
  return ToVector()[0];
}

double Tensor::at(std::initializer_list<int64_t> index) const {
  SDPO_CHECK(static_cast<int64_t>(index.size()) == dim(), "at(): ", index.size(),
             " indices for ", str());
  int64_t off = offset();
  int64_t i = 0;
  for (int64_t v : index) {
    SDPO_CHECK(v >= 0 && v < shape()[i], "at(): index ", v, " out of range in dim ", i, " of ",
               str());
    off += v * strides()[i];
    ++i;
  }
  Tensor one = FromStorage(storage(), {}, {}, off, dtype());
  return one.item();
}

AutogradMeta& Tensor::autograd_meta() const {
  if (!impl().autograd) impl_->autograd = std::make_shared<AutogradMeta>();
  return *impl_->autograd;
}

bool Tensor::requires_grad() const { return has_autograd_meta() && impl_->autograd->requires_grad; }

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  SDPO_CHECK(!requires_grad || IsFloating(dtype()), "set_requires_grad on a ", DTypeName(dtype()),
             " tensor: only floating-point tensors can require gradients");
  SDPO_CHECK(is_leaf(), "set_requires_grad on a non-leaf tensor (detach it first)");
  autograd_meta().requires_grad = requires_grad;
  return *this;
}

Tensor Tensor::grad() const {
  if (!has_autograd_meta() || !impl_->autograd->grad) return Tensor();
  return *impl_->autograd->grad;
}

void Tensor::set_grad(const Tensor& grad) {
  if (!grad.defined()) {
    if (has_autograd_meta()) impl_->autograd->grad.reset();
    return;
  }
  SDPO_CHECK(grad.shape() == shape(), "set_grad: gradient shape ", ShapeStr(grad.shape()),
             " differs from tensor shape ", ShapeStr(shape()));
  autograd_meta().grad = std::make_shared<Tensor>(grad);
}

void Tensor::zero_grad() { set_grad(Tensor()); }

bool Tensor::is_leaf() const { return !has_autograd_meta() || impl_->autograd->grad_fn == nullptr; }

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> kNone;
  return has_autograd_meta() ? impl_->autograd->grad_fn : kNone;
}

}  // namespace sdpo
