// The T5 encoder against the official Wan `T5Encoder` tensors: umT5
// (shared/fixtures/umt5, per-block position bias, key mask) and T5 v1.1
// (shared/fixtures/t5, shared position bias, all-ones or real mask) from the
// official-name and the transformers-name weights. Every recorded intermediate
// and the output within relative L2 1e-5 in f32, the f64 forward within 1e-9 of
// the official f64 outputs, and the relative-position buckets exactly equal.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/umt5/checkpoint.h"
#include "models/umt5/model.h"
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
