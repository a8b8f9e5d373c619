// Compiled by nvcc as the host-compiler driver (trainers/distributed/BUILD.bazel), CUDA builds
// only.
#include "trainers/distributed/nccl_communicator.h"

#include <dlfcn.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tensor/cuda/cuda_runtime.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace sdpo::distributed {
namespace {

// The NCCL entry points, from libnccl.so.2 (dlopen), so that linking needs no libnccl.
struct NcclApi {
  decltype(&ncclGetVersion) GetVersion = nullptr;
  decltype(&ncclGetUniqueId) GetUniqueId = nullptr;
  decltype(&ncclCommInitRank) CommInitRank = nullptr;
  decltype(&ncclCommInitAll) CommInitAll = nullptr;
  decltype(&ncclCommDestroy) CommDestroy = nullptr;
  decltype(&ncclCommAbort) CommAbort = nullptr;
  decltype(&ncclCommGetAsyncError) CommGetAsyncError = nullptr;
  decltype(&ncclGetErrorString) GetErrorString = nullptr;
  decltype(&ncclGetLastError) GetLastError = nullptr;  // optional (NCCL >= 2.13)
  decltype(&ncclAllReduce) AllReduce = nullptr;
  decltype(&ncclReduceScatter) ReduceScatter = nullptr;
  decltype(&ncclAllGather) AllGather = nullptr;
  decltype(&ncclBroadcast) Broadcast = nullptr;
  std::string error;  // empty when loaded
};

const NcclApi& Nccl() {
  static NcclApi api;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
    if (lib == nullptr) {
      const char* e = dlerror();
      api.error = absl::StrCat("cannot load libnccl.so.2 (", e != nullptr ? e : "?",
                               "): put its directory on LD_LIBRARY_PATH");
      return;
    }
    auto get = [&](auto& fn, const char* name, bool required) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (fn == nullptr && required && api.error.empty()) {
        api.error = absl::StrCat("libnccl.so.2 lacks ", name);
      }
    };
    get(api.GetVersion, "ncclGetVersion", true);
    get(api.GetUniqueId, "ncclGetUniqueId", true);
    get(api.CommInitRank, "ncclCommInitRank", true);
    get(api.CommInitAll, "ncclCommInitAll", true);
    get(api.CommDestroy, "ncclCommDestroy", true);
    get(api.CommAbort, "ncclCommAbort", true);
    get(api.CommGetAsyncError, "ncclCommGetAsyncError", true);
    get(api.GetErrorString, "ncclGetErrorString", true);
    get(api.GetLastError, "ncclGetLastError", false);
    get(api.AllReduce, "ncclAllReduce", true);
    get(api.ReduceScatter, "ncclReduceScatter", true);
    get(api.AllGather, "ncclAllGather", true);
    get(api.Broadcast, "ncclBroadcast", true);
  });
  return api;
}

const NcclApi& CheckedNccl() {
  const NcclApi& api = Nccl();
  SDPO_CHECK(api.error.empty(), "NCCL communicator: ", api.error);
  return api;
}

