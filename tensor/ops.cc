#include "tensor/ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_join.h"
#include "tensor/kernels.h"

namespace sdpo {

namespace {
Kernels* cuda_kernels = nullptr;
}  // namespace

void RegisterCudaKernels(Kernels* kernels) { cuda_kernels = kernels; }

Kernels& KernelsFor(Device device) {
  if (device.is_cpu()) return CpuKernels();
  SDPO_CHECK(cuda_kernels != nullptr,
             "no CUDA kernels: this build has no CUDA backend or no GPU is present");
  return *cuda_kernels;
}

namespace ops {
namespace {

void CheckSameDevice(const Tensor& a, const Tensor& b, const char* op) {
  SDPO_CHECK(a.device() == b.device(), op, ": operands on different devices: ", a.str(), " and ",
             b.str());
}

// Wraps a possibly negative `dim` of an op that indexes x's dims (x must have at least one);
// errors name the op and x.
int64_t DimOf(const Tensor& x, int64_t dim, const char* op) {
  SDPO_CHECK(x.dim() > 0, op, ": dim ", dim, " of a 0-d tensor ", x.str());
  SDPO_CHECK(dim >= -x.dim() && dim < x.dim(), op, ": dim ", dim, " out of range for ", x.str());
  return dim < 0 ? dim + x.dim() : dim;
}

// Like WrapDim (0-d tensors accept dim 0 / -1), for reductions; errors name the op and x.
int64_t ReduceDimOf(const Tensor& x, int64_t dim, const char* op) {
  int64_t r = std::max<int64_t>(x.dim(), 1);
  SDPO_CHECK(dim >= -r && dim < r, op, ": dim ", dim, " out of range for ", x.str());
  return dim < 0 ? dim + r : dim;
}

std::vector<int64_t> NormalizeDims(std::vector<int64_t> dims, const Tensor& x, const char* op) {
  const int64_t rank = x.dim();
  if (dims.empty()) {
    dims.resize(rank);
    std::iota(dims.begin(), dims.end(), 0);
    return dims;
  }
  for (auto& d : dims) d = ReduceDimOf(x, d, op);
  std::sort(dims.begin(), dims.end());
  SDPO_CHECK(std::adjacent_find(dims.begin(), dims.end()) == dims.end(), op,
             ": repeated dim in [", absl::StrJoin(dims, ", "), "] for ", x.str());
  if (rank == 0) dims.clear();  // dim 0 / -1 of a 0-d tensor: nothing to reduce
  return dims;
}

}  // namespace

// ----------------------------------------------------------------------------- views

Tensor View(const Tensor& x, Shape shape) {
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      SDPO_CHECK(infer < 0, "view: more than one -1 in ", ShapeStr(shape));
      infer = static_cast<int64_t>(i);
    } else {
      SDPO_CHECK(shape[i] >= 0, "view: negative size in ", ShapeStr(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    SDPO_CHECK(known > 0 && x.numel() % known == 0, "view: cannot infer -1 in ", ShapeStr(shape),
               " for ", x.numel(), " elements");
    shape[infer] = x.numel() / known;
  }
  SDPO_CHECK(NumElements(shape) == x.numel(), "view: shape ", ShapeStr(shape), " has ",
             NumElements(shape), " elements but the input ", x.str(), " has ", x.numel());
  if (x.numel() == 0) {  // no element is addressed: any strides will do
    return Tensor::FromStorage(x.storage(), shape, ContiguousStrides(shape), x.offset(),
                               x.dtype());
  }
  // Compute strides for the new shape by grouping old dims into contiguous chunks.
  Shape new_strides(shape.size());
  const Shape& old_shape = x.shape();
  const Shape& old_strides = x.strides();
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.empty() ? 1 : old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t tensor_d = static_cast<int64_t>(old_shape.size()) - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= old_shape[tensor_d];
    if (tensor_d == 0 ||
        (old_shape[tensor_d - 1] != 1 &&
         old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        new_strides[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      SDPO_CHECK(view_numel == tensor_numel, "view: shape ", ShapeStr(shape),
                 " is incompatible with the strides of ", x.str(), " (use reshape)");
      if (tensor_d > 0) {
        chunk_base_stride = old_strides[tensor_d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  while (view_d >= 0) {  // trailing size-1 dims (or a 0-d input)
    new_strides[view_d] = 1;
    --view_d;
  }
  return Tensor::FromStorage(x.storage(), shape, new_strides, x.offset(), x.dtype());
}

Tensor Reshape(const Tensor& x, Shape shape) {
  try {
    return View(x, shape);
  } catch (const Error&) {
    // Strides that do not allow a view: retry on a contiguous copy.
  }
  try {
    return View(Clone(x), shape);
  } catch (const Error& e) {
    throw Error(absl::StrCat("reshape: ", e.what()));
  }
}

Tensor Flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  if (x.dim() == 0) return Reshape(x, {1});
  start_dim = DimOf(x, start_dim, "flatten");
  end_dim = DimOf(x, end_dim, "flatten");
  SDPO_CHECK(start_dim <= end_dim, "flatten: start_dim ", start_dim, " > end_dim ", end_dim,
             " for ", x.str());
  Shape shape(x.shape().begin(), x.shape().begin() + start_dim);
  int64_t n = 1;
  for (int64_t d = start_dim; d <= end_dim; ++d) n *= x.size(d);
  shape.push_back(n);
  shape.insert(shape.end(), x.shape().begin() + end_dim + 1, x.shape().end());
  return Reshape(x, shape);
}

Tensor Permute(const Tensor& x, const std::vector<int64_t>& dims) {
  SDPO_CHECK(static_cast<int64_t>(dims.size()) == x.dim(), "permute: ", dims.size(),
             " dims given for ", x.str());
  Shape shape(dims.size()), strides(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = DimOf(x, dims[i], "permute");
    SDPO_CHECK(!seen[d], "permute: repeated dim ", d, " in [", absl::StrJoin(dims, ", "),
               "] for ", x.str());
    seen[d] = true;
    shape[i] = x.size(d);
    strides[i] = x.stride(d);
  }
  return Tensor::FromStorage(x.storage(), shape, strides, x.offset(), x.dtype());
}

Tensor Transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  dim0 = DimOf(x, dim0, "transpose");
  dim1 = DimOf(x, dim1, "transpose");
  std::vector<int64_t> dims(x.dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[dim0], dims[dim1]);
  return Permute(x, dims);
}

Tensor Slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  dim = DimOf(x, dim, "slice");
  SDPO_CHECK(step > 0, "slice: step must be positive, got ", step, " for ", x.str());
  int64_t n = x.size(dim);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shape = x.shape(), strides = x.strides();
  shape[dim] = (end - start + step - 1) / step;
  strides[dim] *= step;
  return Tensor::FromStorage(x.storage(), shape, strides, x.offset() + start * x.stride(dim),
                             x.dtype());
}

Tensor Narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  dim = DimOf(x, dim, "narrow");
  SDPO_CHECK(start >= 0 && length >= 0 && start + length <= x.size(dim), "narrow: [", start, ", ",
             start + length, ") out of range for dim ", dim, " of ", x.str());
  return Slice(x, dim, start, start + length);
}

Tensor Select(const Tensor& x, int64_t dim, int64_t index) {
  dim = DimOf(x, dim, "select");
  int64_t n = x.size(dim);
  SDPO_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", dim,
             " of ", x.str());
  if (index < 0) index += n;
  Shape shape = x.shape(), strides = x.strides();
  int64_t offset = x.offset() + index * strides[dim];
  shape.erase(shape.begin() + dim);
  strides.erase(strides.begin() + dim);
  return Tensor::FromStorage(x.storage(), shape, strides, offset, x.dtype());
}

Tensor Expand(const Tensor& x, const Shape& shape) {
  SDPO_CHECK(static_cast<int64_t>(shape.size()) >= x.dim(), "expand: cannot expand ", x.str(),
             " to fewer dims ", ShapeStr(shape));
  for (int64_t s : shape) {
    SDPO_CHECK(s >= 0, "expand: negative size in ", ShapeStr(shape), " for ", x.str());
  }
  Shape strides(shape.size(), 0);
  int64_t lead = static_cast<int64_t>(shape.size()) - x.dim();
  for (int64_t i = 0; i < x.dim(); ++i) {
    int64_t want = shape[lead + i];
    if (x.size(i) == want) {
      strides[lead + i] = x.stride(i);
    } else {
      SDPO_CHECK(x.size(i) == 1, "expand: cannot expand ", x.str(), " to ", ShapeStr(shape),
                 " (dim ", i, " has size ", x.size(i), ")");
    }
  }
  return Tensor::FromStorage(x.storage(), shape, strides, x.offset(), x.dtype());
}

Tensor Unsqueeze(const Tensor& x, int64_t dim) {
  SDPO_CHECK(dim >= -(x.dim() + 1) && dim <= x.dim(), "unsqueeze: dim ", dim,
             " out of range for ", x.str());
  if (dim < 0) dim += x.dim() + 1;
  Shape shape = x.shape(), strides = x.strides();
  int64_t stride = dim < x.dim() ? x.stride(dim) * x.size(dim) : 1;
  shape.insert(shape.begin() + dim, 1);
  strides.insert(strides.begin() + dim, stride);
  return Tensor::FromStorage(x.storage(), shape, strides, x.offset(), x.dtype());
}

Tensor Squeeze(const Tensor& x, int64_t dim) {
  dim = DimOf(x, dim, "squeeze");
  SDPO_CHECK(x.size(dim) == 1, "squeeze: dim ", dim, " of ", x.str(), " is not of size 1");
  return Select(x, dim, 0);
}

std::vector<Tensor> Split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  dim = DimOf(x, dim, "split");
  for (int64_t s : sizes) {
    SDPO_CHECK(s >= 0, "split: negative size in [", absl::StrJoin(sizes, ", "), "] for ",
               x.str());
  }
  int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  SDPO_CHECK(total == x.size(dim), "split: sizes [", absl::StrJoin(sizes, ", "), "] sum to ",
             total, " but dim ", dim, " of ", x.str(), " has ", x.size(dim));
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t s : sizes) {
    parts.push_back(Narrow(x, dim, start, s));
    start += s;
  }
  return parts;
}

std::vector<Tensor> Chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  dim = DimOf(x, dim, "chunk");
  SDPO_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks, " for ", x.str());
  int64_t n = x.size(dim), per = (n + chunks - 1) / chunks;
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < n; start += per) sizes.push_back(std::min(per, n - start));
  return Split(x, sizes, dim);
}

