// cuda_check wan_step [--f=6 --h=60 --w=104] [--recompute] [--lora] [--rope_f64] [--profile]
//                     [--steps=5 --warmup=2 --budget_s=100 --pairs=1 --rank=64]
//                     [--config=1.3b] [--json FILE] [--label NAME]
// (flags: tools/gpu/cuda_check_main.cc). One SDPO step of Wan2.1 (bench/cuda/wan_step.h) on cuda:0,
// bf16 compute / f32 master. Prints one JSON line (also appended to --json): median s/step, model
// TFLOP per step (models.md), MFU vs 989 TFLOP/s (H100/H200 dense bf16), peak device memory of the
// caching allocator. A failure prints a JSON line with "ok": false and the error, and exits 2.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "bench/cuda/cuda_bench.h"
#include "bench/cuda/wan_step.h"
#include "tensor/cuda/cuda_available.h"
#ifdef SDPO_HAVE_CUDA_BACKEND
#include "tensor/cuda/allocator.h"
#include "tensor/cuda/cuda_runtime.h"
#endif

namespace {

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      out += ' ';
    } else {
      out += ch;
    }
  }
  return out;
}

// A JSON number, or null when not finite.
std::string Num(double v) {
  if (!std::isfinite(v)) return "null";
  char b[32];
  std::snprintf(b, sizeof(b), "%.6g", v);
  return b;
}

}  // namespace

int RunWanStepBench(WanStepCliOptions options) {
  sdpo::bench::WanStepOptions& o = options.step;
  o.device = sdpo::Device::CUDA(0);
  const std::string& json_path = options.json;
  const std::string& preset = options.preset;
  std::string label = options.label;
  const std::string mode = std::string(o.lora ? "lora" : "full") + (o.recompute ? "+recompute" : "");
  if (label.empty()) {
    label = mode + " " + std::to_string(o.frames) + "x" + std::to_string(o.height) + "x" +
            std::to_string(o.width);
  }
  auto emit = [&](const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    if (!json_path.empty()) {
      if (FILE* f = std::fopen(json_path.c_str(), "a")) {
        std::fprintf(f, "%s\n", line.c_str());
        std::fclose(f);
      }
    }
  };
  const std::string head = "{\"name\": \"wan_step\", \"label\": \"" + JsonEscape(label) +
                           "\", \"mode\": \"" + mode + "\", \"latent\": [" +
                           std::to_string(o.frames) + ", " + std::to_string(o.height) + ", " +
                           std::to_string(o.width) + "]";
  if (!sdpo::CudaAvailable()) {
    emit(head + ", \"ok\": false, \"error\": \"" + JsonEscape(sdpo::CudaUnavailableReason()) +
         "\"}");
    return 2;
  }
#ifdef SDPO_HAVE_CUDA_BACKEND
  o.sync = [] { sdpo::cuda::SynchronizeStream(0); };
  sdpo::cuda::ResetPeakStats(0);
#endif
  o.log = [](const std::string& s) {
    std::fprintf(stderr, "wan_step: %s\n", s.c_str());
    std::fflush(stderr);
  };
  char buf[1024];
  try {
    o.config = sdpo::wan21::WanConfig::Preset(preset);
    sdpo::bench::WanStepResult r = sdpo::bench::RunWanStep(o);
    const int64_t samples = 2 * o.pairs;
    const double flops = sdpo::bench::WanStepFlops(o.config, r.tokens_per_sample, samples);
    double peak_alloc = 0, peak_reserved = 0;
#ifdef SDPO_HAVE_CUDA_BACKEND
    sdpo::cuda::AllocatorStats st = sdpo::cuda::GetAllocatorStats(0);
    peak_alloc = static_cast<double>(st.peak_allocated_bytes) / (1 << 30);
    peak_reserved = static_cast<double>(st.peak_reserved_bytes) / (1 << 30);
#endif
    const int timed = static_cast<int>(r.step_s.size()) - r.warmup_done;
    std::snprintf(buf, sizeof(buf),
                  ", \"ok\": true, \"tokens_per_sample\": %lld, \"samples\": %lld, "
                  "\"params\": %lld, \"trainable\": %lld, \"warmup\": %d, \"steps\": %d, "
                  "\"setup_s\": %.2f, \"first_step_s\": %.4f, \"median_s\": %.4f, "
                  "\"min_s\": %.4f, \"tflop_per_step\": %.2f, \"tflops\": %.1f, "
                  "\"mfu\": %.4f, \"peak_allocated_gib\": %.2f, \"peak_reserved_gib\": %.2f, "
                  "\"plan_gib\": %.2f, \"loss\": %s, \"grad_norm\": %s}",
                  static_cast<long long>(r.tokens_per_sample), static_cast<long long>(samples),
                  static_cast<long long>(r.num_parameters),
                  static_cast<long long>(r.num_trainable), r.warmup_done, timed, r.setup_s,
                  r.step_s.front(), r.median_s, r.min_s, flops / 1e12,
                  flops / r.median_s / 1e12, flops / r.median_s / 989e12, peak_alloc,
                  peak_reserved, r.plan.total() / (1 << 30), Num(r.losses.back()).c_str(),
                  Num(r.grad_norms.back()).c_str());
    emit(head + buf);
    if (!r.profile.empty()) {
      std::fprintf(stderr, "wan_step: kernel profile of one extra step (%s)\n%s", label.c_str(),
                   r.profile.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    emit(head + ", \"ok\": false, \"error\": \"" + JsonEscape(e.what()).substr(0, 600) + "\"}");
    return 2;
  }
}
