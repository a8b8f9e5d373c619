// cuDNN convolution forward for Kernels::Conv3d (see cudnn_conv.h).
#include "tensor/cuda/cudnn_conv.h"

#include "tensor/error.h"

#ifndef SDPO_CUDA_EMULATE
#include <cudnn_cnn.h>
#include <dlfcn.h>

#include <array>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#include "tensor/cuda/cuda_ops.h"
#include "tensor/cuda/cuda_runtime.h"
#include "tensor/kernels.h"
#endif

namespace sdpo::cuda {

CudnnConvGeometry PlanCudnnConvGeometry(const Shape& x, int64_t history_frames, const Shape& weight,
                                        const ops::Conv3dOptions& o) {
  CudnnConvGeometry g;
  for (int d = 0; d < 3; ++d) {
    const int64_t before = o.padding[2 * d], after = o.padding[2 * d + 1];
    g.pad[d] = before;
    g.tail[d] = after > before ? after - before : 0;
    g.stride[d] = o.stride[d];
  }
  for (int d = 0; d < 5; ++d) {
    g.in[d] = x[d] + (d == 2 ? history_frames : 0) + (d >= 2 ? g.tail[d - 2] : 0);
    g.filter[d] = weight[d];
  }
  g.out[0] = g.in[0];
  g.out[1] = g.filter[0];
  for (int d = 0; d < 3; ++d) {
    // Ours: the input with both paddings; cuDNN's: with the tail and "before" on both sides.
    const int64_t ours = (x[2 + d] + (d == 0 ? history_frames : 0) + o.padding[2 * d] +
                          o.padding[2 * d + 1] - weight[2 + d]) /
                             o.stride[d] +
                         1;
    g.out[2 + d] = (g.in[2 + d] + 2 * g.pad[d] - g.filter[2 + d]) / g.stride[d] + 1;
    g.exact = g.exact && g.out[2 + d] == ours;
  }
  return g;
}

#ifdef SDPO_CUDA_EMULATE
// ------------------------------------------------------------------------------------- stub

bool CudnnConvAvailable(std::string* reason) {
  if (reason) *reason = "cuDNN convolution: unavailable in the CUDA emulation build";
  return false;
}

void CudnnConv3d(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                 const ops::Conv3dOptions&) {
  SDPO_FAIL("conv3d (cuDNN): unavailable in the CUDA emulation build");
}

bool TryCudnnConv3d(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                    const ops::Conv3dOptions&) {
  return false;
}

#else
// ------------------------------------------------------------------------------- real cuDNN

namespace {

// The legacy convolution functions, resolved at run time.
struct ConvApi {
  decltype(&cudnnGetVersion) GetVersion = nullptr;
  decltype(&cudnnGetErrorString) GetErrorString = nullptr;
  decltype(&cudnnCreate) Create = nullptr;
  decltype(&cudnnSetStream) SetStream = nullptr;
  decltype(&cudnnCreateTensorDescriptor) CreateTensor = nullptr;
  decltype(&cudnnSetTensorNdDescriptor) SetTensorNd = nullptr;
  decltype(&cudnnDestroyTensorDescriptor) DestroyTensor = nullptr;
  decltype(&cudnnCreateFilterDescriptor) CreateFilter = nullptr;
  decltype(&cudnnSetFilterNdDescriptor) SetFilterNd = nullptr;
  decltype(&cudnnDestroyFilterDescriptor) DestroyFilter = nullptr;
  decltype(&cudnnCreateConvolutionDescriptor) CreateConv = nullptr;
  decltype(&cudnnSetConvolutionNdDescriptor) SetConvNd = nullptr;
  decltype(&cudnnSetConvolutionMathType) SetMathType = nullptr;
  decltype(&cudnnDestroyConvolutionDescriptor) DestroyConv = nullptr;
  decltype(&cudnnGetConvolutionNdForwardOutputDim) OutputDim = nullptr;
  decltype(&cudnnGetConvolutionForwardAlgorithm_v7) Heuristics = nullptr;
  decltype(&cudnnGetConvolutionForwardWorkspaceSize) WorkspaceSize = nullptr;
  decltype(&cudnnConvolutionForward) Forward = nullptr;
  size_t version = 0;
  bool ok = false;
  std::string error;  // why not ok
};

const ConvApi& GetConvApi() {
  static const ConvApi* api = [] {
    auto* a = new ConvApi();
    if (DeviceCount() == 0) {
      a->error = "no CUDA device";
      return a;
    }
    // The shim library exports every public function and loads the sub-libraries on demand;
    // the sub-libraries are the second place to look.
    std::vector<void*> libs;
    for (const char* name :
         {"libcudnn.so.9", "libcudnn_cnn.so.9", "libcudnn_ops.so.9", "libcudnn_graph.so.9"}) {
      if (void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)) {
        libs.push_back(lib);
      } else if (libs.empty()) {
        const char* e = dlerror();
        a->error = std::string("dlopen(libcudnn.so.9) failed: ") + (e ? e : "?");
        return a;
      } else {
        dlerror();
      }
    }
    std::string missing;
    auto sym = [&](auto* fn, const char* name) {
      void* p = nullptr;
      for (size_t i = 0; i < libs.size() && p == nullptr; ++i) p = dlsym(libs[i], name);
      if (p == nullptr) missing += std::string(missing.empty() ? "" : ", ") + name;
      *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)> >(p);
    };
    sym(&a->GetVersion, "cudnnGetVersion");
    sym(&a->GetErrorString, "cudnnGetErrorString");
    sym(&a->Create, "cudnnCreate");
    sym(&a->SetStream, "cudnnSetStream");
    sym(&a->CreateTensor, "cudnnCreateTensorDescriptor");
    sym(&a->SetTensorNd, "cudnnSetTensorNdDescriptor");
    sym(&a->DestroyTensor, "cudnnDestroyTensorDescriptor");
    sym(&a->CreateFilter, "cudnnCreateFilterDescriptor");
    sym(&a->SetFilterNd, "cudnnSetFilterNdDescriptor");
    sym(&a->DestroyFilter, "cudnnDestroyFilterDescriptor");
    sym(&a->CreateConv, "cudnnCreateConvolutionDescriptor");
    sym(&a->SetConvNd, "cudnnSetConvolutionNdDescriptor");
    sym(&a->SetMathType, "cudnnSetConvolutionMathType");
    sym(&a->DestroyConv, "cudnnDestroyConvolutionDescriptor");
    sym(&a->OutputDim, "cudnnGetConvolutionNdForwardOutputDim");
    sym(&a->Heuristics, "cudnnGetConvolutionForwardAlgorithm_v7");
    sym(&a->WorkspaceSize, "cudnnGetConvolutionForwardWorkspaceSize");
    sym(&a->Forward, "cudnnConvolutionForward");
    if (!missing.empty()) {
      a->error = "libcudnn.so.9 lacks " + missing;
      return a;
    }
    a->version = a->GetVersion();
    if (a->version < 90000 || a->version >= 100000) {
      a->error = "libcudnn.so.9 reports version " + std::to_string(a->version) + " (need 9.x)";
      return a;
    }
    a->ok = true;
    return a;
  }();
  return *api;
}

