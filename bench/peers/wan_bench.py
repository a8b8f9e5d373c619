#!/usr/bin/env python3
"""PyTorch peer benchmarks of the Wan2.1 DiT (wan_peer.WanModel, random weights).

CPU (issue 4), the default: the small config (dim 512, 8 heads, ffn 2048, 4 layers,
text_len 512 x text_dim 4096, latent [16, 6, 26, 40] -> 6*13*20 = 1,560 tokens), float32,
2 threads. Two cases, each in a fresh subprocess so that the peak RSS is per case:
  fwd      forward under torch.no_grad()
  fwd_bwd  forward + MSE loss + backward (parameter gradients)
    /usr/bin/python3 bench/peers/wan_bench.py [--repeats 5]

GPU (issues 8/9): one "SDPO step" of the Wan2.1-1.3B architecture (dim 1536, 12 heads,
30 layers, ffn 8960) with random weights, latent [16, 6, 60, 104] (9,360 tokens), text 512,
bf16 autocast: reference forward (no_grad) + policy forward+backward on a batch of 2
(winner + loser) + a Diffusion-DPO style loss + AdamW step.
    python3 bench/peers/wan_bench.py --gpu [--steps 10] [--ckpt] [--compile default] [--sdpa flash]
--compile MODE compiles each block with torch.compile(mode=MODE) (wan_peer.compile_blocks); the
first warm-up step includes the compilation and is reported as first_step_s.

Sampling (issue 20): --sample times N steps of text-to-video sampling of the 1.3B at latent
[16, 21, 60, 104] (81 frames at 480x832) with classifier-free guidance (a conditional and an
unconditional forward per step, as the official pipeline), under bf16 autocast, after one warm-up
step; diffusers' UniPCMultistepScheduler (flow prediction, shift 5) when diffusers is installed,
else a flow-matching Euler update (the solver's arithmetic is a few elementwise ops per step next
to two DiT forwards, so the DiT loop's time is the same).
    python3 bench/peers/wan_bench.py --sample --steps 50 [--compile default] [--sdpa flash]
The same code paths at a tiny size on the CPU (for checking them without a GPU):
    /usr/bin/python3 bench/peers/wan_bench.py --gpu --tiny --device cpu
    /usr/bin/python3 bench/peers/wan_bench.py --sample --tiny --device cpu --steps 2
"""

import argparse
import copy
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import env_info, machine_info, openblas_info, set_openblas_threads  # noqa: E402
from wan_peer import (HAS_SDPA, PRESETS, WanModel, compile_blocks, forward_flops,  # noqa: E402
                      sdpa_backend)

PEAK_BF16_DENSE = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak, FLOP/s


def maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def parse_latent(s):
    v = [int(x) for x in s.split(",")]
    assert len(v) == 4, "latent is C,F,H,W"
    return v


def make_inputs(cfg, batch, latent, gen, device, dtype=torch.float32, text_tokens=None):
    c, f, h, w = latent
    x = torch.randn(batch, c, f, h, w, generator=gen).to(device, dtype)
    lt = cfg.text_len if text_tokens is None else text_tokens
    ctx = torch.randn(batch, lt, cfg.text_dim, generator=gen).to(device, dtype)
    return x, ctx


