#include "tests/op_cases.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "autograd/ops.h"

namespace sdpo::testing {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double Silu(double x) { return x * Sigmoid(x); }
double Gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
double GeluTanh(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}
// Central difference of f at x: the derivative references do not share code
// with the kernels.
double Derivative(double (*f)(double), double x) {
  const double h = 1e-5;
  return (f(x + h) - f(x - h)) / (2 * h);
}
constexpr double kFdTol =
    1e-9; // central difference, h = 1e-5, smooth f: error ~ h^2 f'''

} // namespace

const std::vector<UnaryOpCase> &UnaryOpCases() {
  using U = ops::UnaryOp;
  static const std::vector<UnaryOpCase> cases = {
      {U::kNeg, [](double x) { return -x; }, -3, 3, 0, true, sdpo::neg},
      {U::kAbs, [](double x) { return std::abs(x); }, -3, 3, 0, true, sdpo::abs,
       0.0},
      {U::kExp, [](double x) { return std::exp(x); }, -5, 5, 0, false,
       sdpo::exp},
      {U::kLog, [](double x) { return std::log(x); }, 0.01, 10, 0, false,
       sdpo::log},
      {U::kSqrt, [](double x) { return std::sqrt(x); }, 0.01, 10, 0, false,
       sdpo::sqrt},
      {U::kRsqrt, [](double x) { return 1 / std::sqrt(x); }, 0.01, 10, 0, false,
       sdpo::rsqrt},
      {U::kSin, [](double x) { return std::sin(x); }, -6, 6, 0, false,
       sdpo::sin},
      {U::kCos, [](double x) { return std::cos(x); }, -6, 6, 0, false,
       sdpo::cos},
      {U::kTanh, [](double x) { return std::tanh(x); }, -4, 4, 0, false,
       sdpo::tanh},
      {U::kSigmoid, Sigmoid, -12, 12, 0, false, sdpo::sigmoid},
      {U::kSilu, Silu, -12, 12, 0, false, sdpo::silu},
      {U::kGelu, Gelu, -6, 6, 0, false, sdpo::gelu},
      {U::kGeluTanh, GeluTanh, -6, 6, 0, false, sdpo::gelu_tanh},
      {U::kSquare, [](double x) { return x * x; }, -3, 3, 0, true,
       sdpo::square},
      {U::kSign, [](double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); },
       -3, 3, 0, true},
      {U::kReciprocal, [](double x) { return 1 / x; }, 0.1, 10},
      {U::kSigmoidGrad, [](double x) { return Derivative(Sigmoid, x); }, -10,
       10, kFdTol},
      {U::kSiluGrad, [](double x) { return Derivative(Silu, x); }, -10, 10,
       kFdTol},
      {U::kGeluGrad, [](double x) { return Derivative(Gelu, x); }, -6, 6,
       kFdTol},
      {U::kGeluTanhGrad, [](double x) { return Derivative(GeluTanh, x); }, -6,
       6, kFdTol},
      {U::kTanhGradFromOutput, [](double y) { return 1 - y * y; }, -1, 1},
  };
  return cases;
}

const std::vector<BinaryOpCase> &BinaryOpCases() {
  using B = ops::BinaryOp;
  auto max_ref = [](double a, double b) {
    return std::isnan(a) || std::isnan(b) ? kNaN : std::max(a, b);
  };
  auto min_ref = [](double a, double b) {
    return std::isnan(a) || std::isnan(b) ? kNaN : std::min(a, b);
  };
  static const std::vector<BinaryOpCase> cases = {
      {B::kAdd, [](double a, double b) { return a + b; }, -3, 3, -3, 3, true,
       sdpo::add},
      {B::kSub, [](double a, double b) { return a - b; }, -3, 3, -3, 3, true,
       sdpo::sub},
      {B::kMul, [](double a, double b) { return a * b; }, -3, 3, -3, 3, true,
       sdpo::mul},
      // Divisors away from zero; integer division is not defined.
      {B::kDiv, [](double a, double b) { return a / b; }, -3, 3, 0.5, 2, false,
       sdpo::div},
      // Positive bases: real results and a defined gradient with respect to the
      // exponent.
      {B::kPow, [](double a, double b) { return std::pow(a, b); }, 0.2, 3, -2,
       2, true, sdpo::pow},
      {B::kMaximum, max_ref, -3, 3, -3, 3, true, sdpo::maximum, true},
      {B::kMinimum, min_ref, -3, 3, -3, 3, true, sdpo::minimum, true},
  };
  return cases;
}

void MapIntoDomain(Tensor &x, double lo, double hi, double kink) {
  SDPO_CHECK(x.dtype() == kF64 && x.is_contiguous(),
             "MapIntoDomain: needs a contiguous f64 tensor, got ", x.str());
  double *p = x.data<double>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = lo + (hi - lo) * 0.5 * (1 + std::tanh(p[i]));
    if (!std::isnan(kink) && std::abs(v - kink) < 0.1)
      v = v >= kink ? kink + 0.1 : kink - 0.1;
    p[i] = v;
  }
}

} // namespace sdpo::testing
