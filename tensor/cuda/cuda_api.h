// The CUDA runtime API for sdpo's host code: the real one, or the CPU emulation of the subset
// sdpo uses when built with -DSDPO_CUDA_EMULATE (tests on machines without a GPU).
#pragma once

#ifdef SDPO_CUDA_EMULATE
#include "tensor/cuda/emu/emu_runtime.h"
#else
#include <cuda_runtime_api.h>
#endif