def tokens_of(cfg, latent):
    _, f, h, w = latent
    p = cfg.patch_size
    return (f // p[0]) * (h // p[1]) * (w // p[2])


# ---------------------------------------------------------------------------------------
# CPU small-model benchmark (one case per process)
# ---------------------------------------------------------------------------------------


def cpu_worker(a):
    torch.set_num_threads(a.threads)
    set_openblas_threads(a.threads)
    cfg = PRESETS["small"]
    latent = parse_latent(a.latent)
    L = tokens_of(cfg, latent)
    gen = torch.Generator().manual_seed(0)
    model = WanModel(cfg, use_sdpa=not a.no_sdpa,
                     rope_dtype=getattr(torch, a.rope)).init_weights(1)
    x, ctx = make_inputs(cfg, 1, latent, gen, "cpu")
    t = torch.tensor([500.0])
    target = torch.randn(1, *latent, generator=gen)
    rss_model = rss_mib()

    if a.worker == "fwd":
        model.eval()

        def step():
            with torch.no_grad():
                model(list(x), t, list(ctx))
        flops = forward_flops(cfg, L)
    else:
        model.train()

        def step():
            for p in model.parameters():
                p.grad = None
            out = model(list(x), t, list(ctx))[0]
            loss = F.mse_loss(out, target[0])
            loss.backward()
        flops = 3 * forward_flops(cfg, L)

    for _ in range(a.warmup):
        step()
    ts = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    blas = openblas_info()
    rec = {
        "name": "wan_small_%s" % a.worker,
        "config": {"dim": cfg.dim, "heads": cfg.num_heads, "layers": cfg.num_layers,
                   "ffn": cfg.ffn_dim, "text_len": cfg.text_len, "text_dim": cfg.text_dim,
                   "latent": latent, "tokens": L, "dtype": "float32", "rope": a.rope,
                   "attention": "sdpa" if (HAS_SDPA and not a.no_sdpa) else "math"},
        "median_s": statistics.median(ts), "min_s": min(ts), "repeats": len(ts),
        "times_s": [round(v, 4) for v in ts],
        "gflop": flops / 1e9,
        "gflops": flops / statistics.median(ts) / 1e9,
        "gflops_best": flops / min(ts) / 1e9,
        "peak_rss_mib": maxrss_mib(), "rss_after_build_mib": rss_model,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "blas": blas["blas"], "openblas_core": blas.get("openblas_core", "n/a"),
        "env": env_info(),
    }
    print(json.dumps(rec), flush=True)


def cpu_parent(a):
    recs = []
    for case in ("fwd", "fwd_bwd"):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", case,
               "--threads", str(a.threads), "--repeats", str(a.repeats),
               "--warmup", str(a.warmup), "--latent", a.latent, "--rope", a.rope]
        if a.no_sdpa:
            cmd.append("--no-sdpa")
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            raise SystemExit("worker %s failed" % case)
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1]
        rec = json.loads(line)
        recs.append(rec)
        print(json.dumps(rec), flush=True)
    return recs


# ---------------------------------------------------------------------------------------
# GPU "SDPO step" benchmark (also runs on CPU with --tiny for checking the code path)
# ---------------------------------------------------------------------------------------


def gpu_setup(a, tiny_latent, latent):
    """(device, is_cuda, config, latent, tokens) of --gpu / --sample: the 1.3B at --latent (or
    the given default), or the tiny_a config on tiny_latent with --tiny."""
    dev = torch.device(a.device)
    is_cuda = dev.type == "cuda"
    if a.tiny:
        cfg, latent = PRESETS["tiny_a"], tiny_latent
    else:
        cfg = PRESETS["1.3b"]
        latent = parse_latent(a.latent) if a.latent != "16,6,26,40" else latent
    if not is_cuda:
        torch.set_num_threads(a.threads)
    return dev, is_cuda, cfg, latent, tokens_of(cfg, latent)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def dpo_loss(v_pol, v_ref, target, beta):
    """Diffusion-DPO style loss on a (winner, loser) pair, flow-matching (v) errors.
    Stand-in for the SDPO objective: its cost is negligible next to the model."""
    dims = list(range(1, v_pol.dim()))
    e_pol = (v_pol.float() - target).pow(2).mean(dim=dims)
    e_ref = (v_ref.float() - target).pow(2).mean(dim=dims)
    inside = (e_pol[0] - e_ref[0]) - (e_pol[1] - e_ref[1])
    return -F.logsigmoid(-beta * inside)


