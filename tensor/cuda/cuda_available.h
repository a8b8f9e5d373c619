// Whether this binary can run CUDA kernels: built with the CUDA backend (or its CPU emulation)
// and a GPU is present. Compiled in every build; false without CUDA. Never throws.
#pragma once

namespace sdpo {

bool CudaAvailable();
// Why not, for a test's skip message ("built without CUDA", "no GPU: <error>").
const char* CudaUnavailableReason();

}  // namespace sdpo
