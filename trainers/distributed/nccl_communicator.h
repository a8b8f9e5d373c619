// The NCCL communicator: the Communicator interface for contiguous CUDA tensors (f32, f64, bf16,
// f16, i32, i64) on one GPU per process, on its own CUDA stream.
//
// Each collective is ordered after the work already queued on sdpo's current stream of the
// device (an event the NCCL stream waits for) and runs on the communicator's stream; the calling
// thread then polls its completion against CommOptions::timeout_s (a hung peer: ncclCommAbort and
// an sdpo::Error naming the collective, the rank and the timeout), so that results are ready when
// a call returns. AllReduceSum coalesces tensors into buckets of bucket_bytes in a device staging
// buffer (a bucket that is one tensor's slice is reduced in place). Host values (doubles,
// uint64) go through small device buffers.
//
// libnccl.so.2 is loaded with dlopen on first use, so binaries that link this library (e.g.
// tools/gpu:cuda_check) start without it. The header needs no CUDA or NCCL headers; in a build
// without CUDA the library is a stub whose NcclAvailable() is false.
#pragma once

#include <memory>
#include <string>

#include "trainers/distributed/communicator.h"

namespace sdpo::distributed {

// Whether NCCL can be used: a CUDA build with libnccl.so.2 loadable. When not, *why (if given)
// says why. Does not need a GPU.
bool NcclAvailable(std::string* why = nullptr);

// A communicator over `device` (CUDA index). bootstrap null: a world of one (no MPI).
// Otherwise the bootstrap's rank and world size (e.g. an MpiCommunicator): rank 0's
// ncclUniqueId is broadcast through it, and Abort() ends the job through it. Takes ownership.
std::unique_ptr<Communicator> MakeNcclCommunicator(int device,
                                                   std::unique_ptr<Communicator> bootstrap,
                                                   const CommOptions& options = {});

}  // namespace sdpo::distributed