ncclDataType_t NcclType(DType dtype) {
  switch (dtype) {
    case kF32:
      return ncclFloat32;
    case kF64:
      return ncclFloat64;
    case kBF16:
      return ncclBfloat16;
    case kF16:
      return ncclFloat16;
    case DType::kI32:
      return ncclInt32;
    case DType::kI64:
      return ncclInt64;
    default:
      SDPO_FAIL("NCCL communicator: no NCCL type for ", DTypeName(dtype));
  }
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(int device, std::unique_ptr<Communicator> bootstrap, const CommOptions& options)
      : api_(CheckedNccl()), device_(device), bootstrap_(std::move(bootstrap)) {
    set_options(options);
    if (bootstrap_ != nullptr) {
      rank_ = bootstrap_->rank();
      world_ = bootstrap_->world_size();
    }
    cuda::DeviceGuard guard(device_);
    if (world_ == 1) {
      int dev = device_;
      Check("ncclCommInitAll", api_.CommInitAll(&comm_, 1, &dev));
    } else {
      // Rank 0's unique id (128 bytes) to every rank through the bootstrap (MPI).
      ncclUniqueId id;
      std::memset(&id, 0, sizeof(id));
      if (rank_ == 0) Check("ncclGetUniqueId", api_.GetUniqueId(&id));
      std::vector<uint64_t> words((sizeof(id) + 7) / 8, 0);
      std::memcpy(words.data(), &id, sizeof(id));
      bootstrap_->Broadcast(words, 0);
      std::memcpy(&id, words.data(), sizeof(id));
      Check("ncclCommInitRank", api_.CommInitRank(&comm_, world_, id, rank_));
    }
    SDPO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    SDPO_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    SDPO_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }

  ~NcclCommunicator() override {
    if (comm_ != nullptr) api_.CommDestroy(comm_);
    if (done_ != nullptr) cudaEventDestroy(done_);
    if (ready_ != nullptr) cudaEventDestroy(ready_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string name() const override { return "nccl"; }

  void AllReduceSum(std::vector<Tensor>& tensors) override {
    for (size_t i = 0; i < tensors.size(); ++i) {
      CheckTensor(tensors[i], absl::StrCat("AllReduceSum tensor ", i));
    }
    std::vector<DType> dtypes;
    for (const Tensor& t : tensors) {
      if (std::find(dtypes.begin(), dtypes.end(), t.dtype()) == dtypes.end()) {
        dtypes.push_back(t.dtype());
      }
    }
    if (dtypes.empty()) return;
    Begin();
    int64_t buckets = 0;
    for (DType dtype : dtypes) buckets += AllReduceBuckets(tensors, dtype);
    Finish(absl::StrCat("AllReduceSum (", tensors.size(), " tensors, ", buckets, " bucket(s))"));
  }

  void AllReduceSum(std::vector<double>& values) override {
    if (values.empty()) return;
    Tensor buf = Staging(static_cast<int64_t>(values.size()), kF64);
    const size_t bytes = values.size() * sizeof(double);
    Begin();
    SDPO_CUDA_CHECK(
        cudaMemcpyAsync(buf.raw_data(), values.data(), bytes, cudaMemcpyHostToDevice, stream_));
    Check("ncclAllReduce (doubles)", api_.AllReduce(buf.raw_data(), buf.raw_data(), values.size(),
                                                    ncclFloat64, ncclSum, comm_, stream_));
    SDPO_CUDA_CHECK(
        cudaMemcpyAsync(values.data(), buf.raw_data(), bytes, cudaMemcpyDeviceToHost, stream_));
    Finish("AllReduceSum (doubles)");
  }

  void ReduceScatterSum(const Tensor& input, Tensor& output) override {
    CheckTensor(input, "ReduceScatterSum input");
    CheckTensor(output, "ReduceScatterSum output");
    const int64_t n = output.numel();
    SDPO_CHECK(input.dtype() == output.dtype() && input.numel() == n * world_,
               "ReduceScatterSum (rank ", rank_, " of ", world_, "): input has ", input.numel(),
               " ", DTypeName(input.dtype()), " elements, expected ", world_, " x ", n, " ",
               DTypeName(output.dtype()));
    if (n == 0) return;
    const size_t es = ElementSize(input.dtype());
    const int64_t chunk = ChunkElems(es);
    const char* in = static_cast<const char*>(input.raw_data());
    char* out = static_cast<char*>(output.raw_data());
    Tensor staging;
    Begin();
    for (int64_t a = 0; a < n; a += chunk) {
      const int64_t len = std::min(chunk, n - a);
      const char* src = in;
      if (len != n) {  // this chunk of every rank's block, side by side
        if (!staging.defined()) staging = Staging(world_ * chunk, input.dtype());
        SDPO_CUDA_CHECK(cudaMemcpy2DAsync(staging.raw_data(), len * es, in + a * es, n * es,
                                          len * es, world_, cudaMemcpyDeviceToDevice, stream_));
        src = static_cast<const char*>(staging.raw_data());
      }
      Check("ncclReduceScatter", api_.ReduceScatter(src, out + a * es, len, NcclType(input.dtype()),
                                                    ncclSum, comm_, stream_));
    }
    Finish(absl::StrCat("ReduceScatterSum (", DTypeName(input.dtype()), ", ", n,
                        " elements per rank)"));
  }

  void AllGather(const Tensor& input, Tensor& output) override {
    CheckTensor(input, "AllGather input");
    CheckTensor(output, "AllGather output");
    const int64_t n = input.numel();
    SDPO_CHECK(input.dtype() == output.dtype() && output.numel() == n * world_, "AllGather (rank ",
               rank_, " of ", world_, "): output has ", output.numel(), " ",
               DTypeName(output.dtype()), " elements, expected ", world_, " x ", n, " ",
               DTypeName(input.dtype()));
    if (n == 0) return;
    const size_t es = ElementSize(input.dtype());
    const int64_t chunk = ChunkElems(es);
    const char* in = static_cast<const char*>(input.raw_data());
    char* out = static_cast<char*>(output.raw_data());
    Tensor staging;
    Begin();
    for (int64_t a = 0; a < n; a += chunk) {
      const int64_t len = std::min(chunk, n - a);
      char* dst = out;
      if (len != n) {
        if (!staging.defined()) staging = Staging(world_ * chunk, input.dtype());
        dst = static_cast<char*>(staging.raw_data());
      }
      Check("ncclAllGather",
            api_.AllGather(in + a * es, dst, len, NcclType(input.dtype()), comm_, stream_));
      if (len != n) {
        SDPO_CUDA_CHECK(cudaMemcpy2DAsync(out + a * es, n * es, dst, len * es, len * es, world_,
                                          cudaMemcpyDeviceToDevice, stream_));
      }
    }
    Finish(absl::StrCat("AllGather (", DTypeName(input.dtype()), ", ", n, " elements per rank)"));
  }

  void Broadcast(std::vector<Tensor>& tensors, int root) override {
    SDPO_CHECK(root >= 0 && root < world_, "Broadcast (rank ", rank_, "): root ", root,
               " outside [0, ", world_, ")");
    for (size_t i = 0; i < tensors.size(); ++i) {
      CheckTensor(tensors[i], absl::StrCat("Broadcast tensor ", i));
    }
    Begin();
    for (Tensor& t : tensors) {
      const size_t es = ElementSize(t.dtype());
      const int64_t chunk = std::max<int64_t>(1, options_.bucket_bytes / static_cast<int64_t>(es));
      char* p = static_cast<char*>(t.raw_data());
      for (int64_t a = 0; a < t.numel(); a += chunk) {
        const int64_t len = std::min(chunk, t.numel() - a);
        Check("ncclBroadcast", api_.Broadcast(p + a * es, p + a * es, len, NcclType(t.dtype()),
                                              root, comm_, stream_));
      }
    }
    Finish(absl::StrCat("Broadcast (", tensors.size(), " tensors)"));
  }

  void Broadcast(std::vector<uint64_t>& values, int root) override {
    SDPO_CHECK(root >= 0 && root < world_, "Broadcast (rank ", rank_, "): root ", root,
               " outside [0, ", world_, ")");
    // The count first, so that a rank with a different list length fails with a message.
    std::vector<double> count = {rank_ == root ? static_cast<double>(values.size()) : 0.0};
    AllReduceSum(count);
    SDPO_CHECK(count[0] == static_cast<double>(values.size()), "Broadcast (rank ", rank_,
               "): root ", root, " sends ", count[0], " values, this rank expects ", values.size());
    if (values.empty()) return;
    Tensor buf = Staging(static_cast<int64_t>(values.size()), DType::kI64);
    const size_t bytes = values.size() * sizeof(uint64_t);
    Begin();
    SDPO_CUDA_CHECK(
        cudaMemcpyAsync(buf.raw_data(), values.data(), bytes, cudaMemcpyHostToDevice, stream_));
    Check("ncclBroadcast (uint64 values)",
          api_.Broadcast(buf.raw_data(), buf.raw_data(), values.size(), ncclUint64, root, comm_,
                         stream_));
    SDPO_CUDA_CHECK(
        cudaMemcpyAsync(values.data(), buf.raw_data(), bytes, cudaMemcpyDeviceToHost, stream_));
    Finish("Broadcast (uint64 values)");
  }

  std::vector<double> AllGather(const std::vector<double>& values) override {
    const int64_t n = static_cast<int64_t>(values.size());
    std::vector<double> out(values.size() * static_cast<size_t>(world_));
    if (n == 0) return out;
    Tensor in = Staging(n, kF64), all = Staging(n * world_, kF64);
    Begin();
    SDPO_CUDA_CHECK(cudaMemcpyAsync(in.raw_data(), values.data(), n * sizeof(double),
                                    cudaMemcpyHostToDevice, stream_));
    Check("ncclAllGather (doubles)",
          api_.AllGather(in.raw_data(), all.raw_data(), n, ncclFloat64, comm_, stream_));
    SDPO_CUDA_CHECK(cudaMemcpyAsync(out.data(), all.raw_data(), out.size() * sizeof(double),
                                    cudaMemcpyDeviceToHost, stream_));
    Finish("AllGather (doubles)");
    return out;
  }

  void Barrier() override {
    std::vector<double> one = {1.0};
    AllReduceSum(one);
  }

  [[noreturn]] void Abort(int code) override {
    if (comm_ != nullptr) api_.CommAbort(comm_);
    comm_ = nullptr;
    if (bootstrap_ != nullptr) bootstrap_->Abort(code);
    std::_Exit(code);
  }

 private:
  void CheckTensor(const Tensor& t, const std::string& what) const {
    SDPO_CHECK(t.defined(), what, " (rank ", rank_, "): tensor is undefined");
    SDPO_CHECK(t.device() == Device::CUDA(device_) && t.is_contiguous(), what, " (rank ", rank_,
               "): expected a contiguous tensor on cuda:", device_, ", found a ",
               t.is_contiguous() ? "contiguous" : "non-contiguous", " tensor on ",
               t.device().str());
    NcclType(t.dtype());
  }

  Tensor Staging(int64_t numel, DType dtype) const {
    return Tensor::Empty({numel}, dtype, Device::CUDA(device_));
  }

  // Elements per rank per chunk of a reduce-scatter / all-gather.
  int64_t ChunkElems(size_t es) const {
    return std::max<int64_t>(1, options_.bucket_bytes / world_ / static_cast<int64_t>(es));
  }

  void Check(const char* what, ncclResult_t r) const {
    if (r == ncclSuccess || r == ncclInProgress) return;
    const char* last = api_.GetLastError != nullptr ? api_.GetLastError(comm_) : nullptr;
    SDPO_FAIL(what, " failed on rank ", rank_, " of ", world_, ": ", api_.GetErrorString(r),
              last != nullptr && last[0] != '\0' ? absl::StrCat(" (", last, ")") : "");
  }

  // The NCCL stream waits for what is already queued on sdpo's stream of the device.
  void Begin() {
    cuda::DeviceGuard guard(device_);
    SDPO_CUDA_CHECK(cudaEventRecord(ready_, cuda::CurrentStream(device_)));
    SDPO_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
  }

  // Waits for everything queued on the NCCL stream, with the deadline; then sdpo's stream is
  // ordered after it.
  void Finish(const std::string& what) {
    cuda::DeviceGuard guard(device_);
    SDPO_CUDA_CHECK(cudaEventRecord(done_, stream_));
    const auto t0 = std::chrono::steady_clock::now();
    const double timeout = options_.timeout_s;
    for (int64_t polls = 0;; ++polls) {
      const cudaError_t e = cudaEventQuery(done_);
      if (e == cudaSuccess) break;
      if (e != cudaErrorNotReady) SDPO_CUDA_CHECK(e);
      ncclResult_t async = ncclSuccess;
      Check("ncclCommGetAsyncError", api_.CommGetAsyncError(comm_, &async));
      if (async != ncclSuccess && async != ncclInProgress) {
        Check(absl::StrCat(what, " (asynchronous NCCL error)").c_str(), async);
      }
      if (polls > 2000) {
        const double waited =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (timeout > 0 && waited > timeout) {
          api_.CommAbort(comm_);  // ends the kernels still waiting for the peers
          comm_ = nullptr;
          SDPO_FAIL(what, " timed out on rank ", rank_, " of ", world_, " after ", timeout,
                    " s (--collective_timeout_s): at least one other rank did not join it (a "
                    "rank that hangs, or ranks calling collectives in a different order); the "
                    "NCCL communicator was aborted");
        }
        std::this_thread::sleep_for(std::chrono::microseconds(waited < 1.0 ? 20 : 500));
      }
    }
    SDPO_CUDA_CHECK(cudaStreamWaitEvent(cuda::CurrentStream(device_), done_, 0));
    in_flight_.clear();
  }

  // One dtype's tensors, bucket by bucket, queued on the NCCL stream. Returns the bucket count.
  int64_t AllReduceBuckets(std::vector<Tensor>& tensors, DType dtype) {
    const size_t es = ElementSize(dtype);
    const int64_t bucket = std::max<int64_t>(1, options_.bucket_bytes / static_cast<int64_t>(es));
    int64_t total = 0;
    for (const Tensor& t : tensors) {
      if (t.dtype() == dtype) total += t.numel();
    }
    if (total == 0) return 0;
    Tensor staging;  // kept alive in in_flight_ until Finish()
    struct Piece {
      char* data;
      size_t bytes;
    };
    size_t ti = 0;
    int64_t offset = 0, buckets = 0;
    for (int64_t done = 0; done < total; done += bucket, ++buckets) {
      std::vector<Piece> pieces;
      int64_t filled = 0;
      while (filled < bucket && ti < tensors.size()) {
        Tensor& t = tensors[ti];
        if (t.dtype() != dtype || offset == t.numel()) {
          ++ti;
          offset = 0;
          continue;
        }
        const int64_t n = std::min(bucket - filled, t.numel() - offset);
        pieces.push_back({static_cast<char*>(t.raw_data()) + offset * es, n * es});
        filled += n;
        offset += n;
      }
      if (pieces.size() == 1) {  // one tensor's slice: in place
        Check("ncclAllReduce", api_.AllReduce(pieces[0].data, pieces[0].data, filled,
                                              NcclType(dtype), ncclSum, comm_, stream_));
        continue;
      }
      if (!staging.defined()) {
        staging = Staging(std::min(total, bucket), dtype);
        in_flight_.push_back(staging);
      }
      char* buf = static_cast<char*>(staging.raw_data());
      size_t at = 0;
      for (const Piece& p : pieces) {
        SDPO_CUDA_CHECK(
            cudaMemcpyAsync(buf + at, p.data, p.bytes, cudaMemcpyDeviceToDevice, stream_));
        at += p.bytes;
      }
      Check("ncclAllReduce",
            api_.AllReduce(buf, buf, filled, NcclType(dtype), ncclSum, comm_, stream_));
      at = 0;
      for (const Piece& p : pieces) {
        SDPO_CUDA_CHECK(
            cudaMemcpyAsync(p.data, buf + at, p.bytes, cudaMemcpyDeviceToDevice, stream_));
        at += p.bytes;
      }
    }
    return buckets;
  }

  const NcclApi& api_;
  int device_;
  std::unique_ptr<Communicator> bootstrap_;
  int rank_ = 0, world_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  std::vector<Tensor> in_flight_;  // staging buffers the NCCL stream may still use
};

}  // namespace

bool NcclAvailable(std::string* why) {
  const NcclApi& api = Nccl();
  if (!api.error.empty()) {
    if (why != nullptr) *why = api.error;
    return false;
  }
  if (why != nullptr) {
    int version = 0;
    api.GetVersion(&version);
    *why = absl::StrCat("NCCL ", version);
  }
  return true;
}

std::unique_ptr<Communicator> MakeNcclCommunicator(int device,
                                                   std::unique_ptr<Communicator> bootstrap,
                                                   const CommOptions& options) {
  return std::make_unique<NcclCommunicator>(device, std::move(bootstrap), options);
}

}  // namespace sdpo::distributed
