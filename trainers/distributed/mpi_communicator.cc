#include "trainers/distributed/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tensor/error.h"

namespace sdpo::distributed {
namespace {

void CheckMpiTensor(const Tensor& t, const std::string& what, int rank) {
  SDPO_CHECK(t.defined(), what, " (rank ", rank, "): tensor is undefined");
  SDPO_CHECK(t.device().is_cpu() && t.is_contiguous(), what, " (rank ", rank,
             "): expected a contiguous CPU tensor, found a ",
             t.is_contiguous() ? "contiguous" : "non-contiguous", " tensor on ", t.device().str());
  SDPO_CHECK(t.dtype() == kF32 || t.dtype() == kF64, what, " (rank ", rank, "): tensor is ",
             DTypeName(t.dtype()), "; MPI collectives take f32 and f64");
}

void CheckMpiTensors(const std::vector<Tensor>& tensors, const char* what, int rank) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    CheckMpiTensor(tensors[i], absl::StrCat(what, " tensor ", i), rank);
  }
}

MPI_Datatype MpiType(DType dtype) { return dtype == kF64 ? MPI_DOUBLE : MPI_FLOAT; }

// Elements of `elem_size` bytes per collective for a bucket of `bytes`, in [1, INT_MAX].
int64_t BucketElems(int64_t bytes, size_t elem_size) {
  return std::clamp<int64_t>(bytes / static_cast<int64_t>(elem_size), 1, INT_MAX);
}

std::string MpiErrorString(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return absl::StrCat("MPI error ", code);
  return std::string(text, static_cast<size_t>(len));
}

// Walks the tensors of one dtype as one flat stream, in buckets of at most `bucket` elements:
// copies each bucket into a buffer, calls fn(buffer, count, index, buckets), copies it back.
template <typename Fn>
void ForEachBucket(std::vector<Tensor>& tensors, DType dtype, int64_t bucket, Fn fn) {
  const size_t es = ElementSize(dtype);
  int64_t total = 0;
  for (const Tensor& t : tensors) {
    if (t.dtype() == dtype) total += t.numel();
  }
  if (total == 0) return;
  const int64_t buckets = (total + bucket - 1) / bucket;
  std::vector<char> buf(static_cast<size_t>(std::min(total, bucket)) * es);
  struct Piece {
    char* data;
    size_t bytes;
  };
  size_t ti = 0;
  int64_t offset = 0;  // elements of tensors[ti] already placed in earlier buckets
  for (int64_t k = 0; k < buckets; ++k) {
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
      Piece p{static_cast<char*>(t.raw_data()) + offset * es, static_cast<size_t>(n) * es};
      std::memcpy(buf.data() + filled * es, p.data, p.bytes);
      pieces.push_back(p);
      filled += n;
      offset += n;
    }
    fn(buf.data(), static_cast<int>(filled), k, buckets);
    size_t at = 0;
    for (const Piece& p : pieces) {
      std::memcpy(p.data, buf.data() + at, p.bytes);
      at += p.bytes;
    }
  }
}

}  // namespace

bool LaunchedByMpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr; }

std::unique_ptr<Communicator> MakeCommunicator(const CommOptions& options) {
  std::unique_ptr<Communicator> comm;
  if (LaunchedByMpirun()) {
    comm = std::make_unique<MpiCommunicator>(options);
  } else {
    comm = std::make_unique<LocalCommunicator>();
  }
  comm->set_options(options);
  return comm;
}

// ----------------------------------------------------------------------------- MpiCommunicator

#define SDPO_MPI_CALL(what, call)                                                                \
  do {                                                                                           \
    const int sdpo_mpi_rc = (call);                                                              \
    SDPO_CHECK(sdpo_mpi_rc == MPI_SUCCESS, what, " failed on rank ", rank_, " of ", world_size_, \
               ": ", MpiErrorString(sdpo_mpi_rc));                                               \
  } while (0)

MpiCommunicator::MpiCommunicator(const CommOptions& options) {
  set_options(options);
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    SDPO_MPI_CALL("MPI_Init_thread",
                  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
    owns_init_ = true;
  }
  // Errors come back as return codes (turned into exceptions) instead of aborting at once.
  SDPO_MPI_CALL("MPI_Comm_set_errhandler",
                MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  SDPO_MPI_CALL("MPI_Comm_rank", MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  SDPO_MPI_CALL("MPI_Comm_size", MPI_Comm_size(MPI_COMM_WORLD, &world_size_));
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_init_ && !finalized) MPI_Finalize();
}

void MpiCommunicator::Abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; keep the compiler (and a broken MPI) honest
}

