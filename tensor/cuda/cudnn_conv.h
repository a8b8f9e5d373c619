// 3-D convolution forward through cuDNN's convolution API (cudnnConvolutionForward, NCDHW, f32
// accumulation), for f32 / bf16 / f16 operands with the semantics of Kernels::Conv3d.
//
// libcudnn.so.9 is loaded at run time (dlopen; its shim exports the convolution functions and
// loads libcudnn_cnn itself), so binaries link no cuDNN: where it is absent the backend uses its
// own kernel (tensor/cuda/conv.cu). cuDNN takes one input tensor and symmetric padding, so
//   - history frames are concatenated in front of x (one copy of the clip's input),
//   - an "after" padding larger than the "before" one is added as zeros at the end (one copy),
//     and cuDNN pads both sides by the "before" padding,
//   - when that yields more output positions than asked for (after < before), cuDNN writes a
//     temporary and the leading positions are copied out.
// The bias is added after the convolution (for bf16/f16 that rounds twice: within one unit in
// the last place of the CPU oracle, which adds it in f32 before rounding). f32 runs without TF32
// unless cuda::SetAllowTF32(true) / SDPO_ALLOW_TF32=1. Algorithms come from cuDNN's heuristics
// (cudnnGetConvolutionForwardAlgorithm_v7), one cached per shape and device.
//
// Under SDPO_CUDA_EMULATE this compiles to a stub that reports "unavailable".
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "tensor/ops.h"
#include "tensor/tensor.h"

namespace sdpo::cuda {

// Whether the cuDNN convolution can run in this process (library loaded with the convolution
// functions, cuDNN 9.x, a GPU); otherwise *reason (when given) says why.
bool CudnnConvAvailable(std::string* reason = nullptr);

// Forced path: throws sdpo::Error naming the cuDNN step and status when unavailable, when the
// operands are not of a kind it takes (f64; more than 2^31 elements in a tensor) or when cuDNN
// fails. Operands as Kernels::Conv3d (contiguous; out preallocated).
void CudnnConv3d(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
                 const Tensor& bias, const ops::Conv3dOptions& options);

// Auto path: true when cuDNN computed out; false (nothing written) when unavailable, not
// eligible or failing. The first cuDNN failure prints one line on stderr per process; a shape
// that failed is not tried again.
bool TryCudnnConv3d(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
                    const Tensor& bias, const ops::Conv3dOptions& options);

// How the cuDNN path poses a Conv3d (see the top of this file); a pure function, so that tests on
// any machine check it with the CPU convolution.
struct CudnnConvGeometry {
  std::array<int64_t, 5> in{}, filter{}, out{};  // cuDNN's input, filter and output dims
  std::array<int64_t, 3> pad{}, stride{};        // symmetric zero padding and stride (t, h, w)
  std::array<int64_t, 3> tail{};  // zeros appended after the input's end in (t, h, w)
  bool exact = true;              // cuDNN's output is the result; else its leading positions
};
CudnnConvGeometry PlanCudnnConvGeometry(const Shape& x, int64_t history_frames, const Shape& weight,
                                        const ops::Conv3dOptions& options);

}  // namespace sdpo::cuda
