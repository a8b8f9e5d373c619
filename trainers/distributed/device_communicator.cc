#include "trainers/distributed/device_communicator.h"

#include <cstdlib>
#include <string>

#include "tensor/error.h"
#include "trainers/distributed/mpi_communicator.h"
#include "trainers/distributed/nccl_communicator.h"

namespace sdpo::distributed {

std::unique_ptr<Communicator> MakeCommunicatorFor(Device device, const CommOptions& options) {
  if (device.is_cpu()) return MakeCommunicator(options);
  std::string why;
  SDPO_CHECK(NcclAvailable(&why), "communicator for ", device.str(), ": NCCL is unusable: ", why);
  std::unique_ptr<Communicator> bootstrap;
  if (LaunchedByMpirun()) bootstrap = std::make_unique<MpiCommunicator>(options);
  return MakeNcclCommunicator(device.index, std::move(bootstrap), options);
}

int LocalRank() {
  const char* v = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  return v != nullptr ? std::atoi(v) : 0;
}

}  // namespace sdpo::distributed