std::string ConvFailure(const ConvApi& api, const char* step, cudnnStatus_t st) {
  return absl::StrCat("conv3d (cuDNN ", api.version / 10000, ".", api.version % 10000 / 100,
                      "): ", step, " failed: ", api.GetErrorString(st), " (", static_cast<int>(st),
                      ")");
}

#define SDPO_CUDNN_CONV_CHECK(api, call, step)              \
  do {                                                      \
    const cudnnStatus_t sdpo_conv_st_ = (call);             \
    if (sdpo_conv_st_ != CUDNN_STATUS_SUCCESS) {            \
      SDPO_FAIL(ConvFailure((api), (step), sdpo_conv_st_)); \
    }                                                       \
  } while (0)

// CudnnConvGeometry in cuDNN's int.
struct Geometry {
  std::array<int, 5> in{}, filter{}, out{};
  std::array<int, 3> pad{}, stride{};
};

// One shape's descriptors and algorithm.
struct ConvPlan {
  const ConvApi* api = nullptr;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo{};
  size_t workspace_bytes = 0;
  std::string error;  // non-empty: building failed (not retried)
  ~ConvPlan() {
    if (x) api->DestroyTensor(x);
    if (y) api->DestroyTensor(y);
    if (w) api->DestroyFilter(w);
    if (conv) api->DestroyConv(conv);
  }
};