// ----------------------------------------------------------------------------- copies

void Fill(const Tensor& x, double value) { KernelsFor(x.device()).Fill(x, value); }

const Tensor& CopyInto(const Tensor& dst, const Tensor& src) {
  SDPO_CHECK(src.shape() == dst.shape() ||
                 (src.dim() <= dst.dim() &&
                  BroadcastShapes(src.shape(), dst.shape(), "copy_into") == dst.shape()),
             "copy_into: cannot broadcast ", src.str(), " to ", dst.str());
  Tensor s = src.shape() == dst.shape() ? src : Expand(src, dst.shape());
  if (s.device() == dst.device()) {
    KernelsFor(dst.device()).Copy(dst, s);
    return dst;
  }
  // Cross-device: make a contiguous staging copy of src in dst's dtype, move bytes, then copy.
  Tensor staged = Contiguous(Cast(s, dst.dtype()));
  Tensor moved = Tensor::Empty(dst.shape(), dst.dtype(), dst.device());
  CopyBytes(moved.raw_data(), moved.device(), staged.raw_data(), staged.device(), staged.nbytes());
  if (dst.is_contiguous()) {
    CopyBytes(dst.raw_data(), dst.device(), moved.raw_data(), moved.device(), moved.nbytes());
  } else {
    KernelsFor(dst.device()).Copy(dst, moved);
  }
  return dst;
}

