// Collective checks for comm_test.sh, on however many ranks mpirun starts (one process without
// mpirun: LocalCommunicator). Every rank can generate every rank's inputs (counter-based RNG), so
// it computes the expected results itself:
//   - AllReduceSum of a mixed f32/f64 tensor list in buckets of 8 B, 100 B, 4 KiB and 25 MiB
//     (tensors split across buckets) equals the unbucketed result (bit for bit on <= 2 ranks,
//     where a sum of two operands does not depend on the order) and the reference sum;
//   - ReduceScatterShard / AllGatherShards for sizes not divisible by the world size (numel <
//     world, odd primes, one chunk and many chunks);
//   - Broadcast of tensors in buckets;
//   - ZeroAdamW over uneven parameter sizes equals nn::AdamW on the summed gradients, and its
//     gathered state dict equals AdamW's, and LoadStateDict of it continues identically.
// Prints "comm_check (rank R of N): P passed, F failed"; exit status 1 when any failed.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "io/command_line.h"
#include "nn/optim.h"
#include "tensor/ops.h"
#include "trainers/distributed/mpi_communicator.h"
#include "trainers/distributed/sharding.h"
#include "trainers/distributed/zero.h"

namespace sdpo::distributed {
namespace {

int passed = 0, failed = 0;
int my_rank = 0;

void Expect(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::fprintf(stderr, "comm_check (rank %d): FAILED: %s\n", my_rank, what.c_str());
  }
}

// max |a - b| / max(1e-30, max |b|) over all elements.
double RelDiff(const Tensor& a, const Tensor& b) {
  std::vector<double> va = a.ToVector(), vb = b.ToVector();
  if (va.size() != vb.size()) return INFINITY;
  double d = 0, m = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    d = std::max(d, std::abs(va[i] - vb[i]));
    m = std::max(m, std::abs(vb[i]));
  }
  return d / std::max(1e-30, m);
}

// Rank r's k-th input tensor.
Tensor Input(int64_t numel, DType dtype, int rank, int k) {
  return ops::Cast(ops::RandomNormal({numel}, 1000 + k, static_cast<uint64_t>(rank) << 32), dtype);
}

void CheckAllReduce(Communicator& comm) {
  const int world = comm.world_size();
  const std::vector<std::pair<int64_t, DType>> specs = {
      {1, kF32}, {37, kF64}, {1000, kF32}, {3, kF32}, {2049, kF64}, {0, kF32}, {5003, kF32}};
  std::vector<Tensor> reference;  // in f64
  for (size_t k = 0; k < specs.size(); ++k) {
    Tensor sum = Tensor::Zeros({specs[k].first}, kF64);
    for (int r = 0; r < world; ++r) {
      sum = ops::Add(sum, ops::Cast(Input(specs[k].first, specs[k].second, r, k), kF64));
    }
    reference.push_back(sum);
  }
  std::vector<Tensor> unbucketed;
  for (int64_t bytes : {int64_t{25} << 20, int64_t{4096}, int64_t{100}, int64_t{8}}) {
    CommOptions o = comm.options();
    o.bucket_bytes = bytes;
    comm.set_options(o);
    std::vector<Tensor> t;
    for (size_t k = 0; k < specs.size(); ++k) {
      t.push_back(Input(specs[k].first, specs[k].second, comm.rank(), k));
    }
    comm.AllReduceSum(t);
    for (size_t k = 0; k < specs.size(); ++k) {
      const std::string what =
          absl::StrCat("AllReduceSum tensor ", k, " (", specs[k].first, " ",
                       DTypeName(specs[k].second), "), buckets of ", bytes, " bytes");
      const double tol = specs[k].second == kF32 ? 1e-6 : 1e-14;
      Expect(RelDiff(ops::Cast(t[k], kF64), reference[k]) <= tol, what + ": vs the reference");
      if (unbucketed.empty()) continue;
      const double rel = RelDiff(t[k], unbucketed[k]);
      Expect(world <= 2 ? rel == 0 : rel <= tol, absl::StrCat(what, ": vs one bucket, rel ", rel));
    }
    if (unbucketed.empty()) unbucketed = t;
  }
  comm.set_options({});
}

