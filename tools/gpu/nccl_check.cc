#include "tools/gpu/nccl_check.h"

#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tensor/cuda/cuda_available.h"
#include "tensor/error.h"
#include "tensor/ops.h"
#include "trainers/distributed/nccl_communicator.h"
#include "trainers/distributed/sharding.h"

namespace sdpo::distributed {
namespace {

const Device kGpu = Device::CUDA(0);

class Checks {
 public:
  void Expect(bool ok, const std::string& what) {
    ++(ok ? passed_ : failed_);
    if (!ok) std::printf("nccl: FAILED %s\n", what.c_str());
  }
  // Runs one group of checks; an exception counts as one failure.
  void Group(const std::string& name, const std::function<void()>& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      Expect(false, absl::StrCat(name, ": exception: ", e.what()));
    }
  }
  int passed() const { return passed_; }
  int failed() const { return failed_; }

 private:
  int passed_ = 0, failed_ = 0;
};

Tensor Cpu(int64_t numel, DType dtype, uint64_t seed) {
  return ops::Contiguous(ops::Cast(ops::RandomNormal({numel}, seed, 0), dtype));
}

bool Same(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && a.dtype() == b.dtype() && a.ToVector() == b.ToVector();
}

void SetBucket(Communicator& comm, int64_t bytes) {
  CommOptions o = comm.options();
  o.bucket_bytes = bytes;
  comm.set_options(o);
}

void RunAll(Communicator& comm, Checks& c) {
  c.Expect(comm.world_size() == 1 && comm.rank() == 0 && comm.name() == "nccl",
           "world of one named nccl");
  // All-reduce of a mixed list (one rank: the sum is the input), one bucket and 64-byte buckets
  // (tensors split across buckets, several tensors per bucket).
  for (int64_t bytes : {int64_t{25} << 20, int64_t{64}}) {
    c.Group(absl::StrCat("AllReduceSum, buckets of ", bytes, " B"), [&] {
      SetBucket(comm, bytes);
      const std::vector<std::pair<int64_t, DType>> specs = {
          {1000, kF32}, {37, kBF16}, {1, kF32}, {5003, kBF16}, {7, kF64}, {4099, kF32}};
      std::vector<Tensor> cpu, gpu;
      for (size_t k = 0; k < specs.size(); ++k) {
        cpu.push_back(Cpu(specs[k].first, specs[k].second, 10 + k));
        gpu.push_back(ops::To(cpu.back(), kGpu));
      }
      comm.AllReduceSum(gpu);
      for (size_t k = 0; k < specs.size(); ++k) {
        c.Expect(Same(ops::To(gpu[k], Device::CPU()), cpu[k]),
                 absl::StrCat("AllReduceSum tensor ", k, " (", specs[k].first, " ",
                              DTypeName(specs[k].second), "), buckets of ", bytes, " B"));
      }
    });
  }
  // Reduce-scatter and all-gather through the padded shard layout, one chunk and many.
  for (DType dtype : {kF32, kBF16}) {
    for (int64_t numel : {int64_t{1}, int64_t{7}, int64_t{1001}, (int64_t{1} << 20) + 3}) {
      for (int64_t bytes : {int64_t{25} << 20, int64_t{256}}) {
        const std::string what =
            absl::StrCat(DTypeName(dtype), " numel ", numel, ", chunks of ", bytes, " B");
        c.Group(what, [&] {
          SetBucket(comm, bytes);
          Tensor cpu = Cpu(numel, dtype, 99);
          Tensor shard = ReduceScatterShard(comm, ops::To(cpu, kGpu));
          c.Expect(shard.device() == kGpu && Same(ops::To(shard, Device::CPU()), cpu),
                   "ReduceScatterShard " + what);
          Tensor back = AllGatherShards(comm, shard, numel);
          c.Expect(back.device() == kGpu && Same(ops::To(back, Device::CPU()), cpu),
                   "AllGatherShards " + what);
        });
      }
    }
  }
  c.Group("Broadcast", [&] {
    SetBucket(comm, 40);
    std::vector<Tensor> cpu = {Cpu(17, kF32, 3), Cpu(300, kBF16, 4), Cpu(5, kF64, 5)};
    std::vector<Tensor> gpu;
    for (const Tensor& t : cpu) gpu.push_back(ops::To(t, kGpu));
    comm.Broadcast(gpu, 0);
    for (size_t k = 0; k < cpu.size(); ++k) {
      c.Expect(Same(ops::To(gpu[k], Device::CPU()), cpu[k]),
               absl::StrCat("Broadcast tensor ", k, " in 40-byte chunks"));
    }
  });
  SetBucket(comm, CommOptions().bucket_bytes);
  c.Group("host values", [&] {
    std::vector<double> v = {1.5, -2.25, 1e300};
    comm.AllReduceSum(v);
    c.Expect(v == std::vector<double>({1.5, -2.25, 1e300}), "AllReduceSum (doubles)");
    c.Expect(comm.AllGather(std::vector<double>{3.0, 4.0}) == std::vector<double>({3.0, 4.0}),
             "AllGather (doubles)");
    std::vector<uint64_t> u = {0xfedcba9876543210ull, 7};
    comm.Broadcast(u, 0);
    c.Expect(u == std::vector<uint64_t>({0xfedcba9876543210ull, 7}), "Broadcast (uint64)");
    comm.Barrier();
    c.Expect(true, "Barrier");
  });
  // Ordering: the input is produced by a kernel still queued on sdpo's stream when the
  // collective is called; the collective's output is read by the next kernel.
  c.Group("stream ordering", [&] {
    for (DType dtype : {kF32, kBF16}) {
      Tensor x = ops::To(Cpu(int64_t{1} << 24, dtype, 7), kGpu);
      Tensor y = ops::MulScalar(ops::Exp(x), 3.0);  // queued
      Tensor out = Tensor::Empty({y.numel()}, dtype, kGpu);
      comm.ReduceScatterSum(y, out);
      Tensor z = ops::AddScalar(out, 1.0);  // after the collective
      c.Expect(Same(ops::To(out, Device::CPU()), ops::To(y, Device::CPU())),
               absl::StrCat("ReduceScatterSum sees the queued producer (", DTypeName(dtype), ")"));
      c.Expect(
          Same(ops::To(z, Device::CPU()), ops::To(ops::AddScalar(y, 1.0), Device::CPU())),
          absl::StrCat("the next kernel sees the collective's output (", DTypeName(dtype), ")"));
    }
  });
  c.Group("argument errors", [&] {
    std::vector<Tensor> on_cpu = {Tensor::Zeros({4})};
    bool threw = false;
    try {
      comm.AllReduceSum(on_cpu);
    } catch (const Error& e) {
      threw =
          std::string(e.what()).find("expected a contiguous tensor on cuda:0") != std::string::npos;
    }
    c.Expect(threw, "a CPU tensor is rejected with a message naming the device");
    Tensor in = Tensor::Zeros({6}, kF32, kGpu), out = Tensor::Zeros({5}, kF32, kGpu);
    threw = false;
    try {
      comm.ReduceScatterSum(in, out);
    } catch (const Error&) {
      threw = true;
    }
    c.Expect(threw, "ReduceScatterSum with mismatched sizes is rejected");
  });
}

}  // namespace
}  // namespace sdpo::distributed

int RunNcclCheck() {
  using namespace sdpo::distributed;
  std::string why;
  const bool nccl = NcclAvailable(&why);
  if (!sdpo::CudaAvailable()) {
    std::printf("nccl: skipped (%s; %s)\nnccl: 0 passed, 0 failed\n", sdpo::CudaUnavailableReason(),
                why.c_str());
    return 0;
  }
  if (!nccl) {
    std::printf("nccl: unusable: %s\nnccl: 0 passed, 1 failed\n", why.c_str());
    return 1;
  }
  std::printf("nccl: %s, world size 1 on cuda:0\n", why.c_str());
  Checks c;
  try {
    CommOptions options;
    options.timeout_s = 60;
    std::unique_ptr<Communicator> comm = MakeNcclCommunicator(0, nullptr, options);
    RunAll(*comm, c);
  } catch (const std::exception& e) {
    c.Expect(false, std::string("communicator: ") + e.what());
  }
  std::printf("nccl: %d passed, %d failed\n", c.passed(), c.failed());
  return c.failed() == 0 ? 0 : 1;
}
