// The Wan2.1 forward against the official implementation's tensors
// (shared/fixtures/wan21/tiny_a.case{1,2,3}): every stored intermediate and output within
// relative L2 1e-5 in f32, and the f64 forward against the official f64 outputs.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/models/wan21/wan_test_util.h"

namespace sdpo::wan21 {
namespace {

using testing::Case;
using testing::Load;
using testing::LoadCase;
using testing::OpenFixture;
using testing::RelL2;

constexpr double kTol = 1e-5;

class WanFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(WanFixtureTest, OutputsAndEveryIntermediate) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  const std::string name = GetParam();
  auto f = OpenFixture("tiny_a." + name + ".safetensors");
  auto model = testing::TinyModel();
  Case c = LoadCase(*f);
  Capture cap;
  ForwardOptions opt;
  opt.seq_len = c.seq_len;
  opt.capture = &cap;
  std::vector<Tensor> out;
  {
    NoGradGuard no_grad;
    out = model->ForwardList(c.x, c.t, c.context, opt);
  }
  ASSERT_EQ(static_cast<int64_t>(out.size()), c.batch);

  // grid sizes and token counts as the official model computed them
  std::vector<double> grids = Load(*f, "grid_sizes").ToVector();
  std::vector<double> lens = Load(*f, "seq_lens").ToVector();
  for (int64_t i = 0; i < c.batch; ++i) {
    const int64_t n = static_cast<int64_t>(lens[i]);
    EXPECT_EQ(out[i].shape(), c.x[i].shape());
    EXPECT_EQ(c.x[i].size(1), grids[i * 3 + 0]);
    EXPECT_EQ(c.x[i].size(2) / 2, grids[i * 3 + 1]);
    EXPECT_EQ(c.x[i].size(3) / 2, grids[i * 3 + 2]);
    EXPECT_EQ(c.x[i].size(1) * c.x[i].size(2) * c.x[i].size(3) / 4, n);
  }

  std::map<std::string, double> worst;
  auto check = [&](const std::string& key, const Tensor& got, const Tensor& ref) {
    double e = RelL2(got, ref);
    worst[key] = std::max(worst[key], e);
    EXPECT_LE(e, kTol) << name << " " << key;
  };
  // per-sample tensors (batched capture [B, S, ...] trimmed to the sample's tokens)
  std::vector<std::string> per_token = {
      "patch_embed",      "block0_sa_in",     "block0_sa_q",    "block0_sa_k",    "block0_sa_v",
      "block0_sa_q_rope", "block0_sa_k_rope", "block0_sa_attn", "block0_sa_out",  "block0_ca_in",
      "block0_ca_attn",   "block0_ca_out",    "block0_ffn_in",  "block0_ffn_out", "block0_out",
      "block1_out",       "head_out"};
  for (const std::string& key : per_token) {
    ASSERT_TRUE(cap.count(key)) << key;
    for (int64_t i = 0; i < c.batch; ++i) {
      const std::string ref_name = absl::StrCat(key, "_", i);
      Tensor ref = Load(*f, ref_name);
      const int64_t n = static_cast<int64_t>(lens[i]);
      Tensor got = ops::Reshape(ops::Narrow(ops::Select(cap.at(key), 0, i), 0, 0, n), ref.shape());
      check(key, got, ref);
    }
  }
  for (const char* key : {"time_sinusoid", "e", "e0", "context_emb"}) {
    check(key, cap.at(key), Load(*f, key));
  }
  double out_err = 0, out_err64 = 0;
  for (int64_t i = 0; i < c.batch; ++i) {
    check("out", out[i], Load(*f, absl::StrCat("out_", i)));
    out_err = std::max(out_err, RelL2(out[i], Load(*f, absl::StrCat("out_", i))));
    out_err64 = std::max(out_err64, RelL2(out[i], Load(*f, absl::StrCat("out_", i, "_f64"), kF64)));
  }
  EXPECT_LE(out_err64, kTol);
  std::string report = absl::StrCat(name, ": out rel L2 vs f32 ", out_err, ", vs f64 ", out_err64);
  std::string worst_key;
  double worst_val = 0;
  for (const auto& [k, e] : worst) {
    if (e > worst_val) worst_val = e, worst_key = k;
  }
  absl::StrAppend(&report, "; worst intermediate ", worst_key, " ", worst_val);
  std::printf("[parity] %s\n", report.c_str());
  for (const auto& [k, e] : worst)
    std::printf("[parity]   %s %s %.3g\n", name.c_str(), k.c_str(), e);
}

TEST_P(WanFixtureTest, Float64MatchesOfficialFloat64) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  const std::string name = GetParam();
  auto f = OpenFixture("tiny_a." + name + ".safetensors");
  auto model = testing::TinyModel();
  testing::ToF64(*model);
  Case c = LoadCase(*f, kF64);
  ForwardOptions opt;
  opt.seq_len = c.seq_len;
  NoGradGuard no_grad;
  std::vector<Tensor> out = model->ForwardList(c.x, c.t, c.context, opt);
  double worst = 0;
  for (int64_t i = 0; i < c.batch; ++i) {
    EXPECT_EQ(out[i].dtype(), kF64);
    worst = std::max(worst, RelL2(out[i], Load(*f, absl::StrCat("out_", i, "_f64"), kF64)));
  }
  std::printf("[parity] %s f64 model: out rel L2 vs official f64 %.3g\n", name.c_str(), worst);
  EXPECT_LE(worst, 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Cases, WanFixtureTest, ::testing::Values("case1", "case2", "case3"));

// Padding never leaks into valid tokens: extra padding, and each sample alone, give the same
// outputs (bitwise in the official code; here within f32 rounding of a different GEMM split).
TEST(WanFixtureTest, PaddingAndBatchingDoNotChangeOutputs) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto f = OpenFixture("tiny_a.case3.safetensors");
  auto model = testing::TinyModel();
  Case c = LoadCase(*f);
  NoGradGuard no_grad;
  ForwardOptions opt;
  opt.seq_len = c.seq_len;
  std::vector<Tensor> base = model->ForwardList(c.x, c.t, c.context, opt);
  opt.seq_len = c.seq_len + 5;
  std::vector<Tensor> padded = model->ForwardList(c.x, c.t, c.context, opt);
  for (int64_t i = 0; i < c.batch; ++i) {
    EXPECT_LE(RelL2(padded[i], base[i]), 1e-6) << i;
    std::vector<Tensor> alone =
        model->ForwardList({c.x[i]}, ops::Narrow(c.t, 0, i, 1), {c.context[i]}, ForwardOptions());
    EXPECT_LE(RelL2(alone[0], base[i]), 1e-6) << i;
    EXPECT_LE(RelL2(alone[0], Load(*f, absl::StrCat("out_", i))), kTol) << i;
  }
}