void CheckShards(Communicator& comm) {
  const int world = comm.world_size();
  for (int64_t numel :
       {int64_t{1}, int64_t{2}, int64_t{7}, int64_t{1000}, int64_t{1001}, int64_t{30011}}) {
    for (int64_t bytes : {int64_t{25} << 20, int64_t{64}}) {
      CommOptions o;
      o.bucket_bytes = bytes;
      comm.set_options(o);
      const ShardLayout layout(numel, world);
      const std::string what =
          absl::StrCat("numel ", numel, " over ", world, " ranks, chunks of ", bytes, " bytes");
      Expect(layout.shard_size * world >= numel && (layout.shard_size - 1) * world < numel,
             what + ": shard size");
      Expect(layout.begin(0) == 0 && layout.end(world - 1) == numel, what + ": coverage");
      // Reduce-scatter: this rank's shard of the sum, zero in the padding.
      Tensor sum = Tensor::Zeros({numel}, kF64);
      for (int r = 0; r < world; ++r)
        sum = ops::Add(sum, ops::Cast(Input(numel, kF32, r, 7), kF64));
      Tensor shard = ReduceScatterShard(comm, Input(numel, kF32, comm.rank(), 7));
      Expect(shard.numel() == layout.shard_size, what + ": shard numel");
      const int64_t a = layout.begin(comm.rank()), n = layout.owned(comm.rank());
      Tensor expect = Tensor::Zeros({layout.shard_size}, kF64);
      if (n > 0) ops::CopyInto(ops::Narrow(expect, 0, 0, n), ops::Narrow(sum, 0, a, n));
      Expect(RelDiff(ops::Cast(shard, kF64), expect) <= 1e-6, what + ": reduce-scatter");
      // All-gather: every rank's shard (rank r's is r + 0.5 + i) back in order, padding dropped.
      std::vector<double> mine(layout.shard_size), full;
      for (int64_t i = 0; i < layout.shard_size; ++i) mine[i] = comm.rank() + 0.5 + i;
      for (int r = 0; r < world; ++r) {
        for (int64_t i = 0; i < layout.owned(r); ++i) full.push_back(r + 0.5 + i);
      }
      Tensor gathered =
          AllGatherShards(comm, Tensor::FromVector(mine, {layout.shard_size}, kF64), numel);
      Expect(gathered.numel() == numel &&
                 RelDiff(gathered, Tensor::FromVector(full, {numel}, kF64)) == 0,
             what + ": all-gather");
    }
  }
  comm.set_options({});
}

void CheckBroadcast(Communicator& comm) {
  CommOptions o;
  o.bucket_bytes = 40;
  comm.set_options(o);
  const int root = comm.world_size() - 1;
  std::vector<Tensor> t = {Input(17, kF32, comm.rank(), 1), Input(5, kF64, comm.rank(), 2),
                           Input(33, kF32, comm.rank(), 3)};
  comm.Broadcast(t, root);
  for (int k = 0; k < 3; ++k) {
    Expect(RelDiff(t[k], Input(t[k].numel(), t[k].dtype(), root, k + 1)) == 0,
           absl::StrCat("Broadcast tensor ", k, " from rank ", root, " in 40-byte buckets"));
  }
  comm.set_options({});
}

