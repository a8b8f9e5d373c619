// Built without CUDA: no NCCL communicator.
#include "tensor/error.h"
#include "trainers/distributed/nccl_communicator.h"

namespace sdpo::distributed {

bool NcclAvailable(std::string* why) {
  if (why != nullptr) *why = "built without CUDA (no NCCL)";
  return false;
}

std::unique_ptr<Communicator> MakeNcclCommunicator(int, std::unique_ptr<Communicator>,
                                                   const CommOptions&) {
  SDPO_FAIL(
      "NCCL communicator: this binary was built without CUDA (the toolkit was not found, or "
      "--config=nocuda); GPU tensors cannot be communicated");
}

}  // namespace sdpo::distributed
