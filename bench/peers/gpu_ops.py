#!/usr/bin/env python3
"""PyTorch side of tools/gpu/check.sh: the same GPU micro-benchmarks as bench/cuda/cuda_bench.cc,
one JSON line per measurement (stdout, and --json FILE).

  gemm_bf16_8192            TFLOP/s, torch.matmul of two 8192^3 bf16 matrices
  copy_d2d                  GB/s (read + write), Tensor.copy_ of 1 GiB f32
  add_bf16                  GB/s, x + y on 2^28 bf16 elements
  attn_{fwd,bwd,fwdbwd}_L*  TFLOP/s, F.scaled_dot_product_attention bf16 [1, 12, L, 128]
                            (forward 4*B*H*L^2*D flops, backward 2.5x forward)
  layer_norm_{fwd,bwd}      GB/s, F.layer_norm bf16 [32760, 1536] with weight and bias

Random inputs, warm-up first, median of CUDA-event timings.
"""
import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F


def time_ms(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


class Emitter:
    def __init__(self, path):
        self.file = open(path, "w") if path else None

    def __call__(self, name, value, unit, **extra):
        rec = {"impl": "torch", "name": name, "value": round(float(value), 4), "unit": unit}
        rec.update(extra)
        line = json.dumps(rec)
        print(line, flush=True)
        if self.file:
            self.file.write(line + "\n")
            self.file.flush()


def bench_gemm(emit):
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = time_ms(lambda: torch.matmul(a, b), 3, 10)
    emit("gemm_bf16_8192", 2 * n**3 / (ms * 1e-3) / 1e12, "TFLOP/s")


def bench_copy(emit):
    n = 1 << 28
    a = torch.rand(n, device="cuda", dtype=torch.float32)
    b = torch.empty_like(a)
    ms = time_ms(lambda: b.copy_(a), 2, 10)
    emit("copy_d2d", 2 * 4 * n / (ms * 1e-3) / 1e9, "GB/s")
    x = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    ms = time_ms(lambda: x + y, 2, 10)
    emit("add_bf16", 3 * 2 * n / (ms * 1e-3) / 1e9, "GB/s")


def bench_attention(emit, L):
    B, H, D = 1, 12, 128
    q, k, v = (torch.randn(B, H, L, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    dout = torch.randn(B, H, L, D, device="cuda", dtype=torch.bfloat16)
    flops = 4.0 * B * H * L * L * D
    reps = 3 if L >= 16384 else 10
    with torch.no_grad():
        fwd = time_ms(lambda: F.scaled_dot_product_attention(q, k, v), 1, reps)
    out = F.scaled_dot_product_attention(q, k, v)
    bwd = time_ms(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True), 1, reps)
    emit(f"attn_fwd_L{L}", flops / (fwd * 1e-3) / 1e12, "TFLOP/s")
    emit(f"attn_bwd_L{L}", 2.5 * flops / (bwd * 1e-3) / 1e12, "TFLOP/s")
    emit(f"attn_fwdbwd_L{L}", 3.5 * flops / ((fwd + bwd) * 1e-3) / 1e12, "TFLOP/s")


def bench_layer_norm(emit):
    rows, d = 32760, 1536
    x = torch.randn(rows, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    b = torch.randn(d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dy = torch.randn(rows, d, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        fwd = time_ms(lambda: F.layer_norm(x, (d,), w, b, 1e-6), 3, 20)
    y = F.layer_norm(x, (d,), w, b, 1e-6)
    bwd = time_ms(lambda: torch.autograd.grad(y, (x, w, b), dy, retain_graph=True), 3, 20)
    nbytes = 2.0 * rows * d
    emit("layer_norm_fwd", 2 * nbytes / (fwd * 1e-3) / 1e9, "GB/s")
    emit("layer_norm_bwd", 3 * nbytes / (bwd * 1e-3) / 1e9, "GB/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="also write the JSON lines here")
    parser.add_argument("--only", default="", help="substring filter on benchmark groups")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_ops.py: no CUDA device visible to torch", file=sys.stderr)
        return 0
    print(f"gpu_ops.py: torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)
    emit = Emitter(args.json)
    groups = [("gemm", bench_gemm), ("copy", bench_copy), ("layer_norm", bench_layer_norm),
              ("attn", lambda e: bench_attention(e, 4096)),
              ("attn", lambda e: bench_attention(e, 16384))]
    for key, fn in groups:
        if args.only and args.only not in key:
            continue
        try:
            fn(emit)
        except Exception as exc:  # keep going: the table shows what failed
            emit(key, 0.0, "error", error=str(exc)[:300])
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
