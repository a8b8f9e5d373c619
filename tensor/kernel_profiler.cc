#include "tensor/kernel_profiler.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <initializer_list>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tensor/kernels.h"

namespace sdpo {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double BytesOf(std::initializer_list<const Tensor*> ts) {
  double b = 0;
  for (const Tensor* t : ts) {
    if (t->defined()) b += static_cast<double>(t->numel() * ElementSize(t->dtype()));
  }
  return b;
}

// "bf16[2, 9360, 1536]" plus "~" when the view is not contiguous.
std::string Describe(const Tensor& t) {
  if (!t.defined()) return "-";
  return absl::StrCat(DTypeName(t.dtype()), ShapeStr(t.shape()), t.is_contiguous() ? "" : "~");
}

const char* ReduceName(ReduceKind k) {
  switch (k) {
    case ReduceKind::kSum: return "sum";
    case ReduceKind::kMean: return "mean";
    case ReduceKind::kMax: return "max";
    case ReduceKind::kArgMax: return "argmax";
    case ReduceKind::kVar: return "var";
  }
  return "?";
}

}  // namespace

// Forwards every call to the wrapped kernels, timed between two synchronisations.
class KernelProfiler::Decorator final : public Kernels {
 public:
  Decorator(KernelProfiler* p, Kernels* inner) : p_(p), k_(inner) {}

  template <typename F>
  auto Timed(const std::string& key, double bytes, F&& f) -> decltype(f()) {
    p_->Sync();
    const double t0 = Now();
    if constexpr (std::is_void_v<decltype(f())>) {
      f();
      p_->Sync();
      p_->Add(key, Now() - t0, bytes);
    } else {
      auto r = f();
      p_->Sync();
      p_->Add(key, Now() - t0, bytes);
      return r;
    }
  }