def gpu_bench(a):
    dev, is_cuda, cfg, latent, L = gpu_setup(a, [16, 2, 8, 8], [16, 6, 60, 104])
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    t_build = time.perf_counter()
    policy = WanModel(cfg, use_sdpa=not a.no_sdpa, rope_dtype=getattr(torch, a.rope),
                      checkpoint_blocks=a.ckpt).init_weights(1)
    ref = copy.deepcopy(policy)
    policy.to(dev).train()
    ref.to(dev).eval().requires_grad_(False)
    if a.compile:
        compile_blocks(policy, a.compile)
        compile_blocks(ref, a.compile)
    opt_kw = {"lr": 1e-6, "weight_decay": 0.0}
    if is_cuda and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        opt_kw["fused"] = True
    opt = torch.optim.AdamW(policy.parameters(), **opt_kw)
    n_params = sum(p.numel() for p in policy.parameters())
    build_s = time.perf_counter() - t_build

    # winner and loser latents share the prompt, timestep and noise draw convention
    x0, ctx = make_inputs(cfg, 2, latent, gen, dev)
    ctx[1] = ctx[0]
    noise = torch.randn(2, *latent, generator=gen).to(dev)
    sigma = 0.6
    xt = (1 - sigma) * x0 + sigma * noise
    target = noise - x0
    t = torch.tensor([sigma * 1000.0] * 2, device=dev)
    amp_dtype = torch.bfloat16 if a.amp == "bf16" else None

    def autocast():
        return torch.autocast(device_type=dev.type, dtype=amp_dtype or torch.bfloat16,
                              enabled=amp_dtype is not None)

    def step():
        with sdpa_backend(a.sdpa):
            with torch.no_grad(), autocast():
                v_ref = torch.stack(ref(list(xt), t, list(ctx)))
            with autocast():
                v_pol = torch.stack(policy(list(xt), t, list(ctx)))
            loss = dpo_loss(v_pol, v_ref, target, a.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return loss

    warm_ts = []
    for _ in range(a.warmup):
        t0 = time.perf_counter()
        loss = step()
        sync(dev)
        warm_ts.append(time.perf_counter() - t0)
    ts = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        sync(dev)
        ts.append(time.perf_counter() - t0)
    fwd1 = forward_flops(cfg, L)
    step_flops = 3 * 2 * fwd1 + 2 * fwd1  # policy fwd+bwd on 2 samples + reference fwd on 2
    med = statistics.median(ts)
    rec = {
        "name": "wan_sdpo_step" + ("_tiny" if a.tiny else "_1.3b"),
        "device": torch.cuda.get_device_name(dev) if is_cuda else "cpu",
        "config": {"dim": cfg.dim, "heads": cfg.num_heads, "layers": cfg.num_layers,
                   "ffn": cfg.ffn_dim, "text_len": cfg.text_len, "text_dim": cfg.text_dim,
                   "latent": latent, "tokens": L, "batch": 2, "params": n_params,
                   "amp": a.amp, "rope": a.rope, "grad_ckpt": a.ckpt,
                   "attention": "sdpa" if (HAS_SDPA and not a.no_sdpa) else "math",
                   "sdpa_backend": a.sdpa, "compile": a.compile,
                   "optimizer": "AdamW" + (" fused" if opt_kw.get("fused") else "")},
        "median_s": med, "min_s": min(ts), "steps": len(ts), "warmup": a.warmup,
        "first_step_s": warm_ts[0] if warm_ts else None,
        "times_s": [round(v, 4) for v in ts],
        "fwd_tflop_per_sample": fwd1 / 1e12,
        "step_tflop": step_flops / 1e12,
        "tflops": step_flops / med / 1e12,
        "loss": float(loss.detach()),
        "build_s": build_s,
        "torch": torch.__version__,
    }
    if is_cuda:
        name = torch.cuda.get_device_name(dev)
        peak = next((v for k, v in PEAK_BF16_DENSE.items() if k in name), 989e12)
        rec["peak_flops"] = peak
        rec["mfu"] = step_flops / med / peak
        rec["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated(dev) / 2 ** 30
        rec["max_memory_reserved_gib"] = torch.cuda.max_memory_reserved(dev) / 2 ** 30
    else:
        rec["peak_rss_mib"] = maxrss_mib()
        rec["mfu_vs_989T"] = step_flops / med / 989e12
    print(json.dumps(rec), flush=True)
    if not torch.isfinite(loss):
        raise SystemExit("non-finite loss")


def flow_sigmas(steps, shift):
    """The shifted flow-matching sigma grid of Wan2.1 sampling (1 -> 0, steps + 1 values)."""
    s = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return shift * s / (1 + (shift - 1) * s)


def sample_bench(a):
    dev, is_cuda, cfg, latent, L = gpu_setup(a, [16, 3, 8, 8], [16, 21, 60, 104])
    gen = torch.Generator().manual_seed(0)
    t_build = time.perf_counter()
    model = WanModel(cfg, use_sdpa=not a.no_sdpa, rope_dtype=getattr(torch, a.rope)).init_weights(1)
    model.to(dev).eval().requires_grad_(False)
    if a.compile:
        compile_blocks(model, a.compile)
    ctx = torch.randn(cfg.text_len, cfg.text_dim, generator=gen).to(dev)
    neg = torch.randn(cfg.text_len, cfg.text_dim, generator=gen).to(dev)
    x0 = torch.randn(*latent, generator=gen).to(dev)
    build_s = time.perf_counter() - t_build
    try:
        from diffusers import UniPCMultistepScheduler
        solver = "diffusers UniPCMultistepScheduler"
    except ImportError:
        UniPCMultistepScheduler = None
        solver = "flow Euler (diffusers not installed)"

    def velocity(x, t):
        with torch.no_grad(), sdpa_backend(a.sdpa), torch.autocast(
                device_type=dev.type, dtype=torch.bfloat16, enabled=a.amp == "bf16"):
            tt = torch.tensor([t], device=dev)
            cond = model([x], tt, [ctx])[0].float()
            if a.guidance == 1.0:
                return cond
            uncond = model([x], tt, [neg])[0].float()
            return uncond + a.guidance * (cond - uncond)

    def run(steps):
        x = x0.clone()
        if UniPCMultistepScheduler is not None:
            sched = UniPCMultistepScheduler(num_train_timesteps=1000, prediction_type="flow_prediction",
                                            use_flow_sigmas=True, flow_shift=a.shift)
            sched.set_timesteps(steps, device=dev)
            for t in sched.timesteps:
                v = velocity(x, float(t))
                x = sched.step(v.unsqueeze(0), t, x.unsqueeze(0)).prev_sample[0]
        else:
            sig = flow_sigmas(steps, a.shift).tolist()
            for i in range(steps):
                v = velocity(x, sig[i] * 1000.0)
                x = x + (sig[i + 1] - sig[i]) * v
        return x

    t0 = time.perf_counter()
    run(1)  # warm-up (and compilation)
    sync(dev)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = run(a.steps)
    sync(dev)
    loop_s = time.perf_counter() - t0
    forwards = a.steps * (1 if a.guidance == 1.0 else 2)
    fwd = forward_flops(cfg, L)
    rec = {
        "name": "wan_sample" + ("_tiny" if a.tiny else "_1.3b"),
        "device": torch.cuda.get_device_name(dev) if is_cuda else "cpu",
        "config": {"latent": latent, "tokens": L, "steps": a.steps, "guidance": a.guidance,
                   "shift": a.shift, "solver": solver, "amp": a.amp, "rope": a.rope,
                   "sdpa_backend": a.sdpa, "compile": a.compile},
        "loop_s": loop_s, "per_step_s": loop_s / a.steps, "est_50_steps_s": loop_s / a.steps * 50,
        "warmup_s": warm_s, "build_s": build_s, "forwards": forwards,
        "tflop": forwards * fwd / 1e12, "tflops": forwards * fwd / loop_s / 1e12,
        "finite": bool(torch.isfinite(x).all()), "torch": torch.__version__,
    }
    if is_cuda:
        rec["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated(dev) / 2 ** 30
    print(json.dumps(rec), flush=True)
    if not rec["finite"]:
        raise SystemExit("non-finite sample")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="CPU: timed repeats per case")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--latent", default="16,6,26,40", help="C,F,H,W")
    ap.add_argument("--rope", default="float64", choices=["float64", "float32"],
                    help="RoPE compute dtype (float64 = official)")
    ap.add_argument("--no-sdpa", action="store_true")
    ap.add_argument("--worker", choices=["fwd", "fwd_bwd"], help=argparse.SUPPRESS)
    ap.add_argument("--gpu", action="store_true", help="SDPO-step benchmark (1.3B)")
    ap.add_argument("--tiny", action="store_true", help="with --gpu: tiny config")
    ap.add_argument("--device", default=None, help="with --gpu: cuda (default) or cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--amp", default="bf16", choices=["bf16", "none"])
    ap.add_argument("--ckpt", action="store_true", help="activation checkpointing per block")
    ap.add_argument("--beta", type=float, default=500.0)
    ap.add_argument("--compile", default=None, metavar="MODE",
                    help="torch.compile each block with this mode (e.g. default)")
    ap.add_argument("--sdpa", default="auto", choices=["auto", "flash", "cudnn", "efficient", "math"],
                    help="restrict scaled_dot_product_attention to one backend")
    ap.add_argument("--sample", action="store_true", help="sampling benchmark (1.3B, CFG)")
    ap.add_argument("--guidance", type=float, default=5.0, help="with --sample")
    ap.add_argument("--shift", type=float, default=5.0, help="with --sample: flow shift")
    a = ap.parse_args()

    if a.sample or a.gpu:
        if a.warmup is None:
            a.warmup = 3
        if a.device is None:
            a.device = "cuda" if torch.cuda.is_available() else "cpu"
        if a.device == "cpu" and not a.tiny:
            raise SystemExit("--%s without CUDA: add --tiny to check the code path on CPU"
                             % ("sample" if a.sample else "gpu"))
        (sample_bench if a.sample else gpu_bench)(a)
        return
    if a.warmup is None:
        a.warmup = 1
    if a.worker:
        cpu_worker(a)
        return
    info = {"machine": machine_info(), "torch": torch.__version__, "env": env_info()}
    print(json.dumps({"name": "header", **info}), flush=True)
    cpu_parent(a)


if __name__ == "__main__":
    main()