using ConvKey = std::tuple<int, bool, std::array<int, 5>, std::array<int, 5>, std::array<int, 3>,
                           std::array<int, 3> >;

struct ConvDeviceState {
  cudnnHandle_t handle = nullptr;
  std::map<ConvKey, std::unique_ptr<ConvPlan> > plans;
};

std::mutex g_conv_mu;
std::map<int, ConvDeviceState>& ConvStates() {
  static auto* m = new std::map<int, ConvDeviceState>();
  return *m;
}

cudnnDataType_t DataType(DType t) {
  switch (t) {
    case kBF16:
      return CUDNN_DATA_BFLOAT16;
    case kF16:
      return CUDNN_DATA_HALF;
    default:
      return CUDNN_DATA_FLOAT;
  }
}

std::array<int, 5> Packed(const std::array<int, 5>& dims) {
  std::array<int, 5> s{};
  s[4] = 1;
  for (int i = 3; i >= 0; --i) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

// Workspace bound for an algorithm: cuDNN's heuristics rank by speed, some want gigabytes.
constexpr size_t kMaxWorkspace = size_t{1} << 30;

void BuildPlan(const ConvApi& api, cudnnHandle_t handle, DType dtype, bool tf32, const Geometry& g,
               ConvPlan* p) {
  p->api = &api;
  const cudnnDataType_t type = DataType(dtype);
  SDPO_CUDNN_CONV_CHECK(api, api.CreateTensor(&p->x), "cudnnCreateTensorDescriptor");
  SDPO_CUDNN_CONV_CHECK(api, api.CreateTensor(&p->y), "cudnnCreateTensorDescriptor");
  SDPO_CUDNN_CONV_CHECK(api, api.CreateFilter(&p->w), "cudnnCreateFilterDescriptor");
  SDPO_CUDNN_CONV_CHECK(api, api.CreateConv(&p->conv), "cudnnCreateConvolutionDescriptor");
  const std::array<int, 5> in_strides = Packed(g.in), out_strides = Packed(g.out);
  SDPO_CUDNN_CONV_CHECK(api, api.SetTensorNd(p->x, type, 5, g.in.data(), in_strides.data()),
                        "cudnnSetTensorNdDescriptor (input)");
  SDPO_CUDNN_CONV_CHECK(api, api.SetFilterNd(p->w, type, CUDNN_TENSOR_NCHW, 5, g.filter.data()),
                        "cudnnSetFilterNdDescriptor");
  const std::array<int, 3> dilation{1, 1, 1};
  SDPO_CUDNN_CONV_CHECK(api,
                        api.SetConvNd(p->conv, 3, g.pad.data(), g.stride.data(), dilation.data(),
                                      CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                        "cudnnSetConvolutionNdDescriptor");
  std::array<int, 5> expected{};
  SDPO_CUDNN_CONV_CHECK(api, api.OutputDim(p->conv, p->x, p->w, 5, expected.data()),
                        "cudnnGetConvolutionNdForwardOutputDim");
  SDPO_CHECK(expected == g.out, "conv3d (cuDNN): output dims [", expected[0], ", ", expected[1],
             ", ", expected[2], ", ", expected[3], ", ", expected[4], "] differ from the planned [",
             g.out[0], ", ", g.out[1], ", ", g.out[2], ", ", g.out[3], ", ", g.out[4], "]");
  SDPO_CUDNN_CONV_CHECK(api, api.SetTensorNd(p->y, type, 5, g.out.data(), out_strides.data()),
                        "cudnnSetTensorNdDescriptor (output)");
  // f32 without TF32 unless allowed (our f32 tolerance is that of f32 FMA arithmetic).
  const bool fma_only = dtype == kF32 && !tf32;
  SDPO_CUDNN_CONV_CHECK(api,
                        api.SetMathType(p->conv, fma_only ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH),
                        "cudnnSetConvolutionMathType");
  std::array<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT> perf{};
  int returned = 0;
  SDPO_CUDNN_CONV_CHECK(api,
                        api.Heuristics(handle, p->x, p->w, p->conv, p->y,
                                       static_cast<int>(perf.size()), &returned, perf.data()),
                        "cudnnGetConvolutionForwardAlgorithm_v7");
  for (int i = 0; i < returned; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > kMaxWorkspace) continue;
    if (fma_only && perf[i].mathType == CUDNN_TENSOR_OP_MATH) continue;
    size_t bytes = 0;
    if (api.WorkspaceSize(handle, p->x, p->w, p->conv, p->y, perf[i].algo, &bytes) !=
            CUDNN_STATUS_SUCCESS ||
        bytes > kMaxWorkspace) {
      continue;
    }
    if (!fma_only) {
      SDPO_CUDNN_CONV_CHECK(api, api.SetMathType(p->conv, perf[i].mathType),
                            "cudnnSetConvolutionMathType (chosen algorithm)");
    }
    p->algo = perf[i].algo;
    p->workspace_bytes = bytes;
    return;
  }
  SDPO_FAIL("conv3d (cuDNN): no forward algorithm for this shape (", returned,
            " heuristic results, none usable within ", kMaxWorkspace >> 20, " MiB of workspace)");
}

int CheckedInt(int64_t v, const char* what) {
  SDPO_CHECK(v <= std::numeric_limits<int>::max(), "conv3d (cuDNN): ", what, " ", v,
             " exceeds int");
  return static_cast<int>(v);
}

std::string NotEligible(const Tensor& out, const Tensor& x, const Tensor& history,
                        const Tensor& weight, const Tensor& bias) {
  if (x.dtype() != kF32 && x.dtype() != kBF16 && x.dtype() != kF16) {
    return "dtype is not f32/bf16/f16";
  }
  for (const Tensor* t : {&out, &x, &history, &weight, &bias}) {
    if (!t->defined()) continue;
    if (!t->is_contiguous() || t->device() != x.device() || t->dtype() != x.dtype()) {
      return "operands not contiguous of one dtype on one device";
    }
  }
  // cuDNN's legacy API indexes with 32-bit integers (the input grows by history and padding).
  const int64_t limit = int64_t{1} << 30;
  const int64_t frames = x.size(2) + (history.defined() ? history.size(2) : 0) + 4;
  if (x.size(0) * x.size(1) * frames * (x.size(3) + 4) * (x.size(4) + 4) >= limit ||
      out.numel() >= limit || weight.numel() >= limit) {
    return "a tensor has 2^30 or more elements";
  }
  return "";
}

void RunConv(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
             const Tensor& bias, const ops::Conv3dOptions& o) {
  const ConvApi& api = GetConvApi();
  SDPO_CHECK(api.ok, "conv3d (cuDNN): unavailable: ", api.error);
  const std::string why = NotEligible(out, x, history, weight, bias);
  SDPO_CHECK(why.empty(), "conv3d (cuDNN): not supported: ", why, " (x ", x.str(), ", weight ",
             weight.str(), ")");
  const int device = x.device().index;
  DeviceGuard guard(device);

  const CudnnConvGeometry plan_geometry =
      PlanCudnnConvGeometry(x.shape(), history.defined() ? history.size(2) : 0, weight.shape(), o);
  Geometry g;
  for (int d = 0; d < 5; ++d) {
    g.in[d] = CheckedInt(plan_geometry.in[d], "input size");
    g.filter[d] = CheckedInt(plan_geometry.filter[d], "filter size");
    g.out[d] = CheckedInt(plan_geometry.out[d], "output size");
  }
  for (int d = 0; d < 3; ++d) {
    g.pad[d] = CheckedInt(plan_geometry.pad[d], "padding");
    g.stride[d] = CheckedInt(plan_geometry.stride[d], "stride");
  }

  // The plan first: a shape cuDNN failed on fails fast, before any copy.
  cudaStream_t stream = CurrentStream(device);
  std::lock_guard<std::mutex> lock(g_conv_mu);
  ConvDeviceState& state = ConvStates()[device];
  if (state.handle == nullptr) {
    SDPO_CUDNN_CONV_CHECK(api, api.Create(&state.handle), "cudnnCreate");
  }
  SDPO_CUDNN_CONV_CHECK(api, api.SetStream(state.handle, stream), "cudnnSetStream");
  const bool tf32 = x.dtype() == kF32 && AllowTF32();
  const ConvKey key{static_cast<int>(x.dtype()), tf32, g.in, g.filter, g.pad, g.stride};
  auto it = state.plans.find(key);
  if (it == state.plans.end()) {
    auto plan = std::make_unique<ConvPlan>();
    try {
      BuildPlan(api, state.handle, x.dtype(), tf32, g, plan.get());
    } catch (const Error& e) {
      plan->error = e.what();
    }
    it = state.plans.emplace(key, std::move(plan)).first;
  }
  ConvPlan& plan = *it->second;
  if (!plan.error.empty()) SDPO_FAIL(plan.error);

  // One input tensor: the history in front of x, the tail zeros after it.
  Tensor input = history.defined() ? ops::Concat({history, x}, 2) : x;
  const auto& tail = plan_geometry.tail;
  if (tail[0] + tail[1] + tail[2] > 0) {
    input = ops::Pad(input, {{0, tail[0]}, {0, tail[1]}, {0, tail[2]}});
  }
  const bool exact = plan_geometry.exact;
  // The leading positions of cuDNN's output are ours; more of them when after < before.
  Tensor y = exact ? out
                   : Tensor::Empty({g.out[0], g.out[1], g.out[2], g.out[3], g.out[4]}, out.dtype(),
                                   out.device());
  Tensor workspace;
  if (plan.workspace_bytes > 0) {
    workspace = Tensor::Empty({static_cast<int64_t>(plan.workspace_bytes)}, kBool, x.device());
  }
  const float alpha = 1.0f, beta = 0.0f;
  const cudnnStatus_t st =
      api.Forward(state.handle, &alpha, plan.x, input.raw_data(), plan.w, weight.raw_data(),
                  plan.conv, plan.algo, workspace.defined() ? workspace.raw_data() : nullptr,
                  plan.workspace_bytes, &beta, plan.y, y.raw_data());
  if (st != CUDNN_STATUS_SUCCESS) {
    plan.error = ConvFailure(api, "cudnnConvolutionForward", st);
    SDPO_FAIL(plan.error);
  }
  Tensor result = y;
  if (!exact) {
    for (int d = 0; d < 3; ++d) result = ops::Narrow(result, 2 + d, 0, out.size(2 + d));
  }
  Kernels& kernels = KernelsFor(out.device());
  if (bias.defined()) {
    const Tensor b = ops::Expand(ops::View(bias, {1, bias.size(0), 1, 1, 1}), out.shape());
    kernels.Binary(ops::BinaryOp::kAdd, out, result, b);
  } else if (!exact) {
    kernels.Copy(out, result);
  }
}

std::once_flag g_conv_announce_once, g_conv_fallback_once;

}  // namespace