  void Fill(const Tensor& out, double value) override {
    Timed(absl::StrCat("Fill ", Describe(out)), BytesOf({&out}), [&] { k_->Fill(out, value); });
  }
  void Copy(const Tensor& dst, const Tensor& src) override {
    Timed(absl::StrCat("Copy ", Describe(dst), " <- ", Describe(src)), BytesOf({&dst, &src}),
          [&] { k_->Copy(dst, src); });
  }
  void Unary(ops::UnaryOp op, const Tensor& out, const Tensor& x) override {
    Timed(absl::StrCat("Unary ", ops::UnaryOpName(op), " ", Describe(out), " <- ", Describe(x)),
          BytesOf({&out, &x}), [&] { k_->Unary(op, out, x); });
  }
  void Binary(ops::BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) override {
    Timed(absl::StrCat("Binary ", ops::BinaryOpName(op), " ", Describe(out), " <- ", Describe(a),
                       ", ", Describe(b)),
          BytesOf({&out, &a, &b}), [&] { k_->Binary(op, out, a, b); });
  }
  void Compare(ops::CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b) override {
    Timed(absl::StrCat("Compare ", Describe(a), ", ", Describe(b)), BytesOf({&out, &a, &b}),
          [&] { k_->Compare(op, out, a, b); });
  }
  void Where(const Tensor& out, const Tensor& c, const Tensor& a, const Tensor& b) override {
    Timed(absl::StrCat("Where ", Describe(out)), BytesOf({&out, &c, &a, &b}),
          [&] { k_->Where(out, c, a, b); });
  }
  void Clamp(const Tensor& out, const Tensor& x, double lo, double hi) override {
    Timed(absl::StrCat("Clamp ", Describe(out)), BytesOf({&out, &x}),
          [&] { k_->Clamp(out, x, lo, hi); });
  }
  void ReduceRows(ReduceKind kind, const Tensor& out, const Tensor& x,
                  int64_t correction) override {
    Timed(absl::StrCat("ReduceRows ", ReduceName(kind), " ", Describe(x)), BytesOf({&out, &x}),
          [&] { k_->ReduceRows(kind, out, x, correction); });
  }
  void ReduceMiddle(ReduceKind kind, const Tensor& out, const Tensor& x) override {
    Timed(absl::StrCat("ReduceMiddle ", ReduceName(kind), " ", Describe(x)), BytesOf({&out, &x}),
          [&] { k_->ReduceMiddle(kind, out, x); });
  }
  void SoftmaxRows(const Tensor& out, const Tensor& x, bool log) override {
    Timed(absl::StrCat("SoftmaxRows ", Describe(x)), BytesOf({&out, &x}),
          [&] { k_->SoftmaxRows(out, x, log); });
  }
  void Gemm(const Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb) override {
    Timed(absl::StrCat("Gemm ", Describe(out), " <- ", Describe(a), ta ? "T" : "", " x ",
                       Describe(b), tb ? "T" : ""),
          BytesOf({&out, &a, &b}), [&] { k_->Gemm(out, a, ta, b, tb); });
  }
  ops::NormResult LayerNorm(const Tensor& x, const Tensor& w, const Tensor& b,
                            double eps) override {
    return Timed(absl::StrCat("LayerNorm ", Describe(x)), 2 * BytesOf({&x}),
                 [&] { return k_->LayerNorm(x, w, b, eps); });
  }
  ops::NormGrads LayerNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                   const Tensor& mean, const Tensor& rstd,
                                   bool need_bias_grad) override {
    return Timed(absl::StrCat("LayerNormBackward ", Describe(x)), BytesOf({&dy, &x, &x}),
                 [&] { return k_->LayerNormBackward(dy, x, w, mean, rstd, need_bias_grad); });
  }
  ops::NormResult LayerNormModulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                    int64_t rpb, double eps) override {
    return Timed(absl::StrCat("LayerNormModulate ", Describe(x)), 2 * BytesOf({&x}),
                 [&] { return k_->LayerNormModulate(x, shift, scale, rpb, eps); });
  }
  ops::NormModulateGrads LayerNormModulateBackward(const Tensor& dy, const Tensor& x,
                                                   const Tensor& scale, const Tensor& mean,
                                                   const Tensor& rstd, int64_t rpb) override {
    return Timed(absl::StrCat("LayerNormModulateBackward ", Describe(x)), BytesOf({&dy, &x, &x}),
                 [&] { return k_->LayerNormModulateBackward(dy, x, scale, mean, rstd, rpb); });
  }
  ops::NormResult RmsNorm(const Tensor& x, const Tensor& w, double eps) override {
    return Timed(absl::StrCat("RmsNorm ", Describe(x)), 2 * BytesOf({&x}),
                 [&] { return k_->RmsNorm(x, w, eps); });
  }
  ops::NormGrads RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                 const Tensor& rstd) override {
    return Timed(absl::StrCat("RmsNormBackward ", Describe(x)), BytesOf({&dy, &x, &x}),
                 [&] { return k_->RmsNormBackward(dy, x, w, rstd); });
  }
  ops::AttentionResult Attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& mask, double scale) override {
    return Timed(absl::StrCat("Attention q", Describe(q), " k", Describe(k),
                              mask.defined() ? " masked" : ""),
                 BytesOf({&q, &k, &v, &q}), [&] { return k_->Attention(q, k, v, mask, scale); });
  }
  ops::AttentionGrads AttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                        const Tensor& v, const Tensor& mask, double scale,
                                        const Tensor& out, const Tensor& lse) override {
    return Timed(absl::StrCat("AttentionBackward q", Describe(q), " k", Describe(k),
                              mask.defined() ? " masked" : ""),
                 BytesOf({&dout, &q, &k, &v, &out, &q, &k, &v}),
                 [&] { return k_->AttentionBackward(dout, q, k, v, mask, scale, out, lse); });
  }
  Tensor Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout,
              bool inverse) override {
    return Timed(absl::StrCat("Rope ", Describe(x), inverse ? " inverse" : ""), 2 * BytesOf({&x}),
                 [&] { return k_->Rope(x, cos, sin, layout, inverse); });
  }
  void IndexRows(const Tensor& out, const Tensor& x, const Tensor& index) override {
    Timed(absl::StrCat("IndexRows ", Describe(out)), BytesOf({&out, &out}),
          [&] { k_->IndexRows(out, x, index); });
  }
  void IndexAddRows(const Tensor& out, const Tensor& index, const Tensor& src) override {
    Timed(absl::StrCat("IndexAddRows ", Describe(src)), BytesOf({&src, &src}),
          [&] { k_->IndexAddRows(out, index, src); });
  }
  void Gather(const Tensor& out, const Tensor& x, const Tensor& index) override {
    Timed(absl::StrCat("Gather ", Describe(out)), BytesOf({&out, &out, &index}),
          [&] { k_->Gather(out, x, index); });
  }
  void ScatterAdd(const Tensor& out, const Tensor& index, const Tensor& src) override {
    Timed(absl::StrCat("ScatterAdd ", Describe(src)), BytesOf({&src, &src, &index}),
          [&] { k_->ScatterAdd(out, index, src); });
  }
  bool FusedAdamW(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                  const AdamWStep& h) override {
    return Timed(absl::StrCat("FusedAdamW ", Describe(p)), BytesOf({&p, &g, &m, &v, &p, &m, &v}),
                 [&] { return k_->FusedAdamW(p, g, m, v, h); });
  }
  void Philox(const Tensor& out, uint64_t seed, uint64_t offset, bool normal) override {
    Timed(absl::StrCat("Philox ", Describe(out)), BytesOf({&out}),
          [&] { k_->Philox(out, seed, offset, normal); });
  }

 private:
  KernelProfiler* p_;
  Kernels* k_;
};

