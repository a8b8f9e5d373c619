// The T5 encoder against the official Wan `T5Encoder` tensors: umT5
// (shared/fixtures/umt5, per-block position bias, key mask) and T5 v1.1
// (shared/fixtures/t5, shared position bias, all-ones or real mask) from the
// official-name and the transformers-name weights. Every recorded intermediate
// and the output within relative L2 1e-5 in f32, the f64 forward within 1e-9 of
// the official f64 outputs, and the relative-position buckets exactly equal.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/umt5/checkpoint.h"
#include "models/umt5/model.h"
#include "tensor/cpu/dnnl_gemm.h"
#include "tests/models/fixture_util.h"

namespace sdpo::umt5 {
namespace {

using testing::FixturePath;
using testing::LoadFixtureTensor;
using testing::OpenFixture;
using testing::RelL2;

// float32 against float64 measured 3e-7 (umT5) and 1.2e-6 (T5) in relative L2
// on these cases.
constexpr double kF32Tol = 1e-5;
// Our f64 against the official f64: the same sums in another order (~1e-15
// measured).
constexpr double kF64Tol = 1e-9;

struct Param {
  std::string dir;      // "umt5" or "t5"
  std::string weights;  // file in dir
  std::string name;     // case name
};

std::string Label(const ::testing::TestParamInfo<Param>& info) {
  std::string w = info.param.weights == "tiny_a.weights_hf.safetensors" ? "hf" : "official";
  return absl::StrCat(info.param.dir, "_", w, "_", info.param.name);
}

class EncoderFixtureTest : public ::testing::TestWithParam<Param> {};

TEST_P(EncoderFixtureTest, OutputEveryIntermediateAndBuckets) {
  const Param& p = GetParam();
  const std::string weights = FixturePath(p.dir + "/" + p.weights);
  if (weights.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  auto f = OpenFixture(absl::StrCat(p.dir, "/tiny_a.", p.name, ".safetensors"));
  LoadOptions options;
  options.config = T5Config::FromFile(FixturePath(p.dir + "/tiny_a.config.json"));
  LoadReport report;
  auto encoder = LoadEncoder(weights, options, &report);
  EXPECT_EQ(report.format, p.weights == "tiny_a.weights_hf.safetensors" ? NameFormat::kTransformers
                                                                        : NameFormat::kOfficial);

  const Tensor ids = LoadFixtureTensor(*f, "ids");
  const Tensor mask = LoadFixtureTensor(*f, "mask");
  const int64_t len = ids.size(1);

  // buckets, exactly
  const Tensor buckets = RelativePositionBuckets(len, len, 32, 128);
  EXPECT_EQ(buckets.ToVector(), LoadFixtureTensor(*f, "rel_buckets").ToVector());

  Activations acts;
  Tensor hidden;
  {
    NoGradGuard no_grad;
    hidden = encoder->Forward(ids, mask, &acts);
  }
  int checked = 0;
  double worst = 0;
  for (const TensorEntry& e : f->tensors()) {
    if (e.name.rfind("act.", 0) != 0) continue;
    const std::string key = e.name.substr(4);
    ASSERT_TRUE(acts.count(key)) << "not recorded: " << key;
    const double err = RelL2(acts[key], LoadFixtureTensor(*f, e.name));
    EXPECT_LE(err, kF32Tol) << p.name << " " << key;
    worst = std::max(worst, err);
    ++checked;
  }
  EXPECT_GE(checked, 6);
  const double err32 = RelL2(hidden, LoadFixtureTensor(*f, "hidden"));
  EXPECT_LE(err32, kF32Tol);

  // CogVideoX passes no mask: the same as an all-ones mask.
  const std::vector<double> m = mask.ToVector();
  if (std::all_of(m.begin(), m.end(), [](double v) { return v == 1; })) {
    NoGradGuard no_grad;
    EXPECT_EQ(encoder->Forward(ids, Tensor()).ToVector(), hidden.ToVector());
  }

  // The trimmed contexts (umT5 cases record them).
  std::vector<Tensor> contexts = TrimToTokens(hidden, mask);
  for (size_t i = 0; i < contexts.size(); ++i) {
    const std::string key = absl::StrCat("context_", i);
    if (!f->contains(key)) continue;
    const Tensor ref = LoadFixtureTensor(*f, key);
    ASSERT_EQ(contexts[i].shape(), ref.shape()) << key;
    EXPECT_LE(RelL2(contexts[i], ref), kF32Tol) << key;
  }

  // f64 against the official f64.
  encoder->SetComputeDType(kF64);
  Tensor hidden64;
  {
    NoGradGuard no_grad;
    hidden64 = encoder->Forward(ids, mask);
  }
  EXPECT_EQ(hidden64.dtype(), kF64);
  const double err64 = RelL2(hidden64, LoadFixtureTensor(*f, "hidden_f64", kF64));
  EXPECT_LE(err64, kF64Tol);
  std::printf(
      "%s %s: %d intermediates (worst rel L2 %.2e), hidden f32 %.2e, "
      "f64 %.2e\n",
      p.dir.c_str(), p.name.c_str(), checked, worst, err32, err64);
}

// bf16 projection inputs (ProjectionInputs::kBF16) against the same f32 fixtures. Derivation of
// the bound: bf16 keeps 8 significant bits, so rounding x and W costs each element a relative
// error of at most u = 2^-8, uniform in [-u, u] (rms u / sqrt(3)). One projection
// y_j = sum_i x_i W_ji then errs by sum_i x_i W_ji (e_x,i + e_W,ji): independent zero-mean terms,
// rms sqrt(2/3) u sqrt(sum_i (x_i W_ji)^2), which is sqrt(2/3) u |y_j| for products of random
// sign (f32 accumulation adds ~1e-7, negligible). A block has S = 6 such stages on the way to
// its output (q, k, v, o; gate and fc1; fc2), the errors of independent stages add in
// quadrature, and the residual stream and the RMS norms carry relative errors through without
// growing them; so after L blocks the output errs by about sqrt(6 L) sqrt(2/3) u in relative L2
// (1.35e-2 for the fixtures' L = 3), and a factor 2 covers the softmax (unscaled scores: a score
// error e moves its weight by about e) and sums that cancel: bound 2.7e-2. The lower bound (a
// tenth of one stage's error) shows that the mode rounds at all.
double Bf16Bound(int64_t layers) {
  const double u = 1.0 / 256;
  return 2 * std::sqrt(6.0 * layers) * std::sqrt(2.0 / 3.0) * u;
}

TEST_P(EncoderFixtureTest, Bf16ProjectionInputsWithinTheirRoundingBound) {
  const Param& p = GetParam();
  const std::string weights = FixturePath(p.dir + "/" + p.weights);
  if (weights.empty()) GTEST_SKIP() << testing::FixturesNotFoundMessage();
  auto f = OpenFixture(absl::StrCat(p.dir, "/tiny_a.", p.name, ".safetensors"));
  LoadOptions options;
  options.config = T5Config::FromFile(FixturePath(p.dir + "/tiny_a.config.json"));
  auto encoder = LoadEncoder(weights, options);
  const Tensor ids = LoadFixtureTensor(*f, "ids"), mask = LoadFixtureTensor(*f, "mask");
  const Tensor expected = LoadFixtureTensor(*f, "hidden");
  const double bound = Bf16Bound(encoder->config().num_layers);
  const double one_stage = std::sqrt(2.0 / 3.0) / 256;
  NoGradGuard no_grad;
  encoder->SetProjectionInputs(ProjectionInputs::kBF16);
  const Tensor hidden = encoder->Forward(ids, mask);
  EXPECT_EQ(hidden.dtype(), kF32);
  const double err = RelL2(hidden, expected);
  EXPECT_LE(err, bound);
  EXPECT_GE(err, 0.1 * one_stage);
  // The converting fallback (no oneDNN) holds the same bound. Its products differ from oneDNN's
  // only in f32 summation order (~1e-7), but the next projection rounds its input to bf16, so
  // such a difference flips the rounding of a few elements by one bf16 ulp and the two runs
  // end up ~1e-4 .. 1e-3 apart: each is compared with the fixture, not with the other.
  cpu::SetDnnlGemmEnabled(false);
  const Tensor fallback = encoder->Forward(ids, mask);
  cpu::SetDnnlGemmEnabled(true);
  EXPECT_LE(RelL2(fallback, expected), bound);
  EXPECT_GE(RelL2(fallback, expected), 0.1 * one_stage);
  // The whole module in bf16 (what the official pipeline runs), for comparison only.
  encoder->SetProjectionInputs(ProjectionInputs::kF32);
  encoder->SetComputeDType(kBF16);
  const double err_bf16_module = RelL2(encoder->Forward(ids, mask), expected);
  std::printf(
      "%s %s: bf16 projection inputs %.2e (bound %.2e), fallback vs oneDNN %.2e, "
      "whole module in bf16 %.2e\n",
      p.dir.c_str(), p.name.c_str(), err, bound, RelL2(fallback, hidden), err_bf16_module);
}

std::vector<Param> Params() {
  std::vector<Param> out;
  for (const char* c : {"case1", "case2", "case3", "case4"}) {
    out.push_back({"umt5", "tiny_a.weights.safetensors", c});
  }
  for (const char* w : {"tiny_a.weights.safetensors", "tiny_a.weights_hf.safetensors"}) {
    for (const char* c : {"case1", "case2", "case3", "case4", "case5"}) {
      out.push_back({"t5", w, c});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, EncoderFixtureTest, ::testing::ValuesIn(Params()), Label);

}  // namespace
}  // namespace sdpo::umt5
