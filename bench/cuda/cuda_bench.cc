// CUDA micro-benchmarks, one JSON line per measurement on stdout (and the --json file):
//   gemm_bf16_8192       TFLOP/s of an 8192^3 bf16 GEMM (cuBLASLt)
//   copy_d2d             GB/s (bytes read + written) of a 1 GiB device-to-device copy
//   add_bf16             GB/s of an elementwise bf16 add (our kernel, 3 x 2 bytes/element)
//   attn_{fwd,bwd,fwdbwd}_L{4096,16384}  TFLOP/s of bf16 attention, B=1, H=12, D=128
//                        (flops: forward 4*B*H*L^2*D, backward 2.5x forward); the auto path
//   attn_cudnn_*         the same, forced onto cuDNN's fused attention (path 3)
//   attn_tc_*            the same, forced onto our tensor-core kernels (path 2)
//   layer_norm_{fwd,bwd} GB/s of LayerNorm over bf16 [32760, 1536] (bytes read + written)
// Inputs are random (never zeros); each figure is the median of timed repetitions after a
// warm-up, timed with CUDA events on the backend's stream.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench/cuda/cuda_bench.h"
#include "tensor/cuda/cuda_available.h"

#if defined(SDPO_HAVE_CUDA_BACKEND)
#include "tensor/cuda/cuda_ops.h"
#include "tensor/cuda/cuda_runtime.h"
#include "tensor/ops.h"

