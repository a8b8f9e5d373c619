// The communicator for a device's tensors: MPI (CPU) or NCCL (GPU), each a world of one without
// mpirun (no MPI initialised).
#pragma once

#include <memory>

#include "tensor/device.h"
#include "trainers/distributed/communicator.h"

namespace sdpo::distributed {

// CPU: MakeCommunicator() (MpiCommunicator under mpirun, else LocalCommunicator). CUDA: the NCCL
// communicator on device.index, bootstrapped over MPI under mpirun (rank and world size from
// mpirun), a world of one without it. Throws where NCCL is unusable (no CUDA build, no
// libnccl.so.2, no GPU).
std::unique_ptr<Communicator> MakeCommunicatorFor(Device device, const CommOptions& options = {});

// This process's rank among those mpirun started on its machine (OMPI_COMM_WORLD_LOCAL_RANK), 0
// without mpirun: the GPU index for one process per GPU.
int LocalRank();

}  // namespace sdpo::distributed
