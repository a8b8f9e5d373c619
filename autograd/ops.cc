#include "autograd/ops.h"

#include <numeric>

namespace sdpo {

const std::vector<std::string>& DifferentiableOps() {
  static const std::vector<std::string> names = {
      "view", "permute", "narrow", "select", "expand", "contiguous", "clone", "cast", "to",
      "add", "sub", "mul", "div", "pow", "maximum", "minimum", "where",
      "neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "silu",
      "gelu", "gelu_tanh", "square", "clamp",
      "sum", "mean", "max", "var", "softmax", "log_softmax",
      "matmul", "concat", "index_select", "gather",
      "layer_norm", "layer_norm_modulate", "rms_norm", "attention", "rope", "checkpoint"};
  return names;
}

namespace {

using ops::BinaryOp;
using ops::UnaryOp;

std::vector<int64_t> AllDims(int64_t rank) {
  std::vector<int64_t> d(rank);
  std::iota(d.begin(), d.end(), 0);
  return d;
}

std::vector<int64_t> WrapDims(std::vector<int64_t> dims, int64_t rank, const char* op) {
  if (dims.empty()) return AllDims(rank);
  for (auto& d : dims) d = WrapDim(d, rank, op);
  std::sort(dims.begin(), dims.end());
  return dims;
}

// Re-inserts reduced dims (size 1) so that a reduction's gradient broadcasts against x.
Tensor Unreduce(const Tensor& g, const std::vector<int64_t>& dims, bool keepdim) {
  if (keepdim) return g;
  Tensor r = g;
  for (int64_t d : dims) r = ops::Unsqueeze(r, d);  // dims sorted ascending
  return r;
}

// Zeros of `shape` with `g` written into the region selected by `region`.
Tensor ScatterInto(const Shape& shape, const Tensor& g,
                   const std::function<Tensor(const Tensor&)>& region) {
  Tensor z = Tensor::Zeros(shape, g.dtype(), g.device());
  ops::CopyInto(region(z), g);
  return z;
}

Tensor UnaryNode(UnaryOp op, const char* name, const Tensor& x,
                 std::function<Tensor(const Tensor& g, const Tensor& x, const Tensor& y)> grad) {
  Tensor y = ops::Unary(op, x);
  Tensor yd = Detach(y);
  return Record(y, name, {x}, [x = Detach(x), yd, grad](const Tensor& g) {
    return std::vector<Tensor>{grad(g, x, yd)};
  });
}

}  // namespace

// ----------------------------------------------------------------------------- views

Tensor view(const Tensor& x, const Shape& shape) {
  Shape in = x.shape();
  return Record(ops::View(x, shape), "view", {x},
                [in](const Tensor& g) { return std::vector<Tensor>{ops::Reshape(g, in)}; });
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  Shape in = x.shape();
  return Record(ops::Reshape(x, shape), "view", {x},
                [in](const Tensor& g) { return std::vector<Tensor>{ops::Reshape(g, in)}; });
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  return reshape(x, ops::Flatten(Detach(x), start_dim, end_dim).shape());
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  Tensor out = ops::Permute(x, dims);
  std::vector<int64_t> inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inverse[WrapDim(dims[i], x.dim(), "permute")] = i;
  return Record(out, "permute", {x}, [inverse](const Tensor& g) {
    return std::vector<Tensor>{ops::Permute(g, inverse)};
  });
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  std::vector<int64_t> dims = AllDims(x.dim());
  std::swap(dims[WrapDim(dim0, x.dim(), "transpose")], dims[WrapDim(dim1, x.dim(), "transpose")]);
  return permute(x, dims);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  Tensor out = ops::Slice(x, dim, start, end, step);
  Shape in = x.shape();
  // Recover the normalised start from the view's offset.
  int64_t d = WrapDim(dim, x.dim(), "slice");
  int64_t s0 = x.stride(d) == 0 ? 0 : (out.offset() - x.offset()) / x.stride(d);
  int64_t n = out.size(d);
  return Record(out, "narrow", {x}, [in, d, s0, n, step](const Tensor& g) {
    return std::vector<Tensor>{ScatterInto(in, g, [&](const Tensor& z) {
      return ops::Slice(z, d, s0, s0 + (n - 1) * step + 1, step);
    })};
  });
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  ops::Narrow(x, dim, start, length);  // validates
  return slice(x, dim, start, start + length, 1);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  Tensor out = ops::Select(x, dim, index);
  int64_t d = WrapDim(dim, x.dim(), "select");
  int64_t i = index < 0 ? index + x.size(d) : index;
  Shape in = x.shape();
  return Record(out, "select", {x}, [in, d, i](const Tensor& g) {
    return std::vector<Tensor>{
        ScatterInto(in, g, [&](const Tensor& z) { return ops::Select(z, d, i); })};
  });
}

Tensor expand(const Tensor& x, const Shape& shape) {
  Shape in = x.shape();
  return Record(ops::Expand(x, shape), "expand", {x}, [in](const Tensor& g) {
    return std::vector<Tensor>{ops::SumToShape(g, in)};
  });
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  return view(x, ops::Unsqueeze(Detach(x), dim).shape());
}
Tensor squeeze(const Tensor& x, int64_t dim) { return view(x, ops::Squeeze(Detach(x), dim).shape()); }

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  ops::Split(Detach(x), sizes, dim);  // validates
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t s : sizes) {
    parts.push_back(narrow(x, dim, start, s));
    start += s;
  }
  return parts;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  std::vector<int64_t> sizes;
  for (const Tensor& p : ops::Chunk(Detach(x), chunks, dim)) sizes.push_back(p.size(dim));
  return split(x, sizes, dim);
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  return Record(ops::Contiguous(x), "contiguous", {x},
                [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor clone(const Tensor& x) {
  return Record(ops::Clone(x), "clone", {x}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  DType in = x.dtype();
  return Record(ops::Cast(x, dtype), "cast", {x},
                [in](const Tensor& g) { return std::vector<Tensor>{ops::Cast(g, in)}; });
}

Tensor to(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Device in = x.device();
  return Record(ops::To(x, device), "to", {x},
                [in](const Tensor& g) { return std::vector<Tensor>{ops::To(g, in)}; });
}

// ----------------------------------------------------------------------------- binary

namespace {
// Brings a 0-d operand to the dtype of the other (as ops::Binary does), differentiably.
void MatchScalarDType(Tensor& a, Tensor& b) {
  if (a.dtype() == b.dtype()) return;
  if (b.dim() == 0) b = cast(b, a.dtype());
  else if (a.dim() == 0) a = cast(a, b.dtype());
}
}  // namespace

Tensor add(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in, b = b_in;
  MatchScalarDType(a, b);
  Shape sa = a.shape(), sb = b.shape();
  return Record(ops::Add(a, b), "add", {a, b}, [sa, sb](const Tensor& g) {
    return std::vector<Tensor>{ops::SumToShape(g, sa), ops::SumToShape(g, sb)};
  });
}

Tensor sub(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in, b = b_in;
  MatchScalarDType(a, b);
  Shape sa = a.shape(), sb = b.shape();
  return Record(ops::Sub(a, b), "sub", {a, b}, [sa, sb](const Tensor& g) {
    return std::vector<Tensor>{ops::SumToShape(g, sa), ops::SumToShape(ops::Neg(g), sb)};
  });
}

Tensor mul(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in, b = b_in;
  MatchScalarDType(a, b);
  bool ga = a.requires_grad(), gb = b.requires_grad();
  return Record(ops::Mul(a, b), "mul", {a, b},
                [ad = Detach(a), bd = Detach(b), ga, gb](const Tensor& g) {
                  return std::vector<Tensor>{
                      ga ? ops::SumToShape(ops::Mul(g, bd), ad.shape()) : Tensor(),
                      gb ? ops::SumToShape(ops::Mul(g, ad), bd.shape()) : Tensor()};
                });
}

Tensor div(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in, b = b_in;
  MatchScalarDType(a, b);
  Tensor out = ops::Div(a, b);
  bool gb = b.requires_grad();
  return Record(out, "div", {a, b},
                [ad = Detach(a), bd = Detach(b), od = Detach(out), gb](const Tensor& g) {
                  Tensor ga = ops::Div(g, bd);
                  Tensor gbv = gb ? ops::SumToShape(ops::Neg(ops::Mul(ga, od)), bd.shape())
                                  : Tensor();
                  return std::vector<Tensor>{ops::SumToShape(ga, ad.shape()), gbv};
                });
}

Tensor pow(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in, b = b_in;
  MatchScalarDType(a, b);
  Tensor out = ops::Pow(a, b);
  bool ga = a.requires_grad(), gb = b.requires_grad();
  return Record(out, "pow", {a, b},
                [ad = Detach(a), bd = Detach(b), od = Detach(out), ga, gb](const Tensor& g) {
                  Tensor da, db;
                  if (ga) {
                    Tensor bm1 = ops::Sub(bd, ops::ScalarLike(1, bd));
                    da = ops::SumToShape(ops::Mul(g, ops::Mul(bd, ops::Pow(ad, bm1))), ad.shape());
                  }
                  if (gb) {
                    db = ops::SumToShape(ops::Mul(g, ops::Mul(od, ops::Log(ad))), bd.shape());
                  }
                  return std::vector<Tensor>{da, db};
                });
}

namespace {
// d max(a,b): the larger operand gets the gradient, ties split it in half (like torch).
Tensor MinMax(const Tensor& a_in, const Tensor& b_in, bool is_max) {
  Tensor a = a_in, b = b_in;
  MatchScalarDType(a, b);
  Tensor out = is_max ? ops::Maximum(a, b) : ops::Minimum(a, b);
  return Record(out, is_max ? "maximum" : "minimum", {a, b},
                [ad = Detach(a), bd = Detach(b), is_max](const Tensor& g) {
                  Tensor wins = ops::Cast(
                      ops::Compare(is_max ? ops::CompareOp::kGt : ops::CompareOp::kLt, ad, bd),
                      g.dtype());
                  Tensor ties = ops::Cast(ops::Compare(ops::CompareOp::kEq, ad, bd), g.dtype());
                  Tensor wa = ops::Add(wins, ops::MulScalar(ties, 0.5));
                  Tensor wb = ops::Sub(ops::ScalarLike(1, wa), wa);
                  return std::vector<Tensor>{ops::SumToShape(ops::Mul(g, wa), ad.shape()),
                                             ops::SumToShape(ops::Mul(g, wb), bd.shape())};
                });
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return MinMax(a, b, true); }
Tensor minimum(const Tensor& a, const Tensor& b) { return MinMax(a, b, false); }
Tensor add(const Tensor& a, double b) { return add(a, ops::ScalarLike(b, a)); }
Tensor mul(const Tensor& a, double b) { return mul(a, ops::ScalarLike(b, a)); }
Tensor pow(const Tensor& a, double exponent) { return pow(a, ops::ScalarLike(exponent, a)); }

Tensor where(const Tensor& condition, const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in, b = b_in;
  MatchScalarDType(a, b);
  Shape sa = a.shape(), sb = b.shape();
  return Record(ops::Where(condition, a, b), "where", {a, b},
                [c = Detach(condition), sa, sb](const Tensor& g) {
                  Tensor zero = ops::ScalarLike(0, g);
                  return std::vector<Tensor>{ops::SumToShape(ops::Where(c, g, zero), sa),
                                             ops::SumToShape(ops::Where(c, zero, g), sb)};
                });
}

// ----------------------------------------------------------------------------- unary

Tensor neg(const Tensor& x) {
  return UnaryNode(UnaryOp::kNeg, "neg", x, [](auto& g, auto&, auto&) { return ops::Neg(g); });
}
Tensor abs(const Tensor& x) {
  return UnaryNode(UnaryOp::kAbs, "abs", x,
                   [](auto& g, auto& x, auto&) { return ops::Mul(g, ops::Unary(UnaryOp::kSign, x)); });
}
Tensor exp(const Tensor& x) {
  return UnaryNode(UnaryOp::kExp, "exp", x, [](auto& g, auto&, auto& y) { return ops::Mul(g, y); });
}
Tensor log(const Tensor& x) {
  return UnaryNode(UnaryOp::kLog, "log", x, [](auto& g, auto& x, auto&) { return ops::Div(g, x); });
}
Tensor sqrt(const Tensor& x) {
  return UnaryNode(UnaryOp::kSqrt, "sqrt", x, [](auto& g, auto&, auto& y) {
    return ops::Div(ops::MulScalar(g, 0.5), y);
  });
}
Tensor rsqrt(const Tensor& x) {
  return UnaryNode(UnaryOp::kRsqrt, "rsqrt", x, [](auto& g, auto&, auto& y) {
    return ops::Mul(g, ops::MulScalar(ops::PowScalar(y, 3), -0.5));
  });
}
Tensor sin(const Tensor& x) {
  return UnaryNode(UnaryOp::kSin, "sin", x,
                   [](auto& g, auto& x, auto&) { return ops::Mul(g, ops::Unary(UnaryOp::kCos, x)); });
}
Tensor cos(const Tensor& x) {
  return UnaryNode(UnaryOp::kCos, "cos", x, [](auto& g, auto& x, auto&) {
    return ops::Neg(ops::Mul(g, ops::Unary(UnaryOp::kSin, x)));
  });
}
Tensor tanh(const Tensor& x) {
  return UnaryNode(UnaryOp::kTanh, "tanh", x, [](auto& g, auto&, auto& y) {
    return ops::Mul(g, ops::Unary(UnaryOp::kTanhGradFromOutput, y));
  });
}
Tensor sigmoid(const Tensor& x) {
  return UnaryNode(UnaryOp::kSigmoid, "sigmoid", x, [](auto& g, auto& x, auto&) {
    return ops::Mul(g, ops::Unary(UnaryOp::kSigmoidGrad, x));
  });
}
Tensor silu(const Tensor& x) {
  return UnaryNode(UnaryOp::kSilu, "silu", x, [](auto& g, auto& x, auto&) {
    return ops::Mul(g, ops::Unary(UnaryOp::kSiluGrad, x));
  });
}
Tensor gelu(const Tensor& x) {
  return UnaryNode(UnaryOp::kGelu, "gelu", x, [](auto& g, auto& x, auto&) {
    return ops::Mul(g, ops::Unary(UnaryOp::kGeluGrad, x));
  });
}
Tensor gelu_tanh(const Tensor& x) {
  return UnaryNode(UnaryOp::kGeluTanh, "gelu_tanh", x, [](auto& g, auto& x, auto&) {
    return ops::Mul(g, ops::Unary(UnaryOp::kGeluTanhGrad, x));
  });
}
Tensor square(const Tensor& x) {
  return UnaryNode(UnaryOp::kSquare, "square", x,
                   [](auto& g, auto& x, auto&) { return ops::Mul(g, ops::MulScalar(x, 2)); });
}

Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  Tensor out = ops::Clamp(x, min, max);
  return Record(out, "clamp", {x}, [xd = Detach(x), min, max](const Tensor& g) {
    Tensor pass = Tensor::Ones(xd.shape(), kBool, xd.device());
    if (min) pass = ops::Where(ops::Compare(ops::CompareOp::kGe, xd, ops::ScalarLike(*min, xd)), pass,
                               ops::ScalarLike(0, pass));
    if (max) pass = ops::Where(ops::Compare(ops::CompareOp::kLe, xd, ops::ScalarLike(*max, xd)), pass,
                               ops::ScalarLike(0, pass));
    return std::vector<Tensor>{ops::Where(pass, g, ops::ScalarLike(0, g))};
  });
}

// ----------------------------------------------------------------------------- reductions

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  std::vector<int64_t> dims = WrapDims(dims_in, x.dim(), "sum");
  Shape in = x.shape();
  return Record(ops::Sum(x, dims, keepdim), "sum", {x}, [in, dims, keepdim](const Tensor& g) {
    return std::vector<Tensor>{ops::Expand(Unreduce(g, dims, keepdim), in)};
  });
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  std::vector<int64_t> dims = WrapDims(dims_in, x.dim(), "mean");
  Shape in = x.shape();
  int64_t count = 1;
  for (int64_t d : dims) count *= x.size(d);
  return Record(ops::Mean(x, dims, keepdim), "mean", {x},
                [in, dims, keepdim, count](const Tensor& g) {
                  Tensor s = ops::MulScalar(g, 1.0 / static_cast<double>(count));
                  return std::vector<Tensor>{ops::Expand(Unreduce(s, dims, keepdim), in)};
                });
}

Tensor max(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  std::vector<int64_t> dims = WrapDims(dims_in, x.dim(), "max");
  Tensor out = ops::Max(x, dims, keepdim);
  return Record(out, "max", {x}, [xd = Detach(x), od = Detach(out), dims, keepdim](const Tensor& g) {
    // Ties share the gradient evenly.
    Tensor m = Unreduce(od, dims, keepdim);
    Tensor hit = ops::Cast(ops::Compare(ops::CompareOp::kEq, xd, m), g.dtype());
    Tensor count = ops::Sum(hit, dims, /*keepdim=*/true);
    Tensor share = ops::Div(Unreduce(g, dims, keepdim), count);
    return std::vector<Tensor>{ops::Mul(hit, share)};
  });
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims_in, int64_t correction,
           bool keepdim) {
  std::vector<int64_t> dims = WrapDims(dims_in, x.dim(), "var");
  int64_t count = 1;
  for (int64_t d : dims) count *= x.size(d);
  return Record(ops::Var(x, dims, correction, keepdim), "var", {x},
                [xd = Detach(x), dims, keepdim, count, correction](const Tensor& g) {
                  Tensor centered = ops::Sub(xd, ops::Mean(xd, dims, true));
                  double scale = 2.0 / static_cast<double>(count - correction);
                  return std::vector<Tensor>{
                      ops::Mul(ops::MulScalar(centered, scale), Unreduce(g, dims, keepdim))};
                });
}

Tensor softmax(const Tensor& x, int64_t dim) {
  Tensor y = ops::Softmax(x, dim);
  return Record(y, "softmax", {x}, [yd = Detach(y), dim](const Tensor& g) {
    Tensor dot = ops::Sum(ops::Mul(g, yd), {dim}, true);
    return std::vector<Tensor>{ops::Mul(yd, ops::Sub(g, dot))};
  });
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  Tensor y = ops::LogSoftmax(x, dim);
  return Record(y, "log_softmax", {x}, [yd = Detach(y), dim](const Tensor& g) {
    Tensor total = ops::Sum(g, {dim}, true);
    return std::vector<Tensor>{ops::Sub(g, ops::Mul(ops::Exp(yd), total))};
  });
}

// ----------------------------------------------------------------------------- matmul etc.

Tensor matmul(const Tensor& a, const Tensor& b) {
  bool ga = a.requires_grad(), gb = b.requires_grad();
  return Record(ops::Matmul(a, b), "matmul", {a, b},
                [ad = Detach(a), bd = Detach(b), ga, gb](const Tensor& g) {
                  Tensor da, db;
                  if (ga) da = ops::SumToShape(ops::Matmul(g, ops::Transpose(bd, -1, -2)), ad.shape());
                  if (gb) {
                    if (bd.dim() == 2 && ad.dim() > 2) {
                      // Fold a's batch into rows: one [K, rows] x [rows, N] product.
                      Tensor a2 = ops::Reshape(ad, {-1, ad.size(-1)});
                      Tensor g2 = ops::Reshape(g, {-1, g.size(-1)});
                      db = ops::Matmul(ops::Transpose(a2, 0, 1), g2);
                    } else {
                      db = ops::SumToShape(ops::Matmul(ops::Transpose(ad, -1, -2), g), bd.shape());
                    }
                  }
                  return std::vector<Tensor>{da, db};
                });
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  Tensor out = ops::Concat(xs, dim);
  int64_t d = WrapDim(dim, xs[0].dim(), "concat");
  std::vector<int64_t> sizes;
  for (const Tensor& x : xs) sizes.push_back(x.size(d));
  return Record(out, "concat", xs, [sizes, d](const Tensor& g) {
    std::vector<Tensor> parts = ops::Split(g, sizes, d);
    return parts;
  });
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  SDPO_CHECK(!xs.empty(), "stack: no tensors");
  int64_t d = WrapDim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> expanded;
  for (const Tensor& x : xs) expanded.push_back(unsqueeze(x, d));
  return concat(expanded, d);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  Shape in = x.shape();
  int64_t d = WrapDim(dim, x.dim(), "index_select");
  return Record(ops::IndexSelect(x, dim, index), "index_select", {x},
                [in, d, idx = Detach(index)](const Tensor& g) {
                  return std::vector<Tensor>{ops::IndexAdd(in, d, idx, g)};
                });
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  Shape in = x.shape();
  int64_t d = WrapDim(dim, x.dim(), "gather");
  return Record(ops::Gather(x, dim, index), "gather", {x},
                [in, d, idx = Detach(index)](const Tensor& g) {
                  return std::vector<Tensor>{ops::ScatterAdd(in, d, idx, ops::Contiguous(g))};
                });
}

// ----------------------------------------------------------------------------- fused

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  ops::NormResult r = ops::LayerNorm(x, weight, bias, eps);
  bool has_bias = bias.defined();
  return Record(r.out, "layer_norm", {x, weight, bias},
                [xd = Detach(x), w = weight.defined() ? Detach(weight) : Tensor(), r,
                 has_bias](const Tensor& g) {
                  ops::NormGrads gr = ops::LayerNormBackward(g, xd, w, r.mean, r.rstd, has_bias);
                  return std::vector<Tensor>{gr.dx, gr.dweight, gr.dbias};
                });
}

Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, double eps) {
  ops::NormResult r = ops::LayerNormModulate(x, shift, scale, eps);
  return Record(r.out, "layer_norm_modulate", {x, shift, scale},
                [xd = Detach(x), sc = Detach(scale), r, shift_shape = shift.shape(),
                 scale_shape = scale.shape()](const Tensor& g) {
                  ops::NormModulateGrads gr =
                      ops::LayerNormModulateBackward(g, xd, sc, r.mean, r.rstd);
                  return std::vector<Tensor>{gr.dx, ops::Reshape(gr.dshift, shift_shape),
                                             ops::Reshape(gr.dscale, scale_shape)};
                });
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  ops::NormResult r = ops::RmsNorm(x, weight, eps);
  return Record(r.out, "rms_norm", {x, weight},
                [xd = Detach(x), w = weight.defined() ? Detach(weight) : Tensor(),
                 rstd = r.rstd](const Tensor& g) {
                  ops::NormGrads gr = ops::RmsNormBackward(g, xd, w, rstd);
                  return std::vector<Tensor>{gr.dx, gr.dweight};
                });
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                 std::optional<double> scale) {
  ops::AttentionResult r = ops::Attention(q, k, v, mask, scale);
  return Record(r.out, "attention", {q, k, v},
                [qd = Detach(q), kd = Detach(k), vd = Detach(v),
                 md = mask.defined() ? Detach(mask) : Tensor(), scale, out = Detach(r.out),
                 lse = r.lse](const Tensor& g) {
                  ops::AttentionGrads gr = ops::AttentionBackward(g, qd, kd, vd, md, scale, out, lse);
                  return std::vector<Tensor>{gr.dq, gr.dk, gr.dv};
                });
}

Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout) {
  return Record(ops::Rope(x, cos, sin, layout), "rope", {x},
                [c = Detach(cos), s = Detach(sin), layout](const Tensor& g) {
                  return std::vector<Tensor>{ops::Rope(g, c, s, layout, /*inverse=*/true)};
                });
}

