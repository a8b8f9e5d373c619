#include "trainers/distributed/communicator.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace sdpo::distributed {
namespace {

void CheckTensor(const Tensor& t, const std::string& what, int rank, Device device) {
  SDPO_CHECK(t.defined(), what, " (rank ", rank, "): tensor is undefined");
  SDPO_CHECK(t.device() == device && t.is_contiguous(), what, " (rank ", rank,
             "): expected a contiguous tensor on ", device.str(), ", found ",
             t.is_contiguous() ? "a contiguous" : "a non-contiguous", " tensor on ",
             t.device().str());
}

}  // namespace

void Communicator::set_options(const CommOptions& options) {
  SDPO_CHECK(options.bucket_bytes > 0, "communicator: bucket_bytes must be positive, got ",
             options.bucket_bytes);
  options_ = options;
}

// ----------------------------------------------------------------------------- LocalCommunicator

void LocalCommunicator::AllReduceSum(std::vector<Tensor>& tensors) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    CheckTensor(tensors[i], absl::StrCat("AllReduceSum tensor ", i), 0, device_);
  }
}

void LocalCommunicator::ReduceScatterSum(const Tensor& input, Tensor& output) {
  CheckTensor(input, "ReduceScatterSum input", 0, device_);
  CheckTensor(output, "ReduceScatterSum output", 0, device_);
  SDPO_CHECK(input.numel() == output.numel() && input.dtype() == output.dtype(),
             "ReduceScatterSum (rank 0 of 1): input has ", input.numel(), " ",
             DTypeName(input.dtype()), " elements, expected the output's ", output.numel(), " ",
             DTypeName(output.dtype()));
  ops::CopyInto(output, ops::View(input, output.shape()));
}

void LocalCommunicator::AllGather(const Tensor& input, Tensor& output) {
  CheckTensor(input, "AllGather input", 0, device_);
  CheckTensor(output, "AllGather output", 0, device_);
  SDPO_CHECK(input.numel() == output.numel() && input.dtype() == output.dtype(),
             "AllGather (rank 0 of 1): output has ", output.numel(), " ", DTypeName(output.dtype()),
             " elements, expected the input's ", input.numel(), " ", DTypeName(input.dtype()));
  ops::CopyInto(output, ops::View(input, output.shape()));
}

void LocalCommunicator::Broadcast(std::vector<Tensor>& tensors, int root) {
  SDPO_CHECK(root == 0, "Broadcast (rank 0): root ", root, " outside a world of 1");
  for (size_t i = 0; i < tensors.size(); ++i) {
    CheckTensor(tensors[i], absl::StrCat("Broadcast tensor ", i), 0, device_);
  }
}

void LocalCommunicator::Broadcast(std::vector<uint64_t>&, int root) {
  SDPO_CHECK(root == 0, "Broadcast (rank 0): root ", root, " outside a world of 1");
}

void LocalCommunicator::Abort(int code) { std::_Exit(code); }

}  // namespace sdpo::distributed
