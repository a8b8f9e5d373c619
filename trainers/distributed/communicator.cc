#include "trainers/distributed/communicator.h"

#include <mpi.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "tensor/error.h"

namespace sdpo::distributed {
namespace {

void CheckCpuTensors(const std::vector<Tensor>& tensors, const char* what, int rank) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    SDPO_CHECK(t.defined(), what, " (rank ", rank, "): tensor ", i, " is undefined");
    SDPO_CHECK(t.device().is_cpu() && t.is_contiguous(), what, " (rank ", rank, "): tensor ", i,
               " must be a contiguous CPU tensor");
    SDPO_CHECK(t.dtype() == kF32 || t.dtype() == kF64, what, " (rank ", rank, "): tensor ", i,
               " is ", DTypeName(t.dtype()), "; only f32 and f64 are supported");
  }
}

// Copies every tensor of `dtype` into one buffer (one collective for the whole list), or back.
template <typename T>
std::vector<T> Pack(const std::vector<Tensor>& tensors, DType dtype) {
  std::vector<T> buf;
  for (const Tensor& t : tensors) {
    if (t.dtype() != dtype) continue;
    const T* p = t.data<T>();
    buf.insert(buf.end(), p, p + t.numel());
  }
  return buf;
}

template <typename T>
void Unpack(const std::vector<T>& buf, std::vector<Tensor>& tensors, DType dtype) {
  size_t off = 0;
  for (Tensor& t : tensors) {
    if (t.dtype() != dtype) continue;
    std::memcpy(t.data<T>(), buf.data() + off, sizeof(T) * static_cast<size_t>(t.numel()));
    off += static_cast<size_t>(t.numel());
  }
}

std::string MpiErrorString(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return absl::StrCat("MPI error ", code);
  return std::string(text, static_cast<size_t>(len));
}

}  // namespace

void LocalCommunicator::AllReduceSum(std::vector<Tensor>& tensors) {
  CheckCpuTensors(tensors, "AllReduceSum", 0);
}

void LocalCommunicator::Broadcast(std::vector<Tensor>& tensors, int root) {
  SDPO_CHECK(root == 0, "Broadcast (rank 0): root ", root, " outside a world of 1");
  CheckCpuTensors(tensors, "Broadcast", 0);
}

void LocalCommunicator::Broadcast(std::vector<uint64_t>&, int root) {
  SDPO_CHECK(root == 0, "Broadcast (rank 0): root ", root, " outside a world of 1");
}

bool LaunchedByMpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr; }

std::unique_ptr<Communicator> MakeCommunicator() {
  if (LaunchedByMpirun()) return std::make_unique<MpiCommunicator>();
  return std::make_unique<LocalCommunicator>();
}

#define SDPO_MPI_CALL(what, call)                                                                \
  do {                                                                                           \
    const int sdpo_mpi_rc = (call);                                                              \
    SDPO_CHECK(sdpo_mpi_rc == MPI_SUCCESS, what, " failed on rank ", rank_, " of ", world_size_, \
               ": ", MpiErrorString(sdpo_mpi_rc));                                               \
  } while (0)

MpiCommunicator::MpiCommunicator() {
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

void MpiCommunicator::AllReduceSum(std::vector<Tensor>& tensors) {
  CheckCpuTensors(tensors, "AllReduceSum", rank_);
  std::vector<float> f32 = Pack<float>(tensors, kF32);
  std::vector<double> f64 = Pack<double>(tensors, kF64);
  if (!f32.empty()) {
    SDPO_MPI_CALL("AllReduceSum (f32 tensors)",
                  MPI_Allreduce(MPI_IN_PLACE, f32.data(), static_cast<int>(f32.size()), MPI_FLOAT,
                                MPI_SUM, MPI_COMM_WORLD));
    Unpack(f32, tensors, kF32);
  }
  if (!f64.empty()) {
    SDPO_MPI_CALL("AllReduceSum (f64 tensors)",
                  MPI_Allreduce(MPI_IN_PLACE, f64.data(), static_cast<int>(f64.size()), MPI_DOUBLE,
                                MPI_SUM, MPI_COMM_WORLD));
    Unpack(f64, tensors, kF64);
  }
}

void MpiCommunicator::AllReduceSum(std::vector<double>& values) {
  if (values.empty()) return;
  SDPO_MPI_CALL("AllReduceSum (doubles)",
                MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()),
                              MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}

void MpiCommunicator::Broadcast(std::vector<Tensor>& tensors, int root) {
  SDPO_CHECK(root >= 0 && root < world_size_, "Broadcast (rank ", rank_, "): root ", root,
             " outside [0, ", world_size_, ")");
  CheckCpuTensors(tensors, "Broadcast", rank_);
  std::vector<float> f32 = Pack<float>(tensors, kF32);
  std::vector<double> f64 = Pack<double>(tensors, kF64);
  if (!f32.empty()) {
    SDPO_MPI_CALL("Broadcast (f32 tensors)", MPI_Bcast(f32.data(), static_cast<int>(f32.size()),
                                                       MPI_FLOAT, root, MPI_COMM_WORLD));
    Unpack(f32, tensors, kF32);
  }
  if (!f64.empty()) {
    SDPO_MPI_CALL("Broadcast (f64 tensors)", MPI_Bcast(f64.data(), static_cast<int>(f64.size()),
                                                       MPI_DOUBLE, root, MPI_COMM_WORLD));
    Unpack(f64, tensors, kF64);
  }
}

void MpiCommunicator::Broadcast(std::vector<uint64_t>& values, int root) {
  SDPO_CHECK(root >= 0 && root < world_size_, "Broadcast (rank ", rank_, "): root ", root,
             " outside [0, ", world_size_, ")");
  // The count first, so that a rank with a different list length fails with a message.
  uint64_t n = values.size();
  SDPO_MPI_CALL("Broadcast (count)", MPI_Bcast(&n, 1, MPI_UINT64_T, root, MPI_COMM_WORLD));
  SDPO_CHECK(n == values.size(), "Broadcast (rank ", rank_, "): root ", root, " sends ", n,
             " values, this rank expects ", values.size());
  if (n == 0) return;
  SDPO_MPI_CALL("Broadcast (uint64 values)",
                MPI_Bcast(values.data(), static_cast<int>(n), MPI_UINT64_T, root, MPI_COMM_WORLD));
}

std::vector<double> MpiCommunicator::AllGather(const std::vector<double>& values) {
  std::vector<double> out(values.size() * static_cast<size_t>(world_size_));
  SDPO_MPI_CALL("AllGather", MPI_Allgather(values.data(), static_cast<int>(values.size()),
                                           MPI_DOUBLE, out.data(), static_cast<int>(values.size()),
                                           MPI_DOUBLE, MPI_COMM_WORLD));
  return out;
}

void MpiCommunicator::Barrier() { SDPO_MPI_CALL("Barrier", MPI_Barrier(MPI_COMM_WORLD)); }

#undef SDPO_MPI_CALL

}  // namespace sdpo::distributed
