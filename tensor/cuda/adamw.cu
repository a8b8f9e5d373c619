// Fused AdamW over many tensors in one launch (multi-tensor apply): a table of tensor
// descriptors and fixed-size chunks goes to the device once per step; each block updates one
// chunk. Semantics follow torch.optim.AdamW (decoupled weight decay, bias correction).
#include <cmath>
#include <vector>

#include "tensor/cuda/device_common.cuh"

namespace sdpo::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 16384;

struct Chunk {
  int tensor;
  int pad;
  int64_t start;
};

int64_t NumChunks(const AdamWTensor* tensors, int count) {
  int64_t n = 0;
  for (int i = 0; i < count; ++i) n += CeilDiv(tensors[i].n, kChunk);
  return n;
}

SDPO_D float LoadGrad(const void* g, int dtype, int64_t i) {
  switch (dtype) {
    case kCodeBF16: return Bf16ToFloat(static_cast<const uint16_t*>(g)[i]);
    case kCodeF16: return HalfToFloat(static_cast<const uint16_t*>(g)[i]);
    default: return static_cast<const float*>(g)[i];
  }
}

__global__ void __launch_bounds__(kThreads)
    AdamWKernel(const AdamWTensor* tensors, const Chunk* chunks, AdamWHyper h) {
  const Chunk c = chunks[blockIdx.x];
  const AdamWTensor t = tensors[c.tensor];
  int64_t end = c.start + kChunk;
  if (end > t.n) end = t.n;
  const float step_size = h.lr / h.bias_correction1;
  const float bc2_sqrt = sqrtf(h.bias_correction2);
  for (int64_t i = c.start + threadIdx.x; i < end; i += blockDim.x) {
    const float g = LoadGrad(t.grad, t.grad_dtype, i) * h.grad_scale;
    float p = t.param[i];
    p -= h.lr * h.weight_decay * p;
    const float m = h.beta1 * t.exp_avg[i] + (1.0f - h.beta1) * g;
    const float v = h.beta2 * t.exp_avg_sq[i] + (1.0f - h.beta2) * g * g;
    const float denom = sqrtf(v) / bc2_sqrt + h.eps;
    p -= step_size * (m / denom);
    t.param[i] = p;
    t.exp_avg[i] = m;
    t.exp_avg_sq[i] = v;
    if (t.param_copy != nullptr) {
      switch (t.copy_dtype) {
        case kCodeBF16: static_cast<uint16_t*>(t.param_copy)[i] = FloatToBf16(p); break;
        case kCodeF16: static_cast<uint16_t*>(t.param_copy)[i] = FloatToHalf(p); break;
        default: static_cast<float*>(t.param_copy)[i] = p; break;
      }
    }
  }
}

}  // namespace

size_t AdamWTableBytes(const AdamWTensor* tensors, int count) {
  return static_cast<size_t>(count) * sizeof(AdamWTensor) +
         static_cast<size_t>(NumChunks(tensors, count)) * sizeof(Chunk);
}

void LaunchAdamW(const AdamWTensor* tensors, int count, const AdamWHyper& h, void* host_table,
                 void* table, cudaStream_t s) {
  const int64_t nchunks = NumChunks(tensors, count);
  if (nchunks == 0) return;
  if (nchunks > 2147483647LL) ThrowCudaError("adamw", "too many chunks", __FILE__, __LINE__);
  char* host = static_cast<char*>(host_table);
  std::memcpy(host, tensors, sizeof(AdamWTensor) * count);
  Chunk* hc = reinterpret_cast<Chunk*>(host + sizeof(AdamWTensor) * count);
  int64_t k = 0;
  for (int i = 0; i < count; ++i) {
    for (int64_t start = 0; start < tensors[i].n; start += kChunk) hc[k++] = Chunk{i, 0, start};
  }
  const size_t bytes = AdamWTableBytes(tensors, count);
  cudaError_t e = cudaMemcpyAsync(table, host_table, bytes, cudaMemcpyHostToDevice, s);
  if (e != cudaSuccess) ThrowCudaError("cudaMemcpyAsync (adamw table)", cudaGetErrorString(e), __FILE__, __LINE__);
  const char* dev = static_cast<const char*>(table);
  auto kern = &AdamWKernel;
  SDPO_LAUNCH(kern, static_cast<unsigned>(nchunks), kThreads, 0, s,
              reinterpret_cast<const AdamWTensor*>(dev),
              reinterpret_cast<const Chunk*>(dev + sizeof(AdamWTensor) * count), h);
  SDPO_CHECK_LAUNCH("adamw", s);
}

}  // namespace sdpo::cuda