template <typename Start>
void MpiCommunicator::Run(const std::string& what, Start start) {
  MPI_Request request = MPI_REQUEST_NULL;
  SDPO_MPI_CALL(what, start(&request));
  const auto t0 = std::chrono::steady_clock::now();
  const double timeout = options_.timeout_s;
  for (int64_t polls = 0;; ++polls) {
    int done = 0;
    SDPO_MPI_CALL(what, MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    // Spin briefly (small collectives finish within microseconds), then poll less often.
    if (polls > 2000) {
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (timeout > 0 && waited > timeout) {
        SDPO_FAIL(what, " timed out on rank ", rank_, " of ", world_size_, " after ", timeout,
                  " s (--collective_timeout_s): at least one other rank did not join it (a rank "
                  "that hangs, or ranks calling collectives in a different order); the job is "
                  "aborted");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(waited < 1.0 ? 20 : 500));
    }
  }
}

void MpiCommunicator::AllReduceBuckets(std::vector<Tensor>& tensors, DType dtype) {
  ForEachBucket(tensors, dtype, BucketElems(options_.bucket_bytes, ElementSize(dtype)),
                [&](void* buf, int count, int64_t k, int64_t buckets) {
                  Run(absl::StrCat("AllReduceSum (", DTypeName(dtype), " tensors, bucket ", k + 1,
                                   " of ", buckets, ", ", count, " elements)"),
                      [&](MPI_Request* r) {
                        return MPI_Iallreduce(MPI_IN_PLACE, buf, count, MpiType(dtype), MPI_SUM,
                                              MPI_COMM_WORLD, r);
                      });
                });
}

void MpiCommunicator::AllReduceSum(std::vector<Tensor>& tensors) {
  CheckMpiTensors(tensors, "AllReduceSum", rank_);
  AllReduceBuckets(tensors, kF32);
  AllReduceBuckets(tensors, kF64);
}

void MpiCommunicator::AllReduceSum(std::vector<double>& values) {
  if (values.empty()) return;
  Run("AllReduceSum (doubles)", [&](MPI_Request* r) {
    return MPI_Iallreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE,
                          MPI_SUM, MPI_COMM_WORLD, r);
  });
}

void MpiCommunicator::ReduceScatterSum(const Tensor& input, Tensor& output) {
  CheckMpiTensor(input, "ReduceScatterSum input", rank_);
  CheckMpiTensor(output, "ReduceScatterSum output", rank_);
  const int64_t n = output.numel();
  SDPO_CHECK(input.dtype() == output.dtype() && input.numel() == n * world_size_,
             "ReduceScatterSum (rank ", rank_, " of ", world_size_, "): input has ", input.numel(),
             " ", DTypeName(input.dtype()), " elements, expected ", world_size_, " x ", n, " ",
             DTypeName(output.dtype()));
  if (n == 0) return;
  const size_t es = ElementSize(input.dtype());
  const int64_t chunk = BucketElems(options_.bucket_bytes / world_size_, es);
  const char* in = static_cast<const char*>(input.raw_data());
  char* out = static_cast<char*>(output.raw_data());
  std::vector<char> send;
  for (int64_t a = 0; a < n; a += chunk) {
    const int64_t len = std::min(chunk, n - a);
    const char* src = in;
    if (len != n) {  // the ranks' blocks of this chunk, side by side
      send.resize(static_cast<size_t>(world_size_ * len) * es);
      for (int r = 0; r < world_size_; ++r) {
        std::memcpy(send.data() + r * len * es, in + (r * n + a) * es, len * es);
      }
      src = send.data();
    }
    Run(absl::StrCat("ReduceScatterSum (", DTypeName(input.dtype()), ", elements [", a, ", ",
                     a + len, ") of ", n, " per rank)"),
        [&](MPI_Request* r) {
          return MPI_Ireduce_scatter_block(src, out + a * es, static_cast<int>(len),
                                           MpiType(input.dtype()), MPI_SUM, MPI_COMM_WORLD, r);
        });
  }
}