KernelProfiler::KernelProfiler(std::function<void()> sync) : sync_(std::move(sync)) {
  inner_ = &KernelsFor(Device::CUDA(0));  // throws without a CUDA backend
  decorator_ = new Decorator(this, inner_);
  RegisterCudaKernels(decorator_);
}

KernelProfiler::~KernelProfiler() {
  RegisterCudaKernels(inner_);
  delete decorator_;
}

void KernelProfiler::Reset() { entries_.clear(); }

void KernelProfiler::Add(const std::string& key, double seconds, double bytes) {
  Entry& e = entries_[key];
  e.calls += 1;
  e.seconds += seconds;
  e.bytes += bytes;
}

std::string KernelProfiler::Report(double wall_s, int top) const {
  std::vector<std::pair<std::string, Entry>> rows(entries_.begin(), entries_.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  std::map<std::string, Entry> kinds;
  double total = 0;
  for (const auto& [key, e] : rows) {
    Entry& k = kinds[key.substr(0, key.find(' '))];
    k.calls += e.calls;
    k.seconds += e.seconds;
    k.bytes += e.bytes;
    total += e.seconds;
  }
  std::string out;
  char line[512];
  auto row = [&](const std::string& name, const Entry& e) {
    std::snprintf(line, sizeof(line), "%9.1f %5.1f%% %7lld %9.1f %8.0f  %s\n", e.seconds * 1e3,
                  100.0 * e.seconds / std::max(wall_s, 1e-12), static_cast<long long>(e.calls),
                  e.seconds * 1e6 / static_cast<double>(std::max<int64_t>(1, e.calls)),
                  e.bytes / std::max(e.seconds, 1e-12) / 1e9, name.c_str());
    out += line;
  };
  out += "       ms  wall%   calls   mean us     GB/s  kernel\n";
  for (int i = 0; i < std::min<int>(top, static_cast<int>(rows.size())); ++i) {
    row(rows[i].first, rows[i].second);
  }
  out += "-- per kernel kind\n";
  std::vector<std::pair<std::string, Entry>> kr(kinds.begin(), kinds.end());
  std::sort(kr.begin(), kr.end(),
            [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  for (const auto& [name, e] : kr) row(name, e);
  std::snprintf(line, sizeof(line), "kernels %.1f ms, unattributed (host, sync) %.1f ms, wall %.1f ms\n",
                total * 1e3, (wall_s - total) * 1e3, wall_s * 1e3);
  out += line;
  return out;
}

}  // namespace sdpo