Tensor Contiguous(const Tensor& x) { return x.is_contiguous() ? x : Clone(x); }

Tensor Clone(const Tensor& x) {
  Tensor out = Tensor::Empty(x.shape(), x.dtype(), x.device());
  KernelsFor(x.device()).Copy(out, x);
  return out;
}

Tensor Cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = Tensor::Empty(x.shape(), dtype, x.device());
  KernelsFor(x.device()).Copy(out, x);
  return out;
}

Tensor To(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Tensor src = Contiguous(x);
  Tensor out = Tensor::Empty(x.shape(), x.dtype(), device);
  CopyBytes(out.raw_data(), device, src.raw_data(), src.device(), src.nbytes());
  return out;
}

// ----------------------------------------------------------------------------- elementwise

#define SDPO_OP_NAME_CASE(Enum, Name, str) \
  case Enum::k##Name:                      \
    return str;

const char* BinaryOpName(BinaryOp op) {
#define X(Name, str) SDPO_OP_NAME_CASE(BinaryOp, Name, str)
  switch (op) { SDPO_BINARY_OPS(X) }
#undef X
  return "binary";
}

const char* CompareOpName(CompareOp op) {
#define X(Name, str) SDPO_OP_NAME_CASE(CompareOp, Name, str)
  switch (op) { SDPO_COMPARE_OPS(X) }
#undef X
  return "compare";
}

const char* UnaryOpName(UnaryOp op) {
#define X(Name, str) SDPO_OP_NAME_CASE(UnaryOp, Name, str)
  switch (op) { SDPO_UNARY_OPS(X) }
#undef X
  return "unary";
}

#undef SDPO_OP_NAME_CASE

Shape BroadcastShapes(const Shape& a, const Shape& b, const char* op) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    SDPO_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", ShapeStr(a), " and ", ShapeStr(b),
               " are not broadcastable (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {
// Brings a 0-d operand to the other operand's dtype; otherwise requires equal dtypes.
void MatchDTypes(Tensor& a, Tensor& b, const char* op) {
  if (a.dtype() == b.dtype()) return;
  if (b.dim() == 0) {
    b = Cast(b, a.dtype());
  } else if (a.dim() == 0) {
    a = Cast(a, b.dtype());
  } else {
    SDPO_FAIL(op, ": dtype mismatch: ", a.str(), " vs ", b.str(), " (cast one explicitly)");
  }
}
}  // namespace

Tensor ScalarLike(double value, const Tensor& like) {
  return Tensor::Scalar(value, like.dtype(), like.device());
}

Tensor Binary(BinaryOp op, const Tensor& a_in, const Tensor& b_in) {
  const char* name = BinaryOpName(op);
  CheckSameDevice(a_in, b_in, name);
  Tensor a = a_in, b = b_in;
  MatchDTypes(a, b, name);
  SDPO_CHECK(a.dtype() != kBool, name, ": not defined for bool tensors: ", a.str(), " and ",
             b.str());
  SDPO_CHECK(op != BinaryOp::kDiv || IsFloating(a.dtype()), name,
             ": integer division is not supported: ", a.str(), " / ", b.str(),
             " (cast to a float dtype)");
  Shape shape = BroadcastShapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::Empty(shape, a.dtype(), a.device());
  KernelsFor(out.device()).Binary(op, out, Expand(a, shape), Expand(b, shape));
  return out;
}

Tensor Compare(CompareOp op, const Tensor& a_in, const Tensor& b_in) {
  CheckSameDevice(a_in, b_in, "compare");
  Tensor a = a_in, b = b_in;
  MatchDTypes(a, b, "compare");
  Shape shape = BroadcastShapes(a.shape(), b.shape(), "compare");
  Tensor out = Tensor::Empty(shape, kBool, a.device());
  KernelsFor(out.device()).Compare(op, out, Expand(a, shape), Expand(b, shape));
  return out;
}

Tensor Where(const Tensor& condition, const Tensor& a_in, const Tensor& b_in) {
  CheckSameDevice(a_in, b_in, "where");
  CheckSameDevice(condition, a_in, "where");
  SDPO_CHECK(condition.dtype() == kBool, "where: condition must be bool, got ", condition.str());
  Tensor a = a_in, b = b_in;
  MatchDTypes(a, b, "where");
  Shape shape = BroadcastShapes(BroadcastShapes(a.shape(), b.shape(), "where"), condition.shape(),
                                "where");
  Tensor out = Tensor::Empty(shape, a.dtype(), a.device());
  KernelsFor(out.device())
      .Where(out, Expand(condition, shape), Expand(a, shape), Expand(b, shape));
  return out;
}

Tensor Unary(UnaryOp op, const Tensor& x) {
  SDPO_CHECK(IsFloating(x.dtype()) || op == UnaryOp::kNeg || op == UnaryOp::kAbs ||
                 op == UnaryOp::kSquare || op == UnaryOp::kSign,
             UnaryOpName(op), ": needs a floating-point tensor, got ", x.str());
  SDPO_CHECK(x.dtype() != kBool, UnaryOpName(op), ": not defined for bool tensors, got ", x.str());
  Tensor out = Tensor::Empty(x.shape(), x.dtype(), x.device());
  KernelsFor(x.device()).Unary(op, out, x);
  return out;
}