Tensor checkpoint(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                  const std::vector<Tensor>& inputs, const std::vector<Tensor>& params) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = fn(inputs);
  }
  std::vector<Tensor> saved;
  for (const Tensor& in : inputs) saved.push_back(in.defined() ? Detach(in) : Tensor());
  std::vector<bool> needs;
  for (const Tensor& in : inputs) needs.push_back(in.defined() && in.requires_grad());
  // The parameters fn uses are listed so that the node exists even when no input requires
  // grad; they receive their gradients from the nested backward, so the node returns none.
  std::vector<Tensor> recorded = inputs;
  recorded.insert(recorded.end(), params.begin(), params.end());
  size_t num_params = params.size();
  return Record(out, "checkpoint", recorded, [fn, saved, needs, num_params](const Tensor& g) {
    std::vector<Tensor> replay;
    for (size_t i = 0; i < saved.size(); ++i) {
      Tensor t = saved[i].defined() ? Detach(saved[i]) : Tensor();
      if (needs[i]) t.set_requires_grad(true);
      replay.push_back(t);
    }
    Tensor y;
    {
      EnableGradGuard enable;
      y = fn(replay);
    }
    std::vector<Tensor> grads(saved.size());
    if (y.requires_grad()) {
      Backward(y, g);
      for (size_t i = 0; i < replay.size(); ++i) {
        if (needs[i]) grads[i] = replay[i].grad();
      }
    }
    grads.resize(saved.size() + num_params);
    return grads;
  });
}

}  // namespace sdpo
