// The elementwise and reduction op lists, once: ops.h builds its enums (ops::UnaryOp, ...) and
// the CUDA kernels' C-style codes (tensor/cuda/launchers.h) build theirs from the same lists,
// so the two agree value for value by construction. The tests' op-case table
// (tests/op_cases.h) must cover every entry (tests/tensor/op_cases_test.cc).
//
// Each X(Name, "name") entry: the enum value is k<Name>, the op's name is "name".
// No includes: the .cu files include this header too.
#pragma once

#define SDPO_UNARY_OPS(X)                                                                   \
  X(Neg, "neg")                                                                             \
  X(Abs, "abs")                                                                             \
  X(Exp, "exp")                                                                             \
  X(Log, "log")                                                                             \
  X(Sqrt, "sqrt")                                                                           \
  X(Rsqrt, "rsqrt")                                                                         \
  X(Sin, "sin")                                                                             \
  X(Cos, "cos")                                                                             \
  X(Tanh, "tanh")                                                                           \
  X(Sigmoid, "sigmoid")                                                                     \
  X(Silu, "silu")                                                                           \
  X(Gelu, "gelu")         /* exact: x * Phi(x) */                                           \
  X(GeluTanh, "gelu_tanh") /* tanh approximation */                                         \
  X(Square, "square")                                                                       \
  X(Sign, "sign")                                                                           \
  X(Reciprocal, "reciprocal")                                                               \
  /* derivatives used by backward functions (d/dx of the op at x) */                        \
  X(SigmoidGrad, "sigmoid_grad")                                                            \
  X(SiluGrad, "silu_grad")                                                                  \
  X(GeluGrad, "gelu_grad")                                                                  \
  X(GeluTanhGrad, "gelu_tanh_grad")                                                         \
  X(TanhGradFromOutput, "tanh_grad")

#define SDPO_BINARY_OPS(X) \
  X(Add, "add")            \
  X(Sub, "sub")            \
  X(Mul, "mul")            \
  X(Div, "div")            \
  X(Pow, "pow")            \
  X(Maximum, "maximum")    \
  X(Minimum, "minimum")

#define SDPO_COMPARE_OPS(X) \
  X(Eq, "eq")               \
  X(Ne, "ne")               \
  X(Lt, "lt")               \
  X(Le, "le")               \
  X(Gt, "gt")               \
  X(Ge, "ge")

#define SDPO_REDUCE_KINDS(X) \
  X(Sum, "sum")              \
  X(Mean, "mean")            \
  X(Max, "max")              \
  X(ArgMax, "argmax")        \
  X(Var, "var")

// Helpers: the enumerator list and the count of a list.
#define SDPO_OP_ENUMERATOR(Name, str) k##Name,
#define SDPO_OP_COUNT_ONE(Name, str) +1