Tensor Clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  double lo = min.value_or(-INFINITY), hi = max.value_or(INFINITY);
  SDPO_CHECK(lo <= hi, "clamp: min ", lo, " > max ", hi, " for ", x.str());
  SDPO_CHECK(x.dtype() != kBool, "clamp: not defined for bool tensors, got ", x.str());
  Tensor out = Tensor::Empty(x.shape(), x.dtype(), x.device());
  KernelsFor(x.device()).Clamp(out, x, lo, hi);
  return out;
}

const Tensor& AddInPlace(const Tensor& dst, const Tensor& src) {
  CheckSameDevice(dst, src, "add (in place)");
  SDPO_CHECK(dst.is_contiguous() && dst.dtype() != kBool,
             "add (in place): dst must be a contiguous numeric tensor, got ", dst.str());
  SDPO_CHECK(BroadcastShapes(dst.shape(), src.shape(), "add (in place)") == dst.shape(),
             "add (in place): ", src.str(), " does not broadcast to dst ", dst.str());
  // An elementwise kernel reads element i of its inputs only to write element i of out.
  KernelsFor(dst.device())
      .Binary(BinaryOp::kAdd, dst, dst, Expand(Cast(src, dst.dtype()), dst.shape()));
  return dst;
}

const Tensor& ClampInPlace(const Tensor& x, double min, double max) {
  SDPO_CHECK(min <= max, "clamp (in place): min ", min, " > max ", max, " for ", x.str());
  SDPO_CHECK(x.is_contiguous() && x.dtype() != kBool,
             "clamp (in place): x must be a contiguous numeric tensor, got ", x.str());
  KernelsFor(x.device()).Clamp(x, x, min, max);
  return x;
}

// ----------------------------------------------------------------------------- reductions

namespace {
// Moves `dims` (sorted, unique) to the end and returns a contiguous [outer, inner] view and the
// output shape (keepdim or not).
Tensor RowsForReduction(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim,
                        Shape* out_shape) {
  std::vector<int64_t> order;
  Shape kept_shape;
  out_shape->clear();
  int64_t inner = 1;
  for (int64_t d = 0; d < x.dim(); ++d) {
    bool reduced = std::binary_search(dims.begin(), dims.end(), d);
    if (!reduced) {
      order.push_back(d);
      kept_shape.push_back(x.size(d));
      out_shape->push_back(x.size(d));
    } else {
      inner *= x.size(d);
      if (keepdim) out_shape->push_back(1);
    }
  }
  order.insert(order.end(), dims.begin(), dims.end());
  Tensor moved = Contiguous(Permute(x, order));
  return View(moved, {NumElements(kept_shape), inner});
}

Tensor Reduce(ReduceKind kind, const Tensor& x, std::vector<int64_t> dims, bool keepdim,
              int64_t correction, const char* name) {
  dims = NormalizeDims(std::move(dims), x, name);
  SDPO_CHECK(x.dtype() != kBool, name, ": not defined for bool tensors, got ", x.str(),
             " (cast it first)");
  Shape out_shape;
  if ((kind == ReduceKind::kSum || kind == ReduceKind::kMean) && IsFloating(x.dtype()) &&
      !dims.empty() && dims.back() + 1 < x.dim() &&
      dims.back() - dims.front() + 1 == static_cast<int64_t>(dims.size()) && x.is_contiguous()) {
    // Consecutive dims followed by kept ones: [outer, rows, cols] reduced over rows in place.
    int64_t outer = 1, rows = 1, cols = 1;
    for (int64_t d = 0; d < x.dim(); ++d) {
      const bool reduced = d >= dims.front() && d <= dims.back();
      (d < dims.front() ? outer : reduced ? rows : cols) *= x.size(d);
      if (!reduced) out_shape.push_back(x.size(d));
      else if (keepdim) out_shape.push_back(1);
    }
    Tensor out = Tensor::Empty({outer, cols}, x.dtype(), x.device());
    KernelsFor(x.device()).ReduceMiddle(kind, out, View(x, {outer, rows, cols}));
    return View(out, out_shape);
  }
  Tensor rows = RowsForReduction(x, dims, keepdim, &out_shape);
  if (kind == ReduceKind::kMax || kind == ReduceKind::kArgMax) {
    SDPO_CHECK(rows.size(1) > 0, name, ": reduction over an empty dim of ", x.str());
  }
  if (kind != ReduceKind::kArgMax && kind != ReduceKind::kMax) {
    SDPO_CHECK(IsFloating(x.dtype()) || kind == ReduceKind::kSum, name,
               ": needs a floating-point tensor, got ", x.str());
  }
  DType out_dtype = kind == ReduceKind::kArgMax ? kI64 : x.dtype();
  Tensor out = Tensor::Empty({rows.size(0)}, out_dtype, x.device());
  KernelsFor(x.device()).ReduceRows(kind, out, rows, correction);
  return View(out, out_shape);
}
}  // namespace

Tensor Sum(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  return Reduce(ReduceKind::kSum, x, std::move(dims), keepdim, 0, "sum");
}
Tensor Mean(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  return Reduce(ReduceKind::kMean, x, std::move(dims), keepdim, 0, "mean");
}
Tensor Max(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  return Reduce(ReduceKind::kMax, x, std::move(dims), keepdim, 0, "max");
}
Tensor ArgMax(const Tensor& x, int64_t dim, bool keepdim) {
  return Reduce(ReduceKind::kArgMax, x, {dim}, keepdim, 0, "argmax");
}
Tensor Var(const Tensor& x, std::vector<int64_t> dims, int64_t correction, bool keepdim) {
  SDPO_CHECK(correction >= 0, "var: correction must be >= 0, got ", correction, " for ",
             x.str());
  return Reduce(ReduceKind::kVar, x, std::move(dims), keepdim, correction, "var");
}