// ZeroAdamW on this world vs nn::AdamW on one process given the summed gradients.
void CheckZero(Communicator& comm) {
  const int world = comm.world_size();
  const std::vector<Shape> shapes = {{3, 5}, {7}, {1}, {4, 4, 2}, {11}};
  auto make_params = [&]() {
    nn::NamedTensors params;
    for (size_t k = 0; k < shapes.size(); ++k) {
      Tensor p = ops::Contiguous(ops::RandomNormal(shapes[k], 50, k * 1000));
      p.set_requires_grad(true);
      params.push_back({absl::StrCat("p", k), p});
    }
    return params;
  };
  nn::AdamWOptions opt;
  opt.lr = 0.01;
  opt.weight_decay = 0.1;
  opt.decays = [](const std::string& name) { return name != "p2"; };
  nn::NamedTensors sharded = make_params(), replicated = make_params();
  ZeroAdamW zero(sharded, opt, comm);
  nn::AdamW adamw(replicated, opt);
  Expect(zero.layout().numel == 15 + 7 + 1 + 32 + 11, "ZeRO: flat numel");
  auto grad_of = [](const Tensor& p, int rank, int step, size_t k) {
    return ops::Reshape(ops::MulScalar(ops::RandomNormal({p.numel()}, 60 + step,
                                                         (k << 40) + (uint64_t(rank) << 20)),
                                       step == 2 ? 5.0 : 0.3),
                        p.shape());
  };
  for (int step = 1; step <= 3; ++step) {
    const double lr = 0.01 * step;
    for (size_t k = 0; k < shapes.size(); ++k) {
      sharded[k].second.set_grad(grad_of(sharded[k].second, comm.rank(), step, k));
      Tensor sum = Tensor::Zeros(shapes[k], kF32);
      for (int r = 0; r < world; ++r) sum = ops::Add(sum, grad_of(sharded[k].second, r, step, k));
      replicated[k].second.set_grad(sum);
    }
    // Step 2's gradients are large: clipping at 1.0 is active there.
    ZeroAdamW::StepResult z = zero.Step(lr, 1.0);
    const double norm = nn::ClipGradNorm(
        [&] {
          std::vector<Tensor> ps;
          for (auto& [n, p] : replicated) ps.push_back(p);
          return ps;
        }(),
        1.0);
    adamw.set_lr(lr);
    adamw.Step();
    Expect(z.finite && std::abs(z.grad_norm - norm) <= 1e-9 * norm,
           absl::StrCat("ZeRO step ", step, ": grad norm ", z.grad_norm, " vs ", norm));
    for (size_t k = 0; k < shapes.size(); ++k) {
      const double rel = RelDiff(sharded[k].second, replicated[k].second);
      Expect(rel <= 1e-6, absl::StrCat("ZeRO step ", step, ": p", k, " rel ", rel));
    }
  }
  nn::TensorMap gathered = zero.GatherStateDict(), expected = adamw.StateDict();
  Expect(gathered.size() == expected.size(), "ZeRO state dict: key count");
  for (const auto& [key, t] : expected) {
    auto it = gathered.find(key);
    Expect(
        it != gathered.end() && it->second.shape() == t.shape() && RelDiff(it->second, t) <= 1e-5,
        "ZeRO state dict: " + key);
  }
  // A second ZeroAdamW loaded from the gathered state continues exactly like the first.
  nn::NamedTensors copy = make_params();
  for (size_t k = 0; k < copy.size(); ++k) ops::CopyInto(copy[k].second, sharded[k].second);
  ZeroAdamW resumed(copy, opt, comm);
  resumed.LoadStateDict(gathered);
  for (size_t k = 0; k < shapes.size(); ++k) {
    Tensor g = grad_of(sharded[k].second, comm.rank(), 4, k);
    sharded[k].second.set_grad(g);
    copy[k].second.set_grad(g);
  }
  zero.Step(0.02, 1.0);
  resumed.Step(0.02, 1.0);
  for (size_t k = 0; k < shapes.size(); ++k) {
    Expect(RelDiff(copy[k].second, sharded[k].second) == 0,
           absl::StrCat("ZeRO LoadStateDict then Step: p", k, " identical"));
  }
}

int Main() {
  std::unique_ptr<Communicator> comm = MakeCommunicator();
  my_rank = comm->rank();
  try {
    CheckAllReduce(*comm);
    CheckShards(*comm);
    CheckBroadcast(*comm);
    CheckZero(*comm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "comm_check (rank %d of %d): error: %s\n", comm->rank(),
                 comm->world_size(), e.what());
    if (comm->world_size() > 1) comm->Abort(1);
    return 1;
  }
  std::printf("comm_check (rank %d of %d, %s): %d passed, %d failed\n", comm->rank(),
              comm->world_size(), comm->name().c_str(), passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace sdpo::distributed

int main(int argc, char** argv) {
  sdpo::ParseCommandLine(argc, argv,
                         "the collectives on this process's world (no flags; run it "
                         "alone or under mpirun -np N)");
  return sdpo::distributed::Main();
}
