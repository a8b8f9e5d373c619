#include "tensor/cpu/dnnl_gemm.h"

#include <omp.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "oneapi/dnnl/dnnl.hpp"
#include "tensor/thread_pool.h"

namespace sdpo::cpu {
namespace {

using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int>;  // ta, tb, m, n, k, threads

struct DnnlState {
  std::mutex mutex;  // guards the cache and serialises execution (library-owned scratchpads)
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::map<Key, dnnl::matmul> primitives;
  bool unavailable = false;  // set once creation failed: every later call falls back
};

DnnlState& State() {
  static DnnlState* state = new DnnlState();  // never destroyed: OpenMP threads may outlive exit
  return *state;
}

std::atomic<bool> enabled{true};

// Row-major [rows, cols] descriptor, read transposed from a [cols, rows] buffer when `trans`.
dnnl::memory::desc Matrix(int64_t rows, int64_t cols, bool trans, dnnl::memory::data_type type) {
  const dnnl::memory::dims strides =
      trans ? dnnl::memory::dims{1, rows} : dnnl::memory::dims{cols, 1};
  return dnnl::memory::desc({rows, cols}, type, strides);
}

// The cached primitive for the key, created on first use; false (and `unavailable` set, said
// once) when oneDNN has no optimised implementation. Called with the mutex held.
bool Primitive(DnnlState& s, const Key& key, dnnl::matmul* out) {
  if (auto it = s.primitives.find(key); it != s.primitives.end()) {
    *out = it->second;
    return true;
  }
  const auto [ta, tb, m, n, k, threads] = key;
  using dt = dnnl::memory::data_type;
  std::string why;
  try {
    dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(Matrix(m, k, ta, dt::bf16), Matrix(k, n, tb, dt::bf16),
                           Matrix(m, n, false, dt::f32)),
        s.engine);
    const std::string impl = pd.impl_info_str();
    if (impl.find("ref") == std::string::npos) {
      *out = dnnl::matmul(pd);
      s.primitives.emplace(key, *out);
      return true;
    }
    why = "only the reference implementation (" + impl + ")";
  } catch (const dnnl::error& e) {
    why = e.what();
  }
  s.unavailable = true;
  const dnnl_version_t* v = dnnl_version();
  std::fprintf(stderr,
               "matmul: oneDNN %d.%d.%d has no bf16 matmul for this CPU (%s); bf16 products "
               "convert to f32 for sgemm\n",
               v->major, v->minor, v->patch, why.c_str());
  return false;
}

}  // namespace

void SetDnnlGemmEnabled(bool on) { enabled = on; }

bool DnnlGemmBf16(const Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb) {
  if (!enabled) return false;
  const int64_t batch = out.size(0), m = out.size(1), n = out.size(2);
  const int64_t k = ta ? a.size(1) : a.size(2);
  const int threads = NumThreads();
  DnnlState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.unavailable) return false;
  dnnl::matmul matmul;
  if (!Primitive(s, Key{ta, tb, m, n, k, threads}, &matmul)) return false;
  // oneDNN's OpenMP runtime takes its thread count from the calling thread's setting.
  omp_set_num_threads(threads);
  using dt = dnnl::memory::data_type;
  const auto* pa = static_cast<const uint16_t*>(a.raw_data());
  const auto* pb = static_cast<const uint16_t*>(b.raw_data());
  float* po = static_cast<float*>(out.raw_data());
  const int64_t a_step = a.size(0) == 1 ? 0 : m * k, b_step = b.size(0) == 1 ? 0 : k * n;
  dnnl::stream stream(s.engine);
  for (int64_t i = 0; i < batch; ++i) {
    // oneDNN takes non-const handles; it does not write to the source or the weights.
    dnnl::memory src(Matrix(m, k, ta, dt::bf16), s.engine, const_cast<uint16_t*>(pa + i * a_step));
    dnnl::memory weights(Matrix(k, n, tb, dt::bf16), s.engine,
                         const_cast<uint16_t*>(pb + i * b_step));
    dnnl::memory dst(Matrix(m, n, false, dt::f32), s.engine, po + i * m * n);
    matmul.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}});
  }
  stream.wait();
  return true;
}

bool DnnlGemmAvailable() {
  if (!enabled) return false;
  DnnlState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.unavailable) return false;
  dnnl::matmul unused;
  return Primitive(s, Key{false, true, 1, 16, 32, NumThreads()}, &unused);
}

}  // namespace sdpo::cpu
