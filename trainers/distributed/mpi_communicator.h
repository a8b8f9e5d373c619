// MPI implementation of the Communicator (CPU tensors) and the factory that picks it under mpirun.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "trainers/distributed/communicator.h"

namespace sdpo::distributed {

// MPI_COMM_WORLD with MPI_ERRORS_RETURN: an MPI error becomes an exception instead of an
// immediate abort. Every collective is non-blocking (MPI_Iallreduce, ...) followed by a polling
// wait with the options' deadline. Initialises MPI (MPI_THREAD_FUNNELED: only the thread that
// created the communicator calls MPI) on construction unless already initialised, finalises on
// destruction. At most one instance per process.
class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(const CommOptions& options = {});
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string name() const override { return "mpi"; }
  void AllReduceSum(std::vector<Tensor>& tensors) override;
  void AllReduceSum(std::vector<double>& values) override;
  void ReduceScatterSum(const Tensor& input, Tensor& output) override;
  void AllGather(const Tensor& input, Tensor& output) override;
  void Broadcast(std::vector<Tensor>& tensors, int root) override;
  void Broadcast(std::vector<uint64_t>& values, int root) override;
  std::vector<double> AllGather(const std::vector<double>& values) override;
  void Barrier() override;
  // MPI_Abort: mpirun ends every rank.
  [[noreturn]] void Abort(int code) override;

 private:
  // Starts a non-blocking collective (`start` fills the request) and polls it until done or the
  // deadline, throwing an error naming `what` on failure or timeout.
  template <typename Start>
  void Run(const std::string& what, Start start);
  // One dtype's tensors of an AllReduceSum, bucket by bucket.
  void AllReduceBuckets(std::vector<Tensor>& tensors, DType dtype);

  int rank_ = 0, world_size_ = 1;
  bool owns_init_ = false;
};

// True when this process was launched by mpirun (OpenMPI sets OMPI_COMM_WORLD_SIZE).
bool LaunchedByMpirun();
// MpiCommunicator under mpirun, LocalCommunicator otherwise (CPU tensors).
std::unique_ptr<Communicator> MakeCommunicator(const CommOptions& options = {});

}  // namespace sdpo::distributed