Tensor SumToShape(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  SDPO_CHECK(lead >= 0, "sum_to_shape: cannot reduce ", x.str(), " to ", ShapeStr(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
    } else if (shape[d - lead] == 1 && x.size(d) != 1) {
      dims.push_back(d);
    } else {
      SDPO_CHECK(shape[d - lead] == x.size(d), "sum_to_shape: cannot reduce ", x.str(), " to ",
                 ShapeStr(shape));
    }
  }
  if (dims.empty()) return View(x, shape);
  return Reshape(Sum(x, dims, /*keepdim=*/true), shape);
}

namespace {
Tensor SoftmaxImpl(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  dim = ReduceDimOf(x, dim, name);
  SDPO_CHECK(IsFloating(x.dtype()), name, ": needs a floating-point tensor, got ", x.str());
  if (x.dim() == 0) return Tensor::Full({}, log ? 0.0 : 1.0, x.dtype(), x.device());
  if (x.numel() == 0) return Tensor::Empty(x.shape(), x.dtype(), x.device());
  Tensor moved = Contiguous(Transpose(x, dim, -1));
  Tensor rows = View(moved, {-1, moved.size(-1)});
  Tensor out = Tensor::Empty(rows.shape(), x.dtype(), x.device());
  KernelsFor(x.device()).SoftmaxRows(out, rows, log);
  return Contiguous(Transpose(View(out, moved.shape()), dim, -1));
}
}  // namespace

Tensor Softmax(const Tensor& x, int64_t dim) { return SoftmaxImpl(x, dim, false); }
Tensor LogSoftmax(const Tensor& x, int64_t dim) { return SoftmaxImpl(x, dim, true); }

// ----------------------------------------------------------------------------- matmul

namespace {
// Every value of `narrow` is exactly a value of `wide` (bf16/f16 in f32; those and f32 in f64).
bool NarrowerFloat(DType narrow, DType wide) {
  if (wide == kF64) return narrow == kF32 || narrow == kBF16 || narrow == kF16;
  return wide == kF32 && (narrow == kBF16 || narrow == kF16);
}

// Returns x as a contiguous [B, R, C] buffer, using a transposed layout (and *trans = true)
// instead of a copy when x's last two dims are a transposed contiguous matrix.
Tensor AsGemmOperand(const Tensor& x, bool* trans) {
  int64_t r = x.size(-2), c = x.size(-1);
  Tensor batch_major = x;
  Shape batch(x.shape().begin(), x.shape().end() - 2);
  int64_t b = NumElements(batch);
  bool batch_ok = true;  // batch dims collapse into one dim with stride r*c
  {
    int64_t expected = r * c;
    for (int64_t d = x.dim() - 3; d >= 0; --d) {
      if (x.size(d) != 1 && x.stride(d) != expected) batch_ok = false;
      expected *= x.size(d);
    }
  }
  if (batch_ok && x.stride(-1) == 1 && (x.stride(-2) == c || r == 1)) {
    *trans = false;
    return Tensor::FromStorage(x.storage(), {b, r, c}, {r * c, c, 1}, x.offset(), x.dtype());
  }
  if (batch_ok && x.stride(-2) == 1 && (x.stride(-1) == r || c == 1)) {
    *trans = true;  // memory holds [B, C, R]
    return Tensor::FromStorage(x.storage(), {b, c, r}, {r * c, r, 1}, x.offset(), x.dtype());
  }
  *trans = false;
  return View(Clone(x), {b, r, c});
}
}  // namespace

Tensor Matmul(const Tensor& a, const Tensor& b) { return Matmul(a, b, a.dtype()); }

Tensor Matmul(const Tensor& a, const Tensor& b, DType out_dtype) {
  CheckSameDevice(a, b, "matmul");
  SDPO_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: operands must have at least 2 dims, got ",
             a.str(), " and ", b.str());
  SDPO_CHECK(IsFloating(a.dtype()), "matmul: needs floating-point operands, got ", a.str());
  if (out_dtype != a.dtype()) {
    SDPO_CHECK(out_dtype == kF32 && a.dtype() == kBF16 && b.dtype() == kBF16,
               "matmul: a result dtype other than the operands' is only f32 for bf16 operands, "
               "got ",
               DTypeName(out_dtype), " for ", a.str(), " x ", b.str());
    // Other devices: the same products (bf16 -> f32 is exact) on converted copies.
    if (!a.device().is_cpu()) return Matmul(Cast(a, kF32), Cast(b, kF32));
  } else if (a.dtype() != b.dtype()) {
    // b may be a narrower float than a (bf16/f16 under f32; those or f32 under f64), e.g. a
    // weight kept in its storage dtype: the product has a's dtype and is computed as if b were
    // converted first. The CPU kernel converts b panel by panel as the product uses it, never as
    // a whole (tensor/cpu/gemm.cc); other devices get a converted copy.
    SDPO_CHECK(NarrowerFloat(b.dtype(), a.dtype()), "matmul: dtype mismatch: ", a.str(), " vs ",
               b.str(), " (b may only be a narrower float than a)");
    if (!a.device().is_cpu()) return Matmul(a, Cast(b, a.dtype()));
  }
  int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  SDPO_CHECK(b.size(-2) == k, "matmul: inner dims differ: ", a.str(), " x ", b.str());
  Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  Shape batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape batch = BroadcastShapes(batch_a, batch_b, "matmul");
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = Tensor::Empty(out_shape, out_dtype, a.device());
  if (out.numel() == 0) return out;
  if (k == 0) {
    Fill(out, 0);
    return out;
  }
  int64_t nb = NumElements(batch);
  // b without batch: fold a's batch into rows (one large GEMM), when a's rows are contiguous.
  if (NumElements(batch_b) == 1 && nb > 1 && a.is_contiguous()) {
    bool tb;
    Tensor bm = AsGemmOperand(b, &tb);
    Tensor am = View(a, {1, nb * m, k});
    KernelsFor(a.device()).Gemm(View(out, {1, nb * m, n}), am, false, bm, tb);
    return out;
  }
  Shape a_full = batch, b_full = batch;
  a_full.insert(a_full.end(), {m, k});
  b_full.insert(b_full.end(), {k, n});
  // An operand without batch stays [1, R, C]: the kernel broadcasts it.
  bool ta, tb;
  Tensor am = AsGemmOperand(NumElements(batch_a) == 1 ? a : Expand(a, a_full), &ta);
  Tensor bm = AsGemmOperand(NumElements(batch_b) == 1 ? b : Expand(b, b_full), &tb);
  KernelsFor(a.device()).Gemm(View(out, {nb, m, n}), am, ta, bm, tb);
  return out;
}

