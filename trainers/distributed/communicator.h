// Collective communication between the ranks of a data-parallel job.
//
// LocalCommunicator is the single-process world (rank 0 of 1; every collective is the identity).
// MpiCommunicator (mpi_communicator.h) wraps MPI_COMM_WORLD for CPU tensors; MakeCommunicator()
// there picks it only when the process was started by OpenMPI's mpirun (OMPI_COMM_WORLD_SIZE is
// set), so single-process runs never touch MPI. The NCCL communicator (nccl_communicator.h) does
// the same for GPU tensors. This header and its library do not depend on MPI. Collectives must be
// called by every rank in the same order. Failures throw sdpo::Error naming the collective and the
// rank; a collective that does not complete within CommOptions::timeout_s (a rank that hangs while
// alive) throws too, and the caller should then Abort() the job. See docs/distributed.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace sdpo::distributed {

struct CommOptions {
  // A collective still incomplete after this many seconds throws (<= 0: wait forever).
  double timeout_s = 600;
  // AllReduceSum coalesces its tensors into flat buckets of at most this many bytes (a tensor
  // larger than a bucket spans several), one collective per bucket; ReduceScatterSum and
  // AllGather move at most this many bytes per collective.
  int64_t bucket_bytes = int64_t{25} << 20;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string name() const = 0;  // "local" | "mpi" | "nccl"

  // In place: every tensor becomes the elementwise sum over ranks, in buckets of
  // options().bucket_bytes. Contiguous tensors on the communicator's device (MPI: CPU f32/f64;
  // NCCL: CUDA f32/f64/bf16/f16); the list (shapes and dtypes) must match on every rank.
  virtual void AllReduceSum(std::vector<Tensor>& tensors) = 0;
  virtual void AllReduceSum(std::vector<double>& values) = 0;
  // input holds world_size() blocks of output.numel() elements; output becomes the sum over
  // ranks of their input's block rank() (same dtype and device, contiguous). Uneven sizes are
  // the caller's padding (see sharding.h).
  virtual void ReduceScatterSum(const Tensor& input, Tensor& output) = 0;
  // output holds world_size() blocks of input.numel() elements; block r becomes rank r's input.
  virtual void AllGather(const Tensor& input, Tensor& output) = 0;
  // In place: every rank receives root's tensors / values.
  virtual void Broadcast(std::vector<Tensor>& tensors, int root) = 0;
  virtual void Broadcast(std::vector<uint64_t>& values, int root) = 0;
  // Every rank contributes values.size() doubles (the same count on every rank); returns the
  // concatenation in rank order.
  virtual std::vector<double> AllGather(const std::vector<double>& values) = 0;
  virtual void Barrier() = 0;
  // Ends the whole job (every rank): for a rank that failed while others may wait in a
  // collective. A world of one just exits.
  [[noreturn]] virtual void Abort(int code) = 0;

  bool is_root() const { return rank() == 0; }
  const CommOptions& options() const { return options_; }
  void set_options(const CommOptions& options);

 protected:
  CommOptions options_;
};

class LocalCommunicator : public Communicator {
 public:
  explicit LocalCommunicator(Device device = Device::CPU()) : device_(device) {}
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string name() const override { return "local"; }
  void AllReduceSum(std::vector<Tensor>& tensors) override;
  void AllReduceSum(std::vector<double>&) override {}
  void ReduceScatterSum(const Tensor& input, Tensor& output) override;
  void AllGather(const Tensor& input, Tensor& output) override;
  void Broadcast(std::vector<Tensor>& tensors, int root) override;
  void Broadcast(std::vector<uint64_t>&, int root) override;
  std::vector<double> AllGather(const std::vector<double>& values) override { return values; }
  void Barrier() override {}
  [[noreturn]] void Abort(int code) override;

 private:
  Device device_;
};

}  // namespace sdpo::distributed
