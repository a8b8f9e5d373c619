#!/usr/bin/env python3
"""PyTorch CPU peer for the engine-op benchmarks (issue 2).

Times f32 matmul, layer_norm forward+backward and attention forward(+backward) with
torch on a fixed number of threads (default 2), and prints one JSON line per case:
name, shape, median_s, min_s, gflops (from the median) and gflops_best (from the min),
torch version, the BLAS library this process mapped, the OpenBLAS core (kernel) it chose,
and the OPENBLAS_* environment.

Run with Debian's python (where python3-torch lands), not the pyenv one:
    /usr/bin/python3 bench/peers/cpu_ops.py [--threads 2] [--quick]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import (emit, env_info, openblas_info, set_openblas_threads, summarize,  # noqa
                    time_fn)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    ap.add_argument("--only", default="", help="comma-separated case-name prefixes")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    set_openblas_threads(a.threads)
    torch.manual_seed(0)
    blas = openblas_info()
    common_fields = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": blas["blas"],
        "openblas_core": blas.get("openblas_core", "n/a"),
        "openblas_threads": blas.get("openblas_threads", "n/a"),
        "env": env_info(),
    }
    only = [s for s in a.only.split(",") if s]

    def want(name):
        return not only or any(name.startswith(p) for p in only)

    def rep(n):
        return max(2, n // 3) if a.quick else n

    def report(name, shape, ts, flops=None, extra=None):
        rec = {"name": name, "shape": shape}
        rec.update(summarize(ts))
        if flops is not None:
            rec["gflops"] = flops / rec["median_s"] / 1e9
            rec["gflops_best"] = flops / rec["min_s"] / 1e9
        else:
            rec["gflops"] = None
        if extra:
            rec.update(extra)
        rec.update(common_fields)
        emit(rec)

    # ---- f32 matmul [M,K] x [K,N] ---------------------------------------------------------
    for (m, n, k), reps in (((1024, 1024, 1024), 20), ((4096, 1536, 1536), 10)):
        name = "matmul_f32_%dx%dx%d" % (m, n, k)
        if not want(name):
            continue
        x = torch.randn(m, k)
        w = torch.randn(k, n)
        out = torch.empty(m, n)
        ts = time_fn(lambda: torch.matmul(x, w, out=out), rep(reps), warmup=2)
        report(name, {"M": m, "N": n, "K": k}, ts, 2.0 * m * n * k)

    # ---- layer_norm with affine, [8192, 1536] f32 ----------------------------------------
    rows, d = 8192, 1536
    if want("layer_norm"):
        x = torch.randn(rows, d, requires_grad=True)
        wt = torch.randn(d, requires_grad=True)
        bs = torch.randn(d, requires_grad=True)
        gy = torch.randn(rows, d)

        def ln_fwd():
            with torch.no_grad():
                F.layer_norm(x, (d,), wt, bs, 1e-6)

        def ln_fwd_bwd():
            y = F.layer_norm(x, (d,), wt, bs, 1e-6)
            x.grad = wt.grad = bs.grad = None
            y.backward(gy)

        nbytes = rows * d * 4
        ts = time_fn(ln_fwd, rep(20), warmup=2)
        report("layer_norm_f32_fwd", [rows, d], ts,
               extra={"gbytes_per_s": 2 * nbytes / min(ts) / 1e9, "affine": True})
        ts = time_fn(ln_fwd_bwd, rep(15), warmup=2)
        report("layer_norm_f32_fwd_bwd", [rows, d], ts, extra={"affine": True})

    # ---- attention: B=1, L=1024, 12 heads, head dim 128, f32 -----------------------------
    b, h, L, hd = 1, 12, 1024, 128
    core_fwd = 4.0 * b * h * L * L * hd  # QK^T + PV
    shape = {"B": b, "L": L, "heads": h, "head_dim": hd}
    q = torch.randn(b, h, L, hd, requires_grad=True)
    k = torch.randn(b, h, L, hd, requires_grad=True)
    v = torch.randn(b, h, L, hd, requires_grad=True)
    go = torch.randn(b, h, L, hd)
    scale = hd ** -0.5

    def attn_math():
        s = torch.matmul(q, k.transpose(-1, -2)) * scale
        return torch.matmul(torch.softmax(s, dim=-1), v)

    impls = [("attention_math", attn_math, "softmax(q k^T * scale) v, plain ops")]
    if hasattr(F, "scaled_dot_product_attention"):
        impls.append(("attention_sdpa",
                      lambda: F.scaled_dot_product_attention(q, k, v),
                      "torch.nn.functional.scaled_dot_product_attention"))
    elif hasattr(F, "_scaled_dot_product_attention"):
        # torch 1.13 has only the private prototype (returns (out, weights)).
        impls.append(("attention_sdpa_private",
                      lambda: F._scaled_dot_product_attention(q, k, v)[0],
                      "torch.nn.functional._scaled_dot_product_attention (private, 1.13)"))
    for name, fn, impl in impls:
        if not want(name):
            continue

        def fwd(fn=fn):
            with torch.no_grad():
                fn()

        def fwd_bwd(fn=fn):
            q.grad = k.grad = v.grad = None
            fn().backward(go)

        ts = time_fn(fwd, rep(10), warmup=2)
        report(name + "_f32_fwd", shape, ts, core_fwd, {"impl": impl})
        # backward of the core is 2x forward (dS, dV, dQ, dK: 4 matmuls vs 2)
        ts = time_fn(fwd_bwd, rep(8), warmup=2)
        report(name + "_f32_fwd_bwd", shape, ts, 3.0 * core_fwd, {"impl": impl})
    if not hasattr(F, "scaled_dot_product_attention"):
        emit({"name": "attention_sdpa", "status": "absent",
              "note": "torch.nn.functional.scaled_dot_product_attention is not in torch %s"
              % torch.__version__, "torch": torch.__version__})


if __name__ == "__main__":
    main()