// ----------------------------------------------------------------------------- join / index

Tensor Concat(const std::vector<Tensor>& xs, int64_t dim) {
  SDPO_CHECK(!xs.empty(), "concat: no tensors");
  const Tensor& first = xs[0];
  dim = DimOf(first, dim, "concat");
  Shape shape = first.shape();
  int64_t total = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    SDPO_CHECK(x.dim() == first.dim() && x.dtype() == first.dtype() && x.device() == first.device(),
               "concat: tensor ", i, " ", x.str(), " does not match tensor 0 ", first.str());
    for (int64_t d = 0; d < x.dim(); ++d) {
      SDPO_CHECK(d == dim || x.size(d) == first.size(d), "concat: tensor ", i, " ",
                 ShapeStr(x.shape()), " differs from tensor 0 ", ShapeStr(first.shape()),
                 " outside the concat dim ", dim);
    }
    total += x.size(dim);
  }
  shape[dim] = total;
  Tensor out = Tensor::Empty(shape, first.dtype(), first.device());
  int64_t start = 0;
  for (const Tensor& x : xs) {
    if (x.size(dim) > 0) CopyInto(Narrow(out, dim, start, x.size(dim)), x);
    start += x.size(dim);
  }
  return out;
}

Tensor Stack(const std::vector<Tensor>& xs, int64_t dim) {
  SDPO_CHECK(!xs.empty(), "stack: no tensors");
  const int64_t rank = xs[0].dim() + 1;
  SDPO_CHECK(dim >= -rank && dim < rank, "stack: dim ", dim, " out of range for stacking ",
             xs[0].str());
  if (dim < 0) dim += rank;
  std::vector<Tensor> expanded;
  for (size_t i = 0; i < xs.size(); ++i) {
    SDPO_CHECK(xs[i].shape() == xs[0].shape() && xs[i].dtype() == xs[0].dtype(), "stack: tensor ",
               i, " ", xs[i].str(), " differs in shape or dtype from tensor 0 ", xs[0].str());
    expanded.push_back(Unsqueeze(xs[i], dim));
  }
  return Concat(expanded, dim);
}

namespace {
// `target` describes what is indexed (for errors), e.g. "dim 0 of f32[3, 4] cpu".
Tensor CheckIndex(const Tensor& index, int64_t limit, const char* op, const std::string& target) {
  SDPO_CHECK(index.dtype() == kI64 || index.dtype() == kI32, op, ": index must be i64 or i32, got ",
             index.str());
  Tensor idx = Contiguous(Cast(index, kI64));
  Tensor host = To(idx, Device::CPU());
  const int64_t* p = host.data<int64_t>();
  for (int64_t i = 0; i < host.numel(); ++i) {
    SDPO_CHECK(p[i] >= 0 && p[i] < limit, op, ": index ", p[i], " at position ", i,
               " out of range [0, ", limit, ") for ", target);
  }
  return idx;
}

// [outer, n, inner] view of a contiguous tensor around `dim`.
Tensor ThreeDView(const Tensor& x, int64_t dim) {
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.size(d);
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  return View(x, {outer, x.size(dim), inner});
}
}  // namespace

Tensor IndexSelect(const Tensor& x, int64_t dim, const Tensor& index) {
  dim = DimOf(x, dim, "index_select");
  SDPO_CHECK(index.dim() == 1, "index_select: index must be 1-D, got ", index.str());
  Tensor idx = CheckIndex(index, x.size(dim), "index_select",
                          absl::StrCat("dim ", dim, " of ", x.str()));
  Tensor src = ThreeDView(Contiguous(x), dim);
  Shape out_shape = x.shape();
  out_shape[dim] = idx.numel();
  Tensor out = Tensor::Empty(out_shape, x.dtype(), x.device());
  Tensor out3 = View(out, {src.size(0), idx.numel(), src.size(2)});
  // Rows of [outer * n, inner]: gather per outer slice.
  for (int64_t o = 0; o < src.size(0); ++o) {
    KernelsFor(x.device()).IndexRows(Select(out3, 0, o), Select(src, 0, o), idx);
  }
  return out;
}

Tensor IndexAdd(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  SDPO_CHECK(rank > 0 && dim >= -rank && dim < rank, "index_add: dim ", dim,
             " out of range for shape ", ShapeStr(shape));
  if (dim < 0) dim += rank;
  SDPO_CHECK(index.dim() == 1, "index_add: index must be 1-D, got ", index.str());
  Tensor idx = CheckIndex(index, shape[dim], "index_add",
                          absl::StrCat("dim ", dim, " of shape ", ShapeStr(shape)));
  Shape expect = shape;
  expect[dim] = idx.numel();
  SDPO_CHECK(src.shape() == expect, "index_add: src ", src.str(), " should have shape ",
             ShapeStr(expect));
  Tensor out = Tensor::Zeros(shape, src.dtype(), src.device());
  Tensor out3 = ThreeDView(out, dim);
  Tensor src3 = ThreeDView(Contiguous(src), dim);
  for (int64_t o = 0; o < out3.size(0); ++o) {
    KernelsFor(src.device()).IndexAddRows(Select(out3, 0, o), idx, Select(src3, 0, o));
  }
  return out;
}