// The equal-size batched path ([B, L, dim] GEMMs, stacked output) equals the list path.
TEST(WanFixtureTest, StackedForwardEqualsList) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto f = OpenFixture("tiny_a.case2.safetensors");
  auto model = testing::TinyModel();
  Case c = LoadCase(*f);
  NoGradGuard no_grad;
  Tensor stacked = model->Forward(c.x, c.t, c.context);
  ASSERT_EQ(stacked.shape(), Shape({2, 16, 2, 4, 4}));
  for (int64_t i = 0; i < c.batch; ++i) {
    EXPECT_LE(RelL2(ops::Select(stacked, 0, i), Load(*f, absl::StrCat("out_", i))), kTol);
  }
  models::DiffusionModel& dm = *model;
  EXPECT_EQ(dm.family(), ScheduleFamily::kFlow);
  std::vector<Tensor> list = dm.ForwardList(c.x, c.t, c.context);
  for (int64_t i = 0; i < c.batch; ++i) {
    EXPECT_LE(RelL2(list[i], ops::Select(stacked, 0, i)), 1e-6);
  }
  // Forward rejects different sizes (ForwardList pads them).
  auto f3 = OpenFixture("tiny_a.case3.safetensors");
  Case c3 = LoadCase(*f3);
  try {
    model->Forward(c3.x, c3.t, c3.context);
    ADD_FAILURE() << "no error for different latent sizes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ForwardList"), std::string::npos) << e.what();
  }
}

TEST(WanFixtureTest, BadInputsAreClearErrors) {
  SDPO_SKIP_WITHOUT_FIXTURES();
  auto model = testing::TinyModel();
  NoGradGuard no_grad;
  Tensor t = Tensor::FromVector(std::vector<double>{500.0}, {1});
  auto expect_error = [&](const std::vector<Tensor>& x, const Tensor& tt,
                          const std::vector<Tensor>& ctx, const std::string& part) {
    try {
      model->ForwardList(x, tt, ctx);
      ADD_FAILURE() << "no error, expected one mentioning " << part;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  Tensor x = Tensor::Zeros({16, 1, 4, 4});
  Tensor ctx = Tensor::Zeros({3, 48});
  expect_error({Tensor::Zeros({16, 1, 3, 4})}, t, {ctx}, "multiples of the patch");
  expect_error({Tensor::Zeros({8, 1, 4, 4})}, t, {ctx}, "must be [16, F, H, W]");
  expect_error({x}, t, {Tensor::Zeros({17, 48})}, "more than text_len 16");
  expect_error({x}, t, {Tensor::Zeros({3, 40})}, "must be [L, 48]");
  expect_error({x}, Tensor::FromVector(std::vector<double>{1, 2}, {2}), {ctx}, "timesteps");
  ForwardOptions opt;
  opt.seq_len = 2;
  try {
    model->ForwardList({x}, t, {ctx}, opt);
    ADD_FAILURE() << "no error for a short seq_len";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("seq_len 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sdpo::wan21
