// Fiber scheduler behind emu_device.h: one block at a time, its threads as ucontext fibers,
// round-robin until every thread has returned. Barriers count the threads (or the warp's lanes)
// that have not returned yet. A full round in which no thread makes progress is a deadlock and
// aborts with the kernel's launch shape.
#include "tensor/cuda/emu/emu_device.h"

#include <setjmp.h>
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <vector>

namespace sdpo::emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kDefaultSmemLimit = 48 * 1024;
constexpr size_t kMaxSmemOptIn = 227 * 1024;

// Fibers start with makecontext/setcontext; every later switch is _setjmp/_longjmp, which,
// unlike swapcontext, makes no system call (the signal mask is left alone).
struct Fiber {
  ucontext_t ctx;
  jmp_buf jb;
  uint3 tid;
  int linear = 0;
  bool started = false;
  bool started_running = false;
  bool done = false;
};

struct BlockRun {
  dim3 grid, block;
  uint3 block_idx;
  std::vector<Fiber> fibers;
  jmp_buf scheduler;
  int current = -1;
  int live = 0;
  int block_arrived = 0;
  uint64_t block_gen = 0;
  std::vector<int> warp_live, warp_arrived;
  std::vector<uint64_t> warp_gen;
  std::vector<uint32_t> warp_scratch;
  std::vector<unsigned char> dyn_smem;
  uint64_t events = 0;  // barrier arrivals, releases and thread exits: progress marker
  const std::function<void()>* body = nullptr;
};

BlockRun* g_run = nullptr;
std::vector<std::unique_ptr<char[]>> g_stacks;
std::map<const void*, int>& SmemLimits() {
  static std::map<const void*, int> m;
  return m;
}

Fiber& Me() { return g_run->fibers[g_run->current]; }

void Yield() {
  Fiber& f = Me();
  if (_setjmp(f.jb) == 0) _longjmp(g_run->scheduler, 1);
}

void Trampoline() {
  BlockRun& r = *g_run;
  (*r.body)();
  Fiber& f = Me();
  f.done = true;
  ++r.events;
  --r.live;
  int w = f.linear / 32;
  --r.warp_live[w];
  // A thread that leaves may complete a barrier the others wait on.
  if (r.block_arrived > 0) {
    std::fprintf(stderr,
                 "emu: a thread of block (%u,%u,%u) returned while others wait in __syncthreads "
                 "(undefined on a GPU)\n",
                 r.block_idx.x, r.block_idx.y, r.block_idx.z);
    std::abort();
  }
  if (r.warp_arrived[w] > 0) {
    std::fprintf(stderr, "emu: a lane returned while others of its warp wait in a warp sync\n");
    std::abort();
  }
  _longjmp(r.scheduler, 1);  // never returns
}

}  // namespace

const uint3& ThreadIdx() { return Me().tid; }
const uint3& BlockIdx() { return g_run->block_idx; }
const dim3& BlockDim() { return g_run->block; }
const dim3& GridDim() { return g_run->grid; }
int LaneId() { return Me().linear % 32; }
void* DynamicSmem() { return g_run->dyn_smem.data(); }
uint32_t* WarpScratch() { return g_run->warp_scratch.data() + (Me().linear / 32) * 32 * 8; }

void SyncThreads() {
  BlockRun& r = *g_run;
  const uint64_t gen = r.block_gen;
  ++r.events;
  if (++r.block_arrived == r.live) {
    r.block_arrived = 0;
    ++r.block_gen;
    return;
  }
  while (r.block_gen == gen) Yield();
}

void SyncWarp() {
  BlockRun& r = *g_run;
  const int w = Me().linear / 32;
  const uint64_t gen = r.warp_gen[w];
  ++r.events;
  if (++r.warp_arrived[w] == r.warp_live[w]) {
    r.warp_arrived[w] = 0;
    ++r.warp_gen[w];
    return;
  }
  while (r.warp_gen[w] == gen) Yield();
}

void SetMaxDynamicSmem(const void* kernel, int bytes) { SmemLimits()[kernel] = bytes; }