bool CudnnConvAvailable(std::string* reason) {
  const ConvApi& api = GetConvApi();
  if (!api.ok && reason) *reason = api.error;
  return api.ok;
}

void CudnnConv3d(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
                 const Tensor& bias, const ops::Conv3dOptions& options) {
  RunConv(out, x, history, weight, bias, options);
}

bool TryCudnnConv3d(const Tensor& out, const Tensor& x, const Tensor& history, const Tensor& weight,
                    const Tensor& bias, const ops::Conv3dOptions& options) {
  if (!CudnnConvAvailable() || !NotEligible(out, x, history, weight, bias).empty()) return false;
  try {
    RunConv(out, x, history, weight, bias, options);
  } catch (const Error& e) {
    std::call_once(g_conv_fallback_once, [&] {
      std::fprintf(stderr,
                   "conv3d: cuDNN failed, using sdpo's kernel instead (reported once): %s\n",
                   e.what());
    });
    return false;
  }
  std::call_once(g_conv_announce_once, [&] {
    const size_t v = GetConvApi().version;
    std::fprintf(stderr, "conv3d: cuDNN %zu.%zu convolution\n", v / 10000, v % 10000 / 100);
  });
  return true;
}

#endif  // SDPO_CUDA_EMULATE

}  // namespace sdpo::cuda
