// Small-Wan CPU benchmark: forward and forward+backward of the Wan2.1 DiT at the
// config of bench/peers/wan_bench.py (dim 512, 8 heads, ffn 2048, 4 layers, text 512 x 4096,
// latent [16, 6, 26, 40] -> 1,560 tokens, batch 1, f32, t = 500, MSE loss against a random
// target), against that PyTorch peer in the same run, interleaved, each case in a fresh process
// (peak RSS per case).
//
//   bazel build -c opt //bench:wan_bench
//   bazel-bin/bench/wan_bench --rounds 2 --repeats 3            # ours + peer, interleaved
//   bazel-bin/bench/wan_bench --nopeer                           # ours only
//   bazel-bin/bench/wan_bench --case fwd_bwd --repeats 3         # one case, this process
//
// Flags: see --help.
// Output: one JSON line per measured case and a markdown summary (median of the per-round
// medians, min of the minima, ratio ours / peer of the medians).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autograd/ops.h"
#include "bench/proc_status.h"
#include "io/command_line.h"
#include "io/json.h"
#include "models/wan21/model.h"
#include "nn/init.h"
#include "tensor/ops.h"
#include "tensor/thread_pool.h"

ABSL_FLAG(std::string, case, "", "worker mode, one case in this process: fwd | fwd_bwd");
ABSL_FLAG(int, threads, 2, "CPU threads");
ABSL_FLAG(int, repeats, 3, "timed repeats per process");
ABSL_FLAG(int, warmup, 1, "warm-up repeats per process");
ABSL_FLAG(int, rounds, 2, "rounds (ours and the peer interleaved, each case in a fresh process)");
ABSL_FLAG(bool, peer, true, "run the PyTorch peer too (--nopeer: ours only)");
ABSL_FLAG(bool, recompute, false, "per-block recompute in fwd_bwd");
ABSL_FLAG(std::string, rope, "f64", "RoPE precision: f64 (official) | f32");
ABSL_FLAG(std::string, peer_env, "env",
          "unset: run the peer with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset");
ABSL_FLAG(std::string, python, "/usr/bin/python3", "the peer's Python");
ABSL_FLAG(std::string, peer_script, "",
          "the peer (default: bench/peers/wan_bench.py of the workspace)");

namespace {

using namespace sdpo;  // NOLINT

struct Args {
  std::string case_name;  // worker mode when set: fwd | fwd_bwd
  int threads, repeats, warmup, rounds;
  bool peer, recompute;
  std::string rope, peer_env, python, peer_script, self;
};

double MaxRssMib() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // KiB on Linux
}

wan21::WanConfig SmallConfig() {
  wan21::WanConfig c;
  c.dim = 512;
  c.ffn_dim = 2048;
  c.num_heads = 8;
  c.num_layers = 4;
  c.freq_dim = 256;
  c.text_dim = 4096;
  c.text_len = 512;
  return c;
}

// models.md section 5 (matmul FLOPs, 2 per MAC), as wan_peer.forward_flops.
double ForwardFlops(const wan21::WanConfig& c, double l) {
  const double lt = c.text_len, d = c.dim, ffn = c.ffn_dim;
  const double per_block = 8 * l * d * d + 4 * l * l * d + 4 * l * d * d + 4 * lt * d * d +
                           4 * l * lt * d + 4 * l * d * ffn;
  const double once = 2 * l * 64 * d + 2 * l * d * 64 + 2 * lt * (c.text_dim * d + d * d) +
                      2 * (c.freq_dim * d + d * d + d * 6 * d);
  return c.num_layers * per_block + once;
}

