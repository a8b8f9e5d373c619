#include "engine/runtime.h"

#include "tensor/cuda/cuda_available.h"

namespace sdpo::engine {

Runtime::Runtime(const RuntimeOptions& options)
    : device_(options.device), compute_dtype_(options.precision) {
  SDPO_CHECK(options.threads >= 1, "engine::Runtime: threads must be >= 1, got ", options.threads);
  SDPO_CHECK(device_.is_cpu() || CudaAvailable(), "engine::Runtime: device ", device_.str(),
             " but CUDA is unavailable (", CudaUnavailableReason(), ")");
  SDPO_CHECK(compute_dtype_ == kF32 || compute_dtype_ == kBF16,
             "engine::Runtime: precision must be f32 or bf16, got ", DTypeName(compute_dtype_));
  SDPO_CHECK(compute_dtype_ == kF32 || !device_.is_cpu(),
             "engine::Runtime: bf16 compute needs a CUDA device (the CPU path is f32)");
  pool_ = std::make_unique<ThreadPool>(options.threads);
}

}  // namespace sdpo::engine