Tensor Gather(const Tensor& x, int64_t dim, const Tensor& index) {
  dim = DimOf(x, dim, "gather");
  SDPO_CHECK(index.dim() == x.dim(), "gather: index ", index.str(), " must have the rank of ",
             x.str());
  for (int64_t d = 0; d < x.dim(); ++d) {
    SDPO_CHECK(d == dim || index.size(d) == x.size(d), "gather: index ", index.str(),
               " must match ", x.str(), " outside dim ", dim);
  }
  Tensor idx = CheckIndex(index, x.size(dim), "gather", absl::StrCat("dim ", dim, " of ", x.str()));
  Tensor out = Tensor::Empty(index.shape(), x.dtype(), x.device());
  KernelsFor(x.device())
      .Gather(ThreeDView(out, dim), ThreeDView(Contiguous(x), dim), ThreeDView(idx, dim));
  return out;
}

Tensor ScatterAdd(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  SDPO_CHECK(rank > 0 && dim >= -rank && dim < rank, "scatter_add: dim ", dim,
             " out of range for shape ", ShapeStr(shape));
  if (dim < 0) dim += rank;
  SDPO_CHECK(index.shape() == src.shape(), "scatter_add: index ", index.str(), " and src ",
             src.str(), " differ in shape");
  // Outside `dim` the index must match the output (the kernel walks both with one layout).
  bool match = index.dim() == rank;
  for (int64_t d = 0; match && d < rank; ++d) match = d == dim || index.size(d) == shape[d];
  SDPO_CHECK(match, "scatter_add: index ", index.str(), " must match the output shape ",
             ShapeStr(shape), " outside dim ", dim);
  Tensor idx = CheckIndex(index, shape[dim], "scatter_add",
                          absl::StrCat("dim ", dim, " of shape ", ShapeStr(shape)));
  Tensor out = Tensor::Zeros(shape, src.dtype(), src.device());
  KernelsFor(src.device())
      .ScatterAdd(ThreeDView(out, dim), ThreeDView(idx, dim), ThreeDView(Contiguous(src), dim));
  return out;
}

// ----------------------------------------------------------------------------- fused

namespace {
void CheckNormArgs(const Tensor& x, const Tensor& weight, const Tensor& bias, const char* op) {
  SDPO_CHECK(x.dim() >= 1 && IsFloating(x.dtype()), op,
             ": needs a floating-point tensor with at least 1 dim, got ", x.str());
  int64_t d = x.size(-1);
  for (const Tensor* p : {&weight, &bias}) {
    if (!p->defined()) continue;
    SDPO_CHECK(p->dim() == 1 && p->size(0) == d, op, ": parameter ", p->str(),
               " must have shape [", d, "] to match input ", x.str());
    SDPO_CHECK(p->dtype() == x.dtype(), op, ": parameter ", p->str(),
               " must have the dtype of input ", x.str());
    SDPO_CHECK(p->device() == x.device(), op, ": parameter ", p->str(), " on another device");
  }
}
Tensor Rows(const Tensor& x) { return View(Contiguous(x), {-1, x.size(-1)}); }
}  // namespace

NormResult LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  CheckNormArgs(x, weight, bias, "layer_norm");
  NormResult r = KernelsFor(x.device()).LayerNorm(Rows(x), weight, bias, eps);
  r.out = View(r.out, x.shape());
  return r;
}

NormGrads LayerNormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                            const Tensor& mean, const Tensor& rstd, bool need_bias_grad) {
  SDPO_CHECK(dy.shape() == x.shape(), "layer_norm backward: grad ", dy.str(), " vs input ",
             x.str());
  NormGrads g = KernelsFor(x.device())
                    .LayerNormBackward(Rows(Cast(dy, x.dtype())), Rows(x), weight, mean, rstd,
                                       need_bias_grad);
  g.dx = View(g.dx, x.shape());
  return g;
}

namespace {
// [B, D] contiguous view of an AdaLN shift/scale given as [B, 1, D] or [B, D].
Tensor ModulationRows(const Tensor& t, const Tensor& x, const char* what) {
  const int64_t b = x.size(0), d = x.size(-1);
  SDPO_CHECK(t.defined() && t.numel() == b * d && t.dim() >= 2 && t.size(0) == b &&
                 t.size(-1) == d && t.dtype() == x.dtype() && t.device() == x.device(),
             "layer_norm_modulate: ", what, " must be [", b, ", 1, ", d, "] or [", b, ", ", d,
             "] of ", DTypeName(x.dtype()), " on ", x.device().str(), ", got ",
             t.defined() ? t.str() : "undefined");
  return View(Contiguous(t), {b, d});
}
}  // namespace

NormResult LayerNormModulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                             double eps) {
  SDPO_CHECK(x.dim() >= 2 && IsFloating(x.dtype()), "layer_norm_modulate: x must be a float [B, ..., D], got ",
             x.str());
  Tensor sh = ModulationRows(shift, x, "shift"), sc = ModulationRows(scale, x, "scale");
  Tensor rows = Rows(x);
  const int64_t rpb = x.size(0) > 0 ? rows.size(0) / x.size(0) : 1;
  NormResult r = KernelsFor(x.device()).LayerNormModulate(rows, sh, sc, rpb, eps);
  r.out = View(r.out, x.shape());
  return r;
}