int Worker(const Args& a) {
  SetNumThreads(a.threads);
  const wan21::WanConfig cfg = SmallConfig();
  nn::SetInitSeed(1);
  wan21::WanModel model(cfg);
  model.SetRopeF64(a.rope == "f64");
  model.SetRecompute(a.recompute);
  const Shape latent = {16, 6, 26, 40};
  const int64_t tokens = 6 * 13 * 20;
  Tensor x = ops::RandomNormal(latent, 11, 0);
  Tensor ctx = ops::RandomNormal({cfg.text_len, cfg.text_dim}, 12, 0);
  Tensor t = Tensor::FromVector(std::vector<double>{500.0}, {1}, kF32);
  Tensor target = ops::RandomNormal(latent, 13, 0);
  const double rss_model = bench::ProcStatusMib("VmRSS:");
  const bool bwd = a.case_name == "fwd_bwd";
  auto params = model.Parameters();
  auto step = [&] {
    if (!bwd) {
      NoGradGuard no_grad;
      Tensor out = model.Forward({x}, t, {ctx});
      return;
    }
    for (Tensor& p : params) p.zero_grad();
    Tensor out = model.Forward({x}, t, {ctx});
    Tensor diff = sub(select(out, 0, 0), target);
    Tensor loss = mean(mul(diff, diff));
    Backward(loss);
  };
  for (int i = 0; i < a.warmup; ++i) step();
  std::vector<double> ts;
  for (int i = 0; i < a.repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    step();
    ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> sorted = ts;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted.size() % 2
                            ? sorted[sorted.size() / 2]
                            : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
  const double flops = (bwd ? 3 : 1) * ForwardFlops(cfg, tokens);
  std::vector<std::string> times;
  for (double v : ts) times.push_back(absl::StrCat(v));
  std::printf(
      "{\"name\": \"wan_small_%s\", \"impl\": \"sdpo\", \"config\": {\"dim\": %lld, \"heads\": "
      "%lld, \"layers\": %lld, \"ffn\": %lld, \"text_len\": %lld, \"text_dim\": %lld, "
      "\"latent\": [16, 6, 26, 40], \"tokens\": %lld, \"dtype\": \"float32\", \"rope\": "
      "\"%s\", \"recompute\": %s}, \"median_s\": %.6g, \"min_s\": %.6g, \"repeats\": %d, "
      "\"times_s\": [%s], \"gflop\": %.6g, \"gflops\": %.6g, \"peak_rss_mib\": %.1f, "
      "\"rss_after_build_mib\": %.1f, \"threads\": %d}\n",
      a.case_name.c_str(), static_cast<long long>(cfg.dim), static_cast<long long>(cfg.num_heads),
      static_cast<long long>(cfg.num_layers), static_cast<long long>(cfg.ffn_dim),
      static_cast<long long>(cfg.text_len), static_cast<long long>(cfg.text_dim),
      static_cast<long long>(tokens), a.rope == "f64" ? "float64" : "float32",
      a.recompute ? "true" : "false", median, sorted.front(), a.repeats,
      absl::StrJoin(times, ", ").c_str(), flops / 1e9, flops / median / 1e9, MaxRssMib(), rss_model,
      NumThreads());
  std::fflush(stdout);
  return 0;
}

// Runs a command, returns the last line of its stdout that starts with '{'.
std::string RunForJson(const std::string& cmd) {
  std::fprintf(stderr, "+ %s\n", cmd.c_str());
  FILE* p = popen(cmd.c_str(), "r");
  SDPO_CHECK(p != nullptr, "cannot run: ", cmd);
  std::string last;
  char buf[65536];
  while (std::fgets(buf, sizeof buf, p)) {
    std::string line(buf);
    if (!line.empty() && line[0] == '{') last = line;
  }
  const int rc = pclose(p);
  SDPO_CHECK(rc == 0 && !last.empty(), "command failed (status ", rc, "): ", cmd);
  while (!last.empty() && (last.back() == '\n' || last.back() == '\r')) last.pop_back();
  return last;
}

struct Stats {
  std::vector<double> medians, mins, rss;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int Parent(const Args& a) {
  std::map<std::string, Stats> ours, peer;
  const std::vector<std::string> cases = {"fwd", "fwd_bwd"};
  const std::string env_prefix =
      a.peer_env == "unset" ? "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE " : "";
  for (int r = 0; r < a.rounds; ++r) {
    for (const std::string& c : cases) {
      // Alternate which side goes first from round to round.
      for (int side = 0; side < 2; ++side) {
        const bool run_peer = (side == 0) == (r % 2 == 1);
        if (run_peer && !a.peer) continue;
        std::string line;
        if (run_peer) {
          line = RunForJson(absl::StrCat(env_prefix, a.python, " ", a.peer_script, " --worker ", c,
                                         " --threads ", a.threads, " --repeats ", a.repeats,
                                         " --warmup ", a.warmup, " --rope ",
                                         a.rope == "f64" ? "float64" : "float32"));
        } else {
          line = RunForJson(absl::StrCat(a.self, " --case ", c, " --threads ", a.threads,
                                         " --repeats ", a.repeats, " --warmup ", a.warmup,
                                         " --rope ", a.rope, a.recompute ? " --recompute" : ""));
        }
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
        json::Value v = json::Parse(line, run_peer ? "peer output" : "worker output");
        Stats& s = (run_peer ? peer : ours)[c];
        s.medians.push_back(v.at("median_s").as_double());
        s.mins.push_back(v.at("min_s").as_double());
        s.rss.push_back(v.at("peak_rss_mib").as_double());
      }
    }
  }
  std::printf(
      "\n| case | ours median s | ours min s | ours peak RSS MiB | peer median s | "
      "peer min s | peer peak RSS MiB | ratio ours/peer (median) |\n"
      "|---|---|---|---|---|---|---|---|\n");
  for (const std::string& c : cases) {
    const Stats& o = ours[c];
    std::printf("| %s | %.3f | %.3f | %.0f |", c.c_str(), Median(o.medians),
                *std::min_element(o.mins.begin(), o.mins.end()),
                *std::max_element(o.rss.begin(), o.rss.end()));
    if (a.peer) {
      const Stats& p = peer[c];
      std::printf(" %.3f | %.3f | %.0f | %.2f |\n", Median(p.medians),
                  *std::min_element(p.mins.begin(), p.mins.end()),
                  *std::max_element(p.rss.begin(), p.rss.end()),
                  Median(o.medians) / Median(p.medians));
    } else {
      std::printf(" - | - | - | - |\n");
    }
  }
  return 0;
}

int Main(char** argv) {
  Args a;
  a.self = argv[0];
  if (const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY")) {
    a.peer_script = std::string(ws) + "/bench/peers/wan_bench.py";
  } else {
    a.peer_script = "bench/peers/wan_bench.py";
  }
  a.case_name = absl::GetFlag(FLAGS_case);
  a.threads = absl::GetFlag(FLAGS_threads);
  a.repeats = absl::GetFlag(FLAGS_repeats);
  a.warmup = absl::GetFlag(FLAGS_warmup);
  a.rounds = absl::GetFlag(FLAGS_rounds);
  a.peer = absl::GetFlag(FLAGS_peer);
  a.recompute = absl::GetFlag(FLAGS_recompute);
  a.rope = absl::GetFlag(FLAGS_rope);
  a.peer_env = absl::GetFlag(FLAGS_peer_env);
  a.python = absl::GetFlag(FLAGS_python);
  if (!absl::GetFlag(FLAGS_peer_script).empty()) a.peer_script = absl::GetFlag(FLAGS_peer_script);
  SDPO_CHECK(a.rope == "f64" || a.rope == "f32", "--rope must be f64 or f32");
  if (!a.case_name.empty()) {
    SDPO_CHECK(a.case_name == "fwd" || a.case_name == "fwd_bwd", "--case must be fwd or fwd_bwd");
    return Worker(a);
  }
  return Parent(a);
}

}  // namespace

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv,
                         "the small-Wan CPU benchmark against its PyTorch peer "
                         "(bench/wan_bench.cc)");
  return sdpo::RunReportingErrors("wan_bench", [&] { return Main(argv); });
}
