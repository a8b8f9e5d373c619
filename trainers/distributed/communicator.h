// Collective communication between the ranks of a data-parallel job.
//
// LocalCommunicator is the single-process world (rank 0 of 1; every collective is the identity).
// MpiCommunicator wraps MPI_COMM_WORLD; MakeCommunicator() picks it only when the process was
// started by OpenMPI's mpirun (OMPI_COMM_WORLD_SIZE is set), so single-process runs never touch
// MPI. Collectives are blocking and must be called by every rank in the same order. Failures
// throw sdpo::Error naming the collective and the rank. See docs/distributed.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace sdpo::distributed {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string name() const = 0;  // "local" | "mpi"

  // In place: every tensor becomes the elementwise sum over ranks. CPU, contiguous, f32 or f64;
  // the list (shapes and dtypes) must match on every rank.
  virtual void AllReduceSum(std::vector<Tensor>& tensors) = 0;
  virtual void AllReduceSum(std::vector<double>& values) = 0;
  // In place: every rank receives root's tensors / values.
  virtual void Broadcast(std::vector<Tensor>& tensors, int root) = 0;
  virtual void Broadcast(std::vector<uint64_t>& values, int root) = 0;
  // Every rank contributes values.size() doubles (the same count on every rank); returns the
  // concatenation in rank order.
  virtual std::vector<double> AllGather(const std::vector<double>& values) = 0;
  virtual void Barrier() = 0;

  bool is_root() const { return rank() == 0; }
};

class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string name() const override { return "local"; }
  void AllReduceSum(std::vector<Tensor>& tensors) override;
  void AllReduceSum(std::vector<double>&) override {}
  void Broadcast(std::vector<Tensor>& tensors, int root) override;
  void Broadcast(std::vector<uint64_t>&, int root) override;
  std::vector<double> AllGather(const std::vector<double>& values) override { return values; }
  void Barrier() override {}
};

// MPI_COMM_WORLD with MPI_ERRORS_RETURN: an MPI error becomes an exception instead of an
// immediate abort. Initialises MPI (MPI_THREAD_FUNNELED: only the thread that created the
// communicator calls MPI) on construction unless already initialised, finalises on destruction.
// At most one instance per process.
class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator();
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string name() const override { return "mpi"; }
  void AllReduceSum(std::vector<Tensor>& tensors) override;
  void AllReduceSum(std::vector<double>& values) override;
  void Broadcast(std::vector<Tensor>& tensors, int root) override;
  void Broadcast(std::vector<uint64_t>& values, int root) override;
  std::vector<double> AllGather(const std::vector<double>& values) override;
  void Barrier() override;

  // Ends the whole job (MPI_Abort): for a rank that failed while others may wait in a collective.
  [[noreturn]] void Abort(int code);

 private:
  int rank_ = 0, world_size_ = 1;
  bool owns_init_ = false;
};

// True when this process was launched by mpirun (OpenMPI sets OMPI_COMM_WORLD_SIZE).
bool LaunchedByMpirun();
// MpiCommunicator under mpirun, LocalCommunicator otherwise.
std::unique_ptr<Communicator> MakeCommunicator();

}  // namespace sdpo::distributed