NormModulateGrads LayerNormModulateBackward(const Tensor& dy, const Tensor& x, const Tensor& scale,
                                            const Tensor& mean, const Tensor& rstd) {
  SDPO_CHECK(dy.shape() == x.shape(), "layer_norm_modulate backward: grad ", dy.str(),
             " vs input ", x.str());
  Tensor sc = ModulationRows(scale, x, "scale");
  Tensor rows = Rows(x);
  const int64_t rpb = x.size(0) > 0 ? rows.size(0) / x.size(0) : 1;
  NormModulateGrads g = KernelsFor(x.device())
                            .LayerNormModulateBackward(Rows(Cast(dy, x.dtype())), rows, sc, mean,
                                                       rstd, rpb);
  g.dx = View(g.dx, x.shape());
  return g;
}

NormResult RmsNorm(const Tensor& x, const Tensor& weight, double eps) {
  CheckNormArgs(x, weight, Tensor(), "rms_norm");
  NormResult r = KernelsFor(x.device()).RmsNorm(Rows(x), weight, eps);
  r.out = View(r.out, x.shape());
  return r;
}

NormGrads RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                          const Tensor& rstd) {
  SDPO_CHECK(dy.shape() == x.shape(), "rms_norm backward: grad ", dy.str(), " vs input ", x.str());
  NormGrads g =
      KernelsFor(x.device()).RmsNormBackward(Rows(Cast(dy, x.dtype())), Rows(x), weight, rstd);
  g.dx = View(g.dx, x.shape());
  return g;
}

namespace {
double CheckAttentionArgs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                          std::optional<double> scale, Tensor* mask_expanded) {
  SDPO_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
             "attention: q, k, v must be [B, H, L, D], got ", q.str(), ", ", k.str(), ", ",
             v.str());
  SDPO_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype() && IsFloating(q.dtype()),
             "attention: q, k, v must share a floating dtype: ", q.str(), ", ", k.str(), ", ",
             v.str());
  SDPO_CHECK(q.device() == k.device() && q.device() == v.device(),
             "attention: q, k, v on different devices");
  SDPO_CHECK(q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3) &&
                 k.size(0) == v.size(0) && k.size(1) == v.size(1) && k.size(2) == v.size(2),
             "attention: incompatible shapes q ", ShapeStr(q.shape()), ", k ",
             ShapeStr(k.shape()), ", v ", ShapeStr(v.shape()));
  SDPO_CHECK(k.size(2) > 0, "attention: no keys: k ", k.str());
  if (mask.defined()) {
    Shape full = {q.size(0), q.size(1), q.size(2), k.size(2)};
    SDPO_CHECK(IsFloating(mask.dtype()), "attention: the mask is additive and must be floating, got ",
               mask.str());
    SDPO_CHECK(mask.dim() <= 4 && BroadcastShapes(mask.shape(), full, "attention mask") == full,
               "attention: mask ", mask.str(), " does not broadcast to [B, H, Lq, Lk] = ",
               ShapeStr(full));
    SDPO_CHECK(mask.device() == q.device(), "attention: mask on another device");
    *mask_expanded = Expand(Cast(mask, q.dtype()), full);
  }
  return scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(3))));
}
}  // namespace

AttentionResult Attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                          std::optional<double> scale) {
  Tensor m;
  double s = CheckAttentionArgs(q, k, v, mask, scale, &m);
  return KernelsFor(q.device()).Attention(Contiguous(q), Contiguous(k), Contiguous(v), m, s);
}

AttentionGrads AttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                 const Tensor& v, const Tensor& mask, std::optional<double> scale,
                                 const Tensor& out, const Tensor& lse) {
  Tensor m;
  double s = CheckAttentionArgs(q, k, v, mask, scale, &m);
  SDPO_CHECK(dout.shape() == out.shape(), "attention backward: grad ", dout.str(), " vs output ",
             out.str());
  return KernelsFor(q.device())
      .AttentionBackward(Contiguous(Cast(dout, q.dtype())), Contiguous(q), Contiguous(k),
                         Contiguous(v), m, s, Contiguous(out), lse);
}

Tensor Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeLayout layout,
            bool inverse) {
  SDPO_CHECK(x.dim() >= 3, "rope: x must be [..., L, H, D], got ", x.str());
  int64_t l = x.size(-3), d = x.size(-1);
  SDPO_CHECK(IsFloating(x.dtype()), "rope: needs a floating-point tensor, got ", x.str());
  SDPO_CHECK(d % 2 == 0, "rope: head dim ", d, " of ", x.str(), " must be even");
  SDPO_CHECK(cos.shape() == Shape({l, d / 2}) && sin.shape() == cos.shape(),
             "rope: cos/sin must be [", l, ", ", d / 2, "], got ", cos.str(), " and ", sin.str());
  Tensor x4 = View(Contiguous(x), {-1, l, x.size(-2), d});
  Tensor out = KernelsFor(x.device())
                   .Rope(x4, Contiguous(Cast(cos, x.dtype())), Contiguous(Cast(sin, x.dtype())),
                         layout, inverse);
  return View(out, x.shape());
}

// ----------------------------------------------------------------------------- random

Tensor RandomNormal(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype,
                    Device device) {
  SDPO_CHECK(IsFloating(dtype), "random_normal: needs a floating dtype, got ", DTypeName(dtype));
  Tensor out = Tensor::Empty(shape, dtype, device);
  KernelsFor(device).Philox(out, seed, offset, /*normal=*/true);
  return out;
}

Tensor RandomUniform(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype,
                     Device device) {
  SDPO_CHECK(IsFloating(dtype), "random_uniform: needs a floating dtype, got ", DTypeName(dtype));
  Tensor out = Tensor::Empty(shape, dtype, device);
  KernelsFor(device).Philox(out, seed, offset, /*normal=*/false);
  return out;
}

}  // namespace ops
}  // namespace sdpo