void Launch(const void* kernel, dim3 grid, dim3 block, size_t dynamic_smem,
            const std::function<void()>& body) {
  const int nthreads = static_cast<int>(block.x * block.y * block.z);
  if (nthreads <= 0 || nthreads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.y > 65535 || grid.z > 65535) {
    std::fprintf(stderr, "emu: invalid launch grid (%u,%u,%u) block (%u,%u,%u)\n", grid.x, grid.y,
                 grid.z, block.x, block.y, block.z);
    std::abort();
  }
  size_t limit = kDefaultSmemLimit;
  auto it = SmemLimits().find(kernel);
  if (it != SmemLimits().end()) limit = static_cast<size_t>(it->second);
  if (dynamic_smem > limit || dynamic_smem > kMaxSmemOptIn) {
    std::fprintf(stderr,
                 "emu: launch asks for %zu bytes of dynamic shared memory, over the kernel's "
                 "limit of %zu (cudaFuncSetAttribute missing?)\n",
                 dynamic_smem, limit);
    std::abort();
  }
  while (g_stacks.size() < static_cast<size_t>(nthreads)) {
    g_stacks.emplace_back(new char[kStackBytes]);
  }
  BlockRun run;
  run.grid = grid;
  run.block = block;
  run.body = &body;
  const int warps = (nthreads + 31) / 32;
  run.warp_scratch.assign(static_cast<size_t>(warps) * 32 * 8, 0xdeadbeefu);
  run.dyn_smem.resize(dynamic_smem + 16);
  BlockRun* saved = g_run;
  g_run = &run;
  for (unsigned bz = 0; bz < grid.z; ++bz) {
    for (unsigned by = 0; by < grid.y; ++by) {
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        run.block_idx = {bx, by, bz};
        run.fibers.assign(nthreads, Fiber());
        run.live = nthreads;
        run.block_arrived = 0;
        run.warp_live.assign(warps, 0);
        run.warp_arrived.assign(warps, 0);
        run.warp_gen.assign(warps, 0);
        // Poison shared memory so that reads of unwritten shared data are visible.
        std::memset(run.dyn_smem.data(), 0xff, run.dyn_smem.size());
        for (int t = 0; t < nthreads; ++t) {
          Fiber& f = run.fibers[t];
          f.linear = t;
          f.tid = {static_cast<unsigned>(t % block.x),
                   static_cast<unsigned>((t / block.x) % block.y),
                   static_cast<unsigned>(t / (block.x * block.y))};
          ++run.warp_live[t / 32];
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = g_stacks[t].get();
          f.ctx.uc_stack.ss_size = kStackBytes;
          f.ctx.uc_link = nullptr;
          makecontext(&f.ctx, Trampoline, 0);
        }
        int remaining = nthreads;
        while (remaining > 0) {
          const uint64_t before = run.events;
          bool any_started = false;
          for (int t = 0; t < nthreads; ++t) {
            Fiber& f = run.fibers[t];
            if (f.done) continue;
            if (!f.started) {
              f.started = true;
              any_started = true;
            }
            run.current = t;
            if (_setjmp(run.scheduler) == 0) {
              if (f.started_running) {
                _longjmp(f.jb, 1);
              } else {
                f.started_running = true;
                setcontext(&f.ctx);
              }
            }
            if (f.done) --remaining;
          }
          if (remaining > 0 && run.events == before && !any_started) {
            std::fprintf(stderr,
                         "emu: deadlock in block (%u,%u,%u) of grid (%u,%u,%u), block "
                         "(%u,%u,%u): threads wait on barriers that cannot complete\n",
                         bx, by, bz, grid.x, grid.y, grid.z, block.x, block.y, block.z);
            std::abort();
          }
        }
      }
    }
  }
  g_run = saved;
}

void Mma16816(bool bf16, float d[4], const uint32_t a[4], const uint32_t b[2],
              const float c[4]) {
  uint32_t* s = WarpScratch();
  const int lane = LaneId();
  for (int i = 0; i < 4; ++i) s[lane * 8 + i] = a[i];
  s[lane * 8 + 4] = b[0];
  s[lane * 8 + 5] = b[1];
  SyncWarp();
  auto half_to_float = [bf16](uint32_t word, int hi) {
    uint32_t h = hi ? (word >> 16) : (word & 0xffffu);
    if (bf16) return __uint_as_float(h << 16);
    // IEEE half -> float
    uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0x1f) {
      u = sign | 0x7f800000u | (m << 13);
    } else if (e == 0) {
      if (m == 0) {
        u = sign;
      } else {
        int k = -1;
        do {
          ++k;
          m <<= 1;
        } while ((m & 0x400u) == 0);
        u = sign | (static_cast<uint32_t>(127 - 15 - k) << 23) | ((m & 0x3ffu) << 13);
      }
    } else {
      u = sign | ((e + 127 - 15) << 23) | (m << 13);
    }
    return __uint_as_float(u);
  };
  auto A = [&](int r, int k) {
    int src = (r % 8) * 4 + (k % 8) / 2;
    int reg = (r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    return half_to_float(s[src * 8 + reg], k % 2);
  };
  auto B = [&](int k, int n) {
    int src = n * 4 + (k % 8) / 2;
    int reg = 4 + (k >= 8 ? 1 : 0);
    return half_to_float(s[src * 8 + reg], k % 2);
  };
  const int g = lane >> 2, t = lane & 3;
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int r = g + (i >= 2 ? 8 : 0), n = 2 * t + (i & 1);
    float acc = c[i];
    for (int k = 0; k < 16; ++k) acc += A(r, k) * B(k, n);
    out[i] = acc;
  }
  SyncWarp();
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

}  // namespace sdpo::emu
