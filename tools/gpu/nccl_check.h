// cuda_check nccl: the NCCL communicator (trainers/distributed/nccl_communicator.h) on one GPU
// (world size 1) against the CPU: all-reduce (bucketed and not), reduce-scatter and all-gather of
// sizes in one and many chunks, broadcast, host-value collectives, stream ordering and argument
// errors, on f32, bf16 and f64 tensors. Prints "nccl: N passed, M failed"; exit status 1 when any
// failed or NCCL is unusable on a GPU machine, 0 (skipped) without a GPU.
#pragma once

int RunNcclCheck();
