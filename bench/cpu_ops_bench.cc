// CPU engine-op benchmark: f32 matmul (and a bf16-weight projection), layer_norm and attention
// forward(+backward).
// Prints one JSON line per case with the same names as bench/peers/cpu_ops.py so that
// bench/compare_cpu_ops.py can pair them. Usage:
//   bazel run -c opt //bench:cpu_ops_bench -- --threads=2 [--only=matmul] [--quick]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "autograd/ops.h"
#include "io/command_line.h"
#include "tensor/thread_pool.h"

ABSL_FLAG(int, threads, 2, "CPU threads");
ABSL_FLAG(std::string, only, "", "comma-separated case-name prefixes");
ABSL_FLAG(bool, quick, false, "fewer repeats (smoke test)");

namespace sdpo {
namespace {

struct Stats {
  double median, min;
};

Stats Time(const std::function<void()>& fn, int repeats, int warmup = 2) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ts;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ts.begin(), ts.end());
  return {ts[ts.size() / 2], ts[0]};
}

void Report(const std::string& name, const std::string& shape, Stats s, double flops) {
  std::printf(
      "{\"name\": \"%s\", \"impl\": \"sdpo\", \"shape\": \"%s\", \"median_s\": %.6f, "
      "\"min_s\": %.6f, \"gflops\": %s, \"threads\": %d}\n",
      name.c_str(), shape.c_str(), s.median, s.min,
      flops > 0 ? std::to_string(flops / s.median / 1e9).c_str() : "null", NumThreads());
  std::fflush(stdout);
}

bool Want(const std::string& name) {
  std::string only = absl::GetFlag(FLAGS_only);
  if (only.empty()) return true;
  for (absl::string_view p : absl::StrSplit(only, ',', absl::SkipEmpty())) {
    if (absl::StartsWith(name, p)) return true;
  }
  return false;
}

int Rep(int n) { return absl::GetFlag(FLAGS_quick) ? std::max(2, n / 3) : n; }

void Run() {
  uint64_t seed = 1;
  for (auto [m, n, k, reps] :
       std::vector<std::array<int64_t, 4>>{{1024, 1024, 1024, 20}, {4096, 1536, 1536, 10}}) {
    std::string name =
        "matmul_f32_" + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
    if (!Want(name)) continue;
    Tensor a = ops::RandomNormal({m, k}, seed++, 0), b = ops::RandomNormal({k, n}, seed++, 0);
    Report(name, "", Time([&] { ops::Matmul(a, b); }, Rep(reps)), 2.0 * m * n * k);
  }

  // A projection of the umT5 FFN at 512 tokens, y = x W^T with W [10240, 4096] stored in bf16:
  // converted as the product goes (the matmul's mixed path), converted whole first, and the f32
  // weight the official f32 module multiplies.
  {
    const int64_t m = 512, n = 10240, k = 4096;
    const std::string shape = "x[512, 4096] W[10240, 4096]";
    Tensor x = ops::RandomNormal({m, k}, seed++, 0);
    Tensor w32 = ops::RandomNormal({n, k}, seed++, 0), w16 = ops::Cast(w32, kBF16);
    if (Want("linear_f32_bf16w")) {
      Report("linear_f32_bf16w", shape,
             Time([&] { ops::Matmul(x, ops::Transpose(w16, 0, 1)); }, Rep(6)), 2.0 * m * n * k);
    }
    if (Want("linear_f32_bf16w_castfirst")) {
      Report("linear_f32_bf16w_castfirst", shape,
             Time([&] { ops::Matmul(x, ops::Transpose(ops::Cast(w16, kF32), 0, 1)); }, Rep(6)),
             2.0 * m * n * k);
    }
    if (Want("linear_f32_f32w")) {
      Report("linear_f32_f32w", shape,
             Time([&] { ops::Matmul(x, ops::Transpose(w32, 0, 1)); }, Rep(6)), 2.0 * m * n * k);
    }
  }

  const int64_t rows = 8192, d = 1536;
  if (Want("layer_norm")) {
    Tensor x = ops::RandomNormal({rows, d}, seed++, 0);
    Tensor w = ops::RandomNormal({d}, seed++, 0), b = ops::RandomNormal({d}, seed++, 0);
    Tensor gy = ops::RandomNormal({rows, d}, seed++, 0);
    Report("layer_norm_f32_fwd", "[8192, 1536]",
           Time([&] { ops::LayerNorm(x, w, b, 1e-6); }, Rep(20)), 0);
    x.set_requires_grad(true);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    Report("layer_norm_f32_fwd_bwd", "[8192, 1536]",
           Time(
               [&] {
                 x.zero_grad();
                 w.zero_grad();
                 b.zero_grad();
                 Backward(layer_norm(x, w, b, 1e-6), gy);
               },
               Rep(15)),
           0);
  }

  const int64_t heads = 12, L = 1024, hd = 128;
  if (Want("attention")) {
    double core = 4.0 * heads * L * L * hd;
    Tensor q = ops::RandomNormal({1, heads, L, hd}, seed++, 0);
    Tensor k = ops::RandomNormal({1, heads, L, hd}, seed++, 0);
    Tensor v = ops::RandomNormal({1, heads, L, hd}, seed++, 0);
    Tensor go = ops::RandomNormal({1, heads, L, hd}, seed++, 0);
    Report("attention_math_f32_fwd", "B1 L1024 H12 D128",
           Time([&] { ops::Attention(q, k, v, Tensor(), std::nullopt); }, Rep(10)), core);
    for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
    Report("attention_math_f32_fwd_bwd", "B1 L1024 H12 D128",
           Time(
               [&] {
                 for (Tensor* t : {&q, &k, &v}) t->zero_grad();
                 Backward(attention(q, k, v), go);
               },
               Rep(8)),
           3.0 * core);
  }
  if (Want("attention_t5")) {  // umT5 at 512 tokens: 64 heads of 64, unscaled, additive bias
    const int64_t h = 64, l = 512, dh = 64;
    Tensor q = ops::RandomNormal({1, h, l, dh}, seed++, 0);
    Tensor k = ops::RandomNormal({1, h, l, dh}, seed++, 0);
    Tensor v = ops::RandomNormal({1, h, l, dh}, seed++, 0);
    Tensor bias = ops::RandomNormal({1, h, l, l}, seed++, 0);
    Report("attention_t5_f32_fwd", "B1 L512 H64 D64 bias",
           Time([&] { ops::Attention(q, k, v, bias, 1.0); }, Rep(10)), 4.0 * h * l * l * dh);
  }
}

}  // namespace
}  // namespace sdpo

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv, "CPU engine-op benchmark (matmul, layer_norm, attention)");
  sdpo::SetNumThreads(absl::GetFlag(FLAGS_threads));
  sdpo::Run();
  return 0;
}