namespace sdpo {
namespace {

FILE* g_json = nullptr;

void Emit(const std::string& name, double value, const char* unit, const std::string& extra) {
  char line[512];
  std::snprintf(line, sizeof(line),
                "{\"impl\": \"sdpo\", \"name\": \"%s\", \"value\": %.4f, \"unit\": \"%s\"%s}",
                name.c_str(), value, unit, extra.c_str());
  std::printf("%s\n", line);
  std::fflush(stdout);
  if (g_json) {
    std::fprintf(g_json, "%s\n", line);
    std::fflush(g_json);
  }
}

void EmitError(const std::string& name, const std::string& what) {
  std::string msg = what;
  for (char& c : msg) {
    if (c == '"' || c == '\\' || c == '\n') c = ' ';
  }
  Emit(name, 0.0, "error", ", \"error\": \"" + msg.substr(0, 300) + "\"");
}

// Median milliseconds of fn over `reps` runs after `warmup` runs.
double TimeMs(const std::function<void()>& fn, int warmup, int reps) {
  cudaStream_t s = cuda::CurrentStream(0);
  for (int i = 0; i < warmup; ++i) fn();
  cuda::SynchronizeStream(0);
  std::vector<double> ms;
  cuda::Event start, stop;
  for (int i = 0; i < reps; ++i) {
    start.Record(s);
    fn();
    stop.Record(s);
    stop.Synchronize();
    ms.push_back(stop.ElapsedMsSince(start));
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void Run(const std::string& name, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    EmitError(name, e.what());
    try {
      cuda::SynchronizeStream(0);
    } catch (...) {
    }
  }
}

void BenchGemm() {
  const int64_t n = 8192;
  const Device dev = Device::CUDA(0);
  Tensor a = ops::RandomNormal({1, n, n}, 1, 0, kBF16, dev);
  Tensor b = ops::RandomNormal({1, n, n}, 2, 0, kBF16, dev);
  Tensor c = Tensor::Empty({1, n, n}, kBF16, dev);
  const double ms = TimeMs([&] { cuda::GemmEx(c, a, false, b, false, Tensor(), cuda::Epilogue::kNone); }, 3, 10);
  Emit("gemm_bf16_8192", 2.0 * n * n * n / (ms * 1e-3) / 1e12, "TFLOP/s", "");
}

void BenchCopy() {
  const Device dev = Device::CUDA(0);
  const int64_t n = int64_t{1} << 28;  // 1 GiB of f32
  Tensor a = ops::RandomUniform({n}, 3, 0, kF32, dev);
  Tensor b = Tensor::Empty({n}, kF32, dev);
  const double ms = TimeMs([&] { ops::CopyInto(b, a); }, 2, 10);
  Emit("copy_d2d", 2.0 * 4.0 * n / (ms * 1e-3) / 1e9, "GB/s", "");
  const int64_t m = int64_t{1} << 28;  // bf16: 512 MiB per operand
  Tensor x = ops::RandomNormal({m}, 4, 0, kBF16, dev);
  Tensor y = ops::RandomNormal({m}, 5, 0, kBF16, dev);
  const double ms2 = TimeMs([&] { ops::Add(x, y); }, 2, 10);
  Emit("add_bf16", 3.0 * 2.0 * m / (ms2 * 1e-3) / 1e9, "GB/s", "");
}

// path: 0 auto (ops::Attention), else cuda::AttentionWithPath(path); names prefix_{fwd,bwd,fwdbwd}_L.
void BenchAttention(int64_t L, int path = 0, const std::string& prefix = "attn") {
  const int64_t B = 1, H = 12, D = 128;
  const Device dev = Device::CUDA(0);
  Tensor q = ops::RandomNormal({B, H, L, D}, 6, 0, kBF16, dev);
  Tensor k = ops::RandomNormal({B, H, L, D}, 7, 0, kBF16, dev);
  Tensor v = ops::RandomNormal({B, H, L, D}, 8, 0, kBF16, dev);
  Tensor dout = ops::RandomNormal({B, H, L, D}, 9, 0, kBF16, dev);
  const double fwd_flops = 4.0 * B * H * static_cast<double>(L) * L * D;
  ops::AttentionResult r;
  const int reps = L >= 16384 ? 3 : 10;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const double fwd = TimeMs([&] {
    r = path == 0 ? ops::Attention(q, k, v, Tensor(), std::nullopt)
                  : cuda::AttentionWithPath(q, k, v, Tensor(), scale, path);
  }, 1, reps);
  const double bwd = TimeMs([&] {
    if (path == 0) {
      ops::AttentionBackward(dout, q, k, v, Tensor(), std::nullopt, r.out, r.lse);
    } else {
      cuda::AttentionBackwardWithPath(dout, q, k, v, Tensor(), scale, r.out, r.lse, path);
    }
  }, 1, reps);
  const std::string l = std::to_string(L);
  Emit(prefix + "_fwd_L" + l, fwd_flops / (fwd * 1e-3) / 1e12, "TFLOP/s", "");
  Emit(prefix + "_bwd_L" + l, 2.5 * fwd_flops / (bwd * 1e-3) / 1e12, "TFLOP/s", "");
  Emit(prefix + "_fwdbwd_L" + l, 3.5 * fwd_flops / ((fwd + bwd) * 1e-3) / 1e12, "TFLOP/s", "");
}

void BenchLayerNorm() {
  const int64_t rows = 32760, d = 1536;
  const Device dev = Device::CUDA(0);
  Tensor x = ops::RandomNormal({rows, d}, 10, 0, kBF16, dev);
  Tensor w = ops::RandomNormal({d}, 11, 0, kBF16, dev);
  Tensor b = ops::RandomNormal({d}, 12, 0, kBF16, dev);
  Tensor dy = ops::RandomNormal({rows, d}, 13, 0, kBF16, dev);
  ops::NormResult r;
  const double fwd = TimeMs([&] { r = ops::LayerNorm(x, w, b, 1e-6); }, 3, 20);
  const double bwd =
      TimeMs([&] { ops::LayerNormBackward(dy, x, w, r.mean, r.rstd, true); }, 3, 20);
  const double bytes = 2.0 * rows * d;  // one bf16 tensor
  Emit("layer_norm_fwd", 2.0 * bytes / (fwd * 1e-3) / 1e9, "GB/s", "");      // x in, y out
  Emit("layer_norm_bwd", 3.0 * bytes / (bwd * 1e-3) / 1e9, "GB/s", "");      // dy, x in, dx out
}

}  // namespace
}  // namespace sdpo

int RunCudaBench(const CudaBenchOptions& options) {
  const std::string& only = options.only;
  if (!options.json.empty()) sdpo::g_json = std::fopen(options.json.c_str(), "w");
  if (!sdpo::CudaAvailable()) {
    std::printf("cuda_bench: skipped: %s\n", sdpo::CudaUnavailableReason());
    return 0;
  }
  const sdpo::cuda::DeviceInfo info = sdpo::cuda::GetDeviceInfo(0);
  std::printf("cuda_bench: %s, %d SMs, %.1f GiB\n", info.name.c_str(), info.sm_count,
              info.total_memory / 1073741824.0);
  auto want = [&](const char* n) { return only.empty() || only.find(n) != std::string::npos; };
  using sdpo::Run;
  if (want("gemm")) Run("gemm_bf16_8192", sdpo::BenchGemm);
  if (want("copy")) Run("copy_d2d", sdpo::BenchCopy);
  if (want("layer_norm")) Run("layer_norm", sdpo::BenchLayerNorm);
  if (want("attn")) Run("attn_L4096", [] { sdpo::BenchAttention(4096); });
  if (want("attn")) Run("attn_L16384", [] { sdpo::BenchAttention(16384); });
  for (int64_t L : {4096, 16384}) {
    const std::string l = std::to_string(L);
    if (want("attn")) Run("attn_cudnn_L" + l, [L] { sdpo::BenchAttention(L, 3, "attn_cudnn"); });
    if (want("attn")) Run("attn_tc_L" + l, [L] { sdpo::BenchAttention(L, 2, "attn_tc"); });
  }
  const sdpo::cuda::AllocatorStats st = sdpo::cuda::GetAllocatorStats(0);
  std::printf("cuda_bench: allocator peak allocated %.2f GiB, reserved %.2f GiB, %lld cudaMalloc\n",
              st.peak_allocated_bytes / 1073741824.0, st.peak_reserved_bytes / 1073741824.0,
              static_cast<long long>(st.num_device_mallocs));
  if (sdpo::g_json) std::fclose(sdpo::g_json);
  return 0;
}
#else
int RunCudaBench(const CudaBenchOptions&) {
  std::printf("cuda_bench: skipped: %s\n", sdpo::CudaUnavailableReason());
  return 0;
}
#endif