void MpiCommunicator::AllGather(const Tensor& input, Tensor& output) {
  CheckMpiTensor(input, "AllGather input", rank_);
  CheckMpiTensor(output, "AllGather output", rank_);
  const int64_t n = input.numel();
  SDPO_CHECK(input.dtype() == output.dtype() && output.numel() == n * world_size_,
             "AllGather (rank ", rank_, " of ", world_size_, "): output has ", output.numel(), " ",
             DTypeName(output.dtype()), " elements, expected ", world_size_, " x ", n, " ",
             DTypeName(input.dtype()));
  if (n == 0) return;
  const size_t es = ElementSize(input.dtype());
  const int64_t chunk = BucketElems(options_.bucket_bytes / world_size_, es);
  const char* in = static_cast<const char*>(input.raw_data());
  char* out = static_cast<char*>(output.raw_data());
  std::vector<char> recv;
  for (int64_t a = 0; a < n; a += chunk) {
    const int64_t len = std::min(chunk, n - a);
    char* dst = out;
    if (len != n) {
      recv.resize(static_cast<size_t>(world_size_ * len) * es);
      dst = recv.data();
    }
    Run(absl::StrCat("AllGather (", DTypeName(input.dtype()), ", elements [", a, ", ", a + len,
                     ") of ", n, " per rank)"),
        [&](MPI_Request* r) {
          return MPI_Iallgather(in + a * es, static_cast<int>(len), MpiType(input.dtype()), dst,
                                static_cast<int>(len), MpiType(input.dtype()), MPI_COMM_WORLD, r);
        });
    if (len != n) {
      for (int r = 0; r < world_size_; ++r) {
        std::memcpy(out + (r * n + a) * es, recv.data() + r * len * es, len * es);
      }
    }
  }
}

void MpiCommunicator::Broadcast(std::vector<Tensor>& tensors, int root) {
  SDPO_CHECK(root >= 0 && root < world_size_, "Broadcast (rank ", rank_, "): root ", root,
             " outside [0, ", world_size_, ")");
  CheckMpiTensors(tensors, "Broadcast", rank_);
  for (DType dtype : {kF32, kF64}) {
    ForEachBucket(tensors, dtype, BucketElems(options_.bucket_bytes, ElementSize(dtype)),
                  [&](void* buf, int count, int64_t k, int64_t buckets) {
                    Run(absl::StrCat("Broadcast (", DTypeName(dtype), " tensors, bucket ", k + 1,
                                     " of ", buckets, ")"),
                        [&](MPI_Request* r) {
                          return MPI_Ibcast(buf, count, MpiType(dtype), root, MPI_COMM_WORLD, r);
                        });
                  });
  }
}

void MpiCommunicator::Broadcast(std::vector<uint64_t>& values, int root) {
  SDPO_CHECK(root >= 0 && root < world_size_, "Broadcast (rank ", rank_, "): root ", root,
             " outside [0, ", world_size_, ")");
  // The count first, so that a rank with a different list length fails with a message.
  uint64_t n = values.size();
  Run("Broadcast (count)",
      [&](MPI_Request* r) { return MPI_Ibcast(&n, 1, MPI_UINT64_T, root, MPI_COMM_WORLD, r); });
  SDPO_CHECK(n == values.size(), "Broadcast (rank ", rank_, "): root ", root, " sends ", n,
             " values, this rank expects ", values.size());
  if (n == 0) return;
  Run("Broadcast (uint64 values)", [&](MPI_Request* r) {
    return MPI_Ibcast(values.data(), static_cast<int>(n), MPI_UINT64_T, root, MPI_COMM_WORLD, r);
  });
}

std::vector<double> MpiCommunicator::AllGather(const std::vector<double>& values) {
  std::vector<double> out(values.size() * static_cast<size_t>(world_size_));
  Run("AllGather (doubles)", [&](MPI_Request* r) {
    return MPI_Iallgather(values.data(), static_cast<int>(values.size()), MPI_DOUBLE, out.data(),
                          static_cast<int>(values.size()), MPI_DOUBLE, MPI_COMM_WORLD, r);
  });
  return out;
}

void MpiCommunicator::Barrier() {
  Run("Barrier", [&](MPI_Request* r) { return MPI_Ibarrier(MPI_COMM_WORLD, r); });
}

#undef SDPO_MPI_CALL

}  // namespace sdpo::distributed
