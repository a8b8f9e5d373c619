#!/usr/bin/env python3
"""Prints the tables at the end of tools/gpu/check.sh from the files it wrote in its folder:
parity_*.json / parity_*.log (GoogleTest), bench_{sdpo,torch}.jsonl and bench_wan_step.jsonl
(one JSON line each), the peer's logs (torch_*.log, sample_torch.log), the trainer runs'
folders (metrics.jsonl) with their logs and nvidia-smi memory samples (<run>.mem), the
make_data logs (model FLOPs per step), and steps.tsv (each step's status: ok, exit code,
skipped for the time budget, or "not run" in the dry run). The last table is issue 20's targets:
every cell the check did not measure says "not run" and why."""
import glob
import json
import os
import re
import sys

ORDER = [
    ("gemm_bf16_8192", "GEMM bf16 8192^3"),
    ("copy_d2d", "copy D2D 1 GiB f32"),
    ("add_bf16", "add bf16 2^28"),
    ("layer_norm_fwd", "layer_norm fwd bf16 [32760,1536]"),
    ("layer_norm_bwd", "layer_norm bwd bf16 [32760,1536]"),
    ("attn_fwd_L4096", "attention fwd L=4096 H=12 D=128"),
    ("attn_bwd_L4096", "attention bwd L=4096"),
    ("attn_fwdbwd_L4096", "attention fwd+bwd L=4096"),
    ("attn_fwd_L16384", "attention fwd L=16384 H=12 D=128"),
    ("attn_bwd_L16384", "attention bwd L=16384"),
    ("attn_fwdbwd_L16384", "attention fwd+bwd L=16384"),
    # the same, forced onto one path (the rows above are the auto path: cuDNN when it works)
    ("attn_cudnn_fwd_L4096", "attention cuDNN fwd L=4096"),
    ("attn_cudnn_bwd_L4096", "attention cuDNN bwd L=4096"),
    ("attn_cudnn_fwdbwd_L4096", "attention cuDNN fwd+bwd L=4096"),
    ("attn_cudnn_fwd_L16384", "attention cuDNN fwd L=16384"),
    ("attn_cudnn_bwd_L16384", "attention cuDNN bwd L=16384"),
    ("attn_cudnn_fwdbwd_L16384", "attention cuDNN fwd+bwd L=16384"),
    ("attn_tc_fwd_L4096", "attention own tc fwd L=4096"),
    ("attn_tc_bwd_L4096", "attention own tc bwd L=4096"),
    ("attn_tc_fwdbwd_L4096", "attention own tc fwd+bwd L=4096"),
    ("attn_tc_fwd_L16384", "attention own tc fwd L=16384"),
    ("attn_tc_bwd_L16384", "attention own tc bwd L=16384"),
    ("attn_tc_fwdbwd_L16384", "attention own tc fwd+bwd L=16384"),
]


def tests(outdir):
    rows = []
    for name in ("parity_ops", "parity_attention", "parity_vae", "parity_cogvideox_vae"):
        jpath = os.path.join(outdir, name + ".json")
        lpath = os.path.join(outdir, name + ".log")
        passed = failed = skipped = 0
        failures = []
        status = ""
        if os.path.exists(jpath):
            data = json.load(open(jpath))
            for suite in data.get("testsuites", []):
                for t in suite.get("testsuite", []):
                    full = f"{suite['name']}.{t['name']}"
                    if t.get("result") == "SKIPPED" or t.get("status") == "NOTRUN":
                        skipped += 1
                    elif t.get("failures"):
                        failed += 1
                        msg = " ".join(t["failures"][0].get("failure", "").split())
                        failures.append(f"{full}: {msg[:240]}")
                    else:
                        passed += 1
        elif os.path.exists(lpath):
            text = open(lpath, errors="replace").read()
            passed = len(re.findall(r"^\[       OK \] .*\(\d+ ms\)$", text, re.M))
            failed = len(re.findall(r"^\[  FAILED  \] .*\(\d+ ms\)$", text, re.M))
            skipped = len(re.findall(r"^\[  SKIPPED \] .*\(\d+ ms\)$", text, re.M))
            failures = re.findall(r"^\[  FAILED  \] (\S+).*\(\d+ ms\)$", text, re.M)
            status = " (no JSON report: crashed or timed out; counts from the log)"
            m = re.findall(r"^\[ RUN      \] (\S+)$", text, re.M)
            if m and not text.rstrip().endswith("tests ran.") and "PASSED" not in text[-400:]:
                status += f"; last started: {m[-1]}"
        else:
            status = " (did not run)"
        rows.append((name, passed, failed, skipped, failures, status))
    return rows


def nccl(outdir):
    """cuda_check nccl's last line "nccl: N passed, M failed" (and its FAILED lines)."""
    path = os.path.join(outdir, "nccl.log")
    if not os.path.exists(path):
        return 0, 0, 0, " (did not run)"
    text = open(path, errors="replace").read()
    m = re.findall(r"^nccl: (\d+) passed, (\d+) failed", text, re.M)
    if not m:
        return 0, 1, 0, " (no result line: crashed or timed out)"
    p, f = int(m[-1][0]), int(m[-1][1])
    status = " (skipped: no GPU)" if "nccl: skipped" in text else ""
    fails = re.findall(r"^nccl: (FAILED .*|unusable: .*)$", text, re.M)
    return p, f, 1 if status else 0, status + "".join(f"\n    {x[:240]}" for x in fails[:20])


def bench(outdir):
    res = {}
    for impl in ("sdpo", "torch"):
        path = os.path.join(outdir, f"bench_{impl}.jsonl")
        if not os.path.exists(path):
            continue
        for line in open(path):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            res.setdefault(rec["name"], {})[impl] = rec
    return res


def json_lines(path, name=None):
    """JSON objects on the lines of a file (optionally only those with this "name")."""
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path, errors="replace"):
        line = line.strip()
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if name is None or rec.get("name") == name:
                out.append(rec)
    return out


def wan_step(outdir):
    print()
    print("Wan2.1-1.3B SDPO step (batch 2 = winner + loser, latent 16x6x60x104 = 9,360 tokens/sample")
    print("unless stated; model FLOPs = policy 3x fwd + reference 1x fwd per sample; MFU vs 989 TFLOP/s)")
    print(f"  {'run':<46} {'s/step':>8} {'min s':>8} {'TFLOP':>7} {'MFU':>6} {'peak GiB':>9} {'steps':>6}")
    recs = json_lines(os.path.join(outdir, "bench_wan_step.jsonl"))
    if not recs:
        print("  sdpo: no result (step did not run)")
    ours = {}  # (tokens, recompute) -> record
    for r in recs:
        label = "sdpo " + str(r.get("label", "?"))
        if r.get("ok"):
            tok = r.get("tokens_per_sample")
            if tok and tok != 9360:
                label += f" ({tok} tok)"
            ours[(tok, "recompute" in str(r.get("mode")), "lora" in str(r.get("mode")))] = r
            print(f"  {label:<46} {r['median_s']:>8.3f} {r['min_s']:>8.3f} {r['tflop_per_step']:>7.1f} "
                  f"{100 * r['mfu']:>5.1f}% {r['peak_allocated_gib']:>9.1f} "
                  f"{r.get('warmup', '?')}+{r.get('steps', '?'):<4}")
            print(f"    setup {r.get('setup_s', 0):.1f} s, first step {r.get('first_step_s', 0):.2f} s, "
                  f"reserved {r.get('peak_reserved_gib', 0):.1f} GiB, trainable {r.get('trainable')}, "
                  f"loss {r.get('loss')}, grad norm {r.get('grad_norm')}")
        else:
            print(f"  {label:<46} FAILED: {str(r.get('error', ''))[:300]}")
    # The PyTorch peer, same call.
    ratios = []
    for log, ckpt in (("torch_wan_step.log", False), ("torch_wan_step_ckpt.log", True),
                      ("torch_wan_step_32k.log", True), ("torch_compile.log", False),
                      ("torch_compile_ckpt.log", True), ("torch_compile_32k.log", True)):
        path = os.path.join(outdir, log)
        if not os.path.exists(path):
            continue
        got = json_lines(path, "wan_sdpo_step_1.3b")
        tok = None
        if not got:
            print(f"  {'torch ' + log[:-4]:<46} FAILED or skipped (see {log})")
            continue
        t = got[-1]
        tok = t["config"]["tokens"]
        compiled = t["config"].get("compile")
        label = ("torch " + (f"compile({compiled}) " if compiled else "") +
                 ("ckpt every block" if ckpt else "no ckpt") + (f" ({tok} tok)" if tok != 9360 else ""))
        print(f"  {label:<46} {t['median_s']:>8.3f} {t['min_s']:>8.3f} {t['step_tflop']:>7.1f} "
              f"{100 * t.get('mfu', 0):>5.1f}% {t.get('max_memory_allocated_gib', 0):>9.1f} "
              f"{t.get('warmup', '?')}+{t.get('steps', '?'):<4}")
        o = ours.get((tok, ckpt, False))
        if t.get("first_step_s") and compiled:
            print(f"    first warm-up step (compilation included) {t['first_step_s']:.1f} s")
        if o:
            ratios.append((("recompute" if ckpt else "full") + (f" {tok} tok" if tok != 9360 else "") +
                           (" vs compiled" if compiled else ""),
                           o["median_s"] / t["median_s"],
                           o["peak_allocated_gib"] / max(t.get("max_memory_allocated_gib", 0), 1e-9)))
    for name, tr, mr in ratios:
        print(f"  sdpo/torch {name:<35} time {tr:.2f}x, peak memory {mr:.2f}x")


def trainer_gpu(outdir):
    path = os.path.join(outdir, "trainer_gpu_run", "summary.json")
    print()
    if not os.path.exists(path):
        print("trainer on GPU (sdpo --device=cuda --precision=bf16): no summary.json (see trainer_gpu.log)")
        return
    s = json.load(open(path))
    print(f"trainer on GPU (sdpo --device=cuda --precision=bf16, demo, {s.get('steps')} steps): "
          f"{s.get('wall_seconds', 0):.1f} s wall, final loss {s.get('final_loss')}, "
          f"skipped steps {s.get('skipped_steps')}")
    for key in ("eval_before", "eval_after"):
        if s.get(key):
            vals = ", ".join(f"{k} {v:.4g}" if isinstance(v, (int, float)) else f"{k} {v}"
                             for k, v in s[key].items())
            print(f"  {key}: {vals}")


# --- issue 20: the trainer at full scale, the compiled peer, 14B, sampling ------------------------

H100_MIB = 81559  # memory.total of the lent H100 80GB HBM3 (docs/gpu.md)
TRAINER_RUNS = [  # (run, label, tokens per sample, make_data log)
    ("trainer_full", "1.3B full", 9360, "make_data_1.3b"),
    ("trainer_full_recompute", "1.3B full+recompute", 9360, "make_data_1.3b"),
    ("trainer_lora", "1.3B LoRA r64", 9360, "make_data_1.3b"),
    ("trainer_lora_recompute", "1.3B LoRA r64+recompute", 9360, "make_data_1.3b"),
    ("trainer_lora_recompute_f21", "1.3B LoRA r64+recompute", 32760, "make_data_f21"),
    ("trainer_full_recompute_f21", "1.3B full+recompute", 32760, "make_data_f21"),
    ("trainer_14b_lora_recompute_f21", "14B LoRA r64+recompute", 32760, "make_data_14b"),
]
TRAINER_WARMUP = 2  # steps left out of the trainer's median (cuDNN plans, allocator growth)


def step_status(outdir):
    """steps.tsv: step name -> (status, seconds)."""
    out = {}
    path = os.path.join(outdir, "steps.tsv")
    if os.path.exists(path):
        for line in open(path, errors="replace"):
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                out[parts[0]] = (parts[1], parts[2])
    return out


def why_not(status, *names):
    """Why a step's number is missing: its status in steps.tsv, or "not run" (part not chosen)."""
    for n in names:
        if n in status and status[n][0] != "ok":
            return status[n][0]
    for n in names:
        if n in status:
            return "no result (see %s.log)" % n
    return "not run (part not selected)"


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return None if n == 0 else (xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2]))


def make_data_record(outdir, name):
    recs = json_lines(os.path.join(outdir, name + ".log"), "make_data")
    return recs[-1] if recs else {}


def trainer_run(outdir, run, make_log, status):
    """s/step (median after the warm-up), MFU, peak device memory of one trainer run."""
    r = {"run": run}
    metrics = json_lines(os.path.join(outdir, run, "metrics.jsonl"))
    secs = [m["seconds"] for m in metrics if not m.get("skipped")]
    r["steps"] = len(metrics)
    r["skipped"] = sum(1 for m in metrics if m.get("skipped"))
    timed = secs[TRAINER_WARMUP:] if len(secs) > TRAINER_WARMUP else secs
    r["median_s"] = median(timed)
    r["first_s"] = secs[0] if secs else None
    flops = make_data_record(outdir, make_log).get("step_tflop")
    if r["median_s"] and flops:
        r["tflop"] = flops
        r["mfu"] = flops * 1e12 / r["median_s"] / 989e12
    mem = os.path.join(outdir, run + ".mem")
    if os.path.exists(mem):
        vals = [int(x) for x in open(mem).read().split() if x.isdigit()]
        if vals:
            r["peak_used_mib"] = max(vals)
    log = os.path.join(outdir, run + ".log")
    if os.path.exists(log):
        text = open(log, errors="replace").read()
        m = re.search(r"^memory plan \(.*$", text, re.M)
        r["plan"] = m.group(0) if m else None
        m = re.search(r"error: (.*)$", text, re.M)
        r["error"] = m.group(1)[:300] if m else None
    r["status"] = why_not(status, run) if r["median_s"] is None else "ok"
    return r


def torch_record(outdir, log, name="wan_sdpo_step_1.3b"):
    got = json_lines(os.path.join(outdir, log), name)
    return got[-1] if got else None


def fmt(v, spec, suffix="", none="-"):
    return none if v is None else format(v, spec) + suffix


def trainer_table(outdir, status):
    print()
    print("Trainer binary at full scale (sdpo --device=cuda --precision=bf16, generated Wan2.1 "
          "checkpoint and pairs, batch 1 pair;")
    print(f"s/step = median of metrics.jsonl after {TRAINER_WARMUP} steps; MFU = model FLOPs of "
          "cuda_check wan_step / 989 TFLOP/s; peak = nvidia-smi memory.used)")
    print(f"  {'run':<40} {'tokens':>7} {'s/step':>8} {'first s':>8} {'MFU':>6} {'peak GiB':>9}"
          f" {'steps':>6}  status")
    rows = {}
    for run, label, tok, make_log in TRAINER_RUNS:
        r = trainer_run(outdir, run, make_log, status)
        rows[run] = r
        peak = r.get("peak_used_mib")
        print(f"  {label:<40} {tok:>7} {fmt(r['median_s'], '8.3f'):>8} "
              f"{fmt(r['first_s'], '8.2f'):>8} "
              f"{fmt(100 * r['mfu'] if r.get('mfu') else None, '5.1f', '%'):>6} "
              f"{fmt(peak / 1024 if peak else None, '9.1f'):>9} {r['steps']:>6}  {r['status']}"
              + (f" ({r['skipped']} skipped steps)" if r["skipped"] else ""))
        if r.get("error"):
            print(f"    error: {r['error']}")
    return rows


def sampling(outdir, status):
    ours = status.get("sample_sdpo")
    peer = torch_record(outdir, "sample_torch.log", "wan_sample_1.3b")
    res = {"ours_s": None, "torch_s": None, "steps": None}
    if ours and ours[0] == "ok":
        res["ours_s"] = float(ours[1])
        m = re.search(r"(\w+) (\d+) steps, shift",
                      open(os.path.join(outdir, "sample_sdpo.log"), errors="replace").read())
        if m:
            res["steps"] = int(m.group(2))
    if peer:
        res["torch_s"] = peer["build_s"] + peer["warmup_s"] + peer["loop_s"]
        res["torch_loop_s"] = peer["loop_s"]
        res["steps"] = res["steps"] or peer["config"]["steps"]
        res["solver"] = peer["config"]["solver"]
    res["status"] = why_not(status, "sample_sdpo", "sample_torch")
    return res


def vae(outdir, status):
    """The bf16 Wan2.1 VAE decode (part vae): ours (cuDNN convolutions, then our own kernel) and
    the PyTorch peer, from vae_{sdpo,sdpo_own,torch}.jsonl."""
    rows = [("sdpo (cuDNN conv)", "vae_sdpo"), ("sdpo (own conv kernel)", "vae_sdpo_own"),
            ("torch", "vae_torch")]
    recs = {step: (json_lines(os.path.join(outdir, step + ".jsonl")) or [None])[-1]
            for _, step in rows}
    if not any(recs.values()) and not any(step in status for _, step in rows):
        return
    print()
    first = next((r for r in recs.values() if r), {})
    print(f"Wan2.1 VAE decode, bf16, random weights of the released shapes, "
          f"{first.get('frames', 81)}x{first.get('height', 480)}x{first.get('width', 832)}")
    print(f"  {'run':<28} {'decode s':>9} {'peak alloc MiB':>15} {'peak reserved MiB':>18}")
    for label, step in rows:
        r = recs[step]
        if r is None:
            print(f"  {label:<28} {'-':>9}  {why_not(status, step)}")
            continue
        print(f"  {label:<28} {r['decode_s']:>9.2f} {r.get('peak_allocated_mib', -1):>15.0f} "
              f"{r.get('peak_reserved_mib', -1):>18.0f}")
    ours, peer = recs["vae_sdpo"], recs["vae_torch"]
    if ours and peer and peer["decode_s"] > 0 and peer.get("peak_allocated_mib"):
        print(f"  sdpo/torch: time {ours['decode_s'] / peer['decode_s']:.2f}x, peak memory "
              f"{ours['peak_allocated_mib'] / peer['peak_allocated_mib']:.2f}x")


def cogvideox_vae(outdir, status):
    """The bf16 CogVideoX-2B VAE decode (part cogvideox_vae), untiled and tiled, from
    cogvideox_vae_sdpo{,_tiled}.jsonl."""
    steps = ["cogvideox_vae_sdpo", "cogvideox_vae_sdpo_tiled"]
    recs = {s: (json_lines(os.path.join(outdir, s + ".jsonl")) or [None])[-1] for s in steps}
    if all(recs[s] is None and s not in status for s in steps):
        return
    shape = next((r for r in recs.values() if r), None)
    print()
    print("CogVideoX-2B VAE decode, bf16, random weights of the released shapes, "
          f"latent {shape['latent'] if shape else '-'} -> video {shape['video'] if shape else '-'}")
    print(f"  {'run':<28} {'decode s':>9} {'peak alloc MiB':>15} {'peak reserved MiB':>18}")
    for s, label in zip(steps, ["sdpo (untiled)", "sdpo (tiling on)"]):
        r = recs[s]
        if r is None:
            print(f"  {label:<28} {'-':>9}  {why_not(status, s)}")
        else:
            print(f"  {label:<28} {r['decode_s']:>9.2f} {r['peak_allocated_mib']:>15.0f} "
                  f"{r['peak_reserved_mib']:>18.0f}")


def targets(outdir):
    """Issue 20's targets, one row each: ours, PyTorch's best, the ratio and the verdict."""
    status = step_status(outdir)
    rows = trainer_table(outdir, status)
    steps = {(r.get("tokens_per_sample"), str(r.get("mode"))): r
             for r in json_lines(os.path.join(outdir, "bench_wan_step.jsonl"))
             if r.get("ok") and "14b" not in str(r.get("label"))}
    r14 = [r for r in json_lines(os.path.join(outdir, "bench_wan_step.jsonl"))
           if "14b" in str(r.get("label"))]
    torch = {k: torch_record(outdir, k + ".log") for k in (
        "torch_wan_step", "torch_wan_step_ckpt", "torch_compile", "torch_compile_ckpt",
        "torch_wan_step_32k", "torch_compile_32k")}

    def best(*keys):  # the faster PyTorch variant: (seconds, which)
        got = [(torch[k]["median_s"], k) for k in keys if torch.get(k)]
        return min(got) if got else (None, None)

    table = []

    def row(name, ours, peer, ratio, target, ok, why):
        verdict = why if ok is None else (
            ("recorded" if target == "recorded" else "met") if ok else "MISSED")
        table.append((name, ours, peer, ratio, target, verdict))

    for tok, run, tkeys, wmode, label in (
            (9360, "trainer_full", ("torch_wan_step", "torch_compile"), "full", "full, no recompute"),
            (9360, "trainer_full_recompute", ("torch_wan_step_ckpt", "torch_compile_ckpt"),
             "full+recompute", "full, recompute"),
            (32760, "trainer_full_recompute_f21", ("torch_wan_step_32k", "torch_compile_32k"),
             "full+recompute", "full, recompute")):
        t, which = best(*tkeys)
        o = rows[run]["median_s"]
        ok = None if (o is None or t is None) else o <= 0.8 * t
        why = why_not(status, run) if o is None else why_not(status, *tkeys)
        row(f"1.3B {label}, {tok} tok: s/step (trainer)", fmt(o, ".3f"),
            fmt(t, ".3f", f" {which.replace('torch_', '')}" if which else ""),
            fmt(o / t if (o and t) else None, ".2f"), "<= 0.80x", ok, why)
        w = steps.get((tok, wmode))
        wo = w["median_s"] if w else None
        ok = None if (wo is None or t is None) else wo <= 0.8 * t
        row(f"1.3B {label}, {tok} tok: s/step (cuda_check wan_step)", fmt(wo, ".3f"),
            fmt(t, ".3f"), fmt(wo / t if (wo and t) else None, ".2f"), "<= 0.80x", ok,
            why_not(status, "wan_step" if tok == 9360 else "wan_step_32k") if wo is None
            else why_not(status, *tkeys))
    mfu = rows["trainer_full"].get("mfu")
    row("MFU, 1.3B full, no recompute, 9360 tok (trainer)", fmt(100 * mfu if mfu else None, ".1f", "%"),
        "", "", ">= 45%", None if mfu is None else mfu >= 0.45, why_not(status, "trainer_full"))
    w = steps.get((9360, "full"))
    row("MFU, same step (cuda_check wan_step)", fmt(100 * w["mfu"] if w else None, ".1f", "%"), "",
        "", ">= 45%", None if w is None else w["mfu"] >= 0.45, why_not(status, "wan_step"))
    for wmode, tkeys, label in (("full", ("torch_wan_step", "torch_compile"), "no recompute"),
                                ("full+recompute", ("torch_wan_step_ckpt", "torch_compile_ckpt"),
                                 "recompute")):
        w = steps.get((9360, wmode))
        peaks = [torch[k].get("max_memory_allocated_gib") for k in tkeys if torch.get(k)]
        tp = min(peaks) if peaks else None
        ok = None if (w is None or tp is None) else w["peak_allocated_gib"] <= 0.8 * tp
        row(f"peak memory, 1.3B full {label}, 9360 tok (allocated)",
            fmt(w["peak_allocated_gib"] if w else None, ".1f", " GiB"),
            fmt(tp, ".1f", " GiB"), fmt(w["peak_allocated_gib"] / tp if (w and tp) else None, ".2f"),
            "<= 0.80x", ok, why_not(status, "wan_step") if w is None else why_not(status, *tkeys))
    used = rows["trainer_full"].get("peak_used_mib")
    free = (H100_MIB - used) / 1024 if used else None
    row("free on an 80 GB H100, 1.3B full, no recompute (trainer)",
        fmt(free, ".1f", f" GiB (used {used / 1024:.1f})" if used else ""), "", "",
        ">= 5 GiB", None if free is None else free >= 5.0,
        why_not(status, "trainer_full"))
    w = r14[-1] if r14 else None
    if w and w.get("ok"):
        dev = w["peak_allocated_gib"] / w["plan_gib"] - 1
        row("14B LoRA r64+recompute, 32760 tok: plan vs peak (wan_step)",
            f"peak {w['peak_allocated_gib']:.1f} GiB", f"plan {w['plan_gib']:.1f} GiB",
            f"{100 * dev:+.1f}%", "within 5%, fits 80 GB", abs(dev) <= 0.05 and
            w["peak_reserved_gib"] * 1024 < H100_MIB, "")
        row("14B LoRA r64+recompute, 32760 tok: s/step, MFU (wan_step)",
            f"{w['median_s']:.2f} s", "", f"MFU {100 * w['mfu']:.1f}%", "recorded", True, "")
    else:
        row("14B LoRA r64+recompute, 32760 tok: plan vs peak (wan_step)",
            "-" if not w else "FAILED: " + str(w.get("error", ""))[:120], "", "",
            "within 5%, fits 80 GB", None if not w else False, why_not(status, "wan_step_14b"))
    r = rows["trainer_14b_lora_recompute_f21"]
    row("14B LoRA r64+recompute, 32760 tok: s/step (trainer)", fmt(r["median_s"], ".2f"), "",
        fmt(100 * r["mfu"] if r.get("mfu") else None, ".1f", "% MFU"), "recorded",
        None if r["median_s"] is None else True, r["status"])
    smp = sampling(outdir, status)
    ok = None if (smp["ours_s"] is None or smp["torch_s"] is None) else smp["ours_s"] <= 0.8 * smp["torch_s"]
    row(f"sampling {smp['steps'] or 'N'} steps UniPC+CFG 81x480x832 (wall, load included)",
        fmt(smp["ours_s"], ".1f", " s"), fmt(smp["torch_s"], ".1f", " s"),
        fmt(smp["ours_s"] / smp["torch_s"] if (smp["ours_s"] and smp["torch_s"]) else None, ".2f"),
        "<= 0.80x", ok, smp["status"])
    if smp.get("torch_loop_s"):
        print(f"\n  peer sampling: loop {smp['torch_loop_s']:.1f} s of {smp['torch_s']:.1f} s, "
              f"solver {smp.get('solver')}")
    print()
    print("Issue 20 targets (ratio = ours / PyTorch's faster variant, same call)")
    print(f"  {'measure':<62} {'sdpo':>16} {'torch (best)':>24} {'ratio':>8}  {'target':<22} verdict")
    for name, ours, peer, ratio, target, verdict in table:
        print(f"  {name:<62} {ours:>16} {peer:>24} {ratio:>8}  {target:<22} {verdict}")


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "/tmp/sdpo_gpu_check"
    total_p = total_f = total_s = 0
    print("tests                      passed  failed  skipped")
    for name, p, f, s, failures, status in tests(outdir):
        total_p, total_f, total_s = total_p + p, total_f + f, total_s + s
        print(f"  {name:<24} {p:>6}  {f:>6}  {s:>7}{status}")
        for fl in failures[:20]:
            print(f"    FAILED {fl}")
        if len(failures) > 20:
            print(f"    ... and {len(failures) - 20} more")
    p, f, s, status = nccl(outdir)
    total_p, total_f, total_s = total_p + p, total_f + f, total_s + s
    print(f"  {'nccl':<24} {p:>6}  {f:>6}  {s:>7}{status}")
    res = bench(outdir)
    errors = [(n, r[i]) for n, r in res.items() for i in r if r[i].get("unit") == "error"]
    print()
    print(f"{'benchmark':<36} {'sdpo':>10} {'torch':>10} {'unit':>8} {'sdpo/torch':>11}")
    for key, label in ORDER:
        r = res.get(key, {})
        s, t = r.get("sdpo"), r.get("torch")
        sv = s["value"] if s and s.get("unit") != "error" else None
        tv = t["value"] if t and t.get("unit") != "error" else None
        unit = (s or t or {}).get("unit", "")
        ratio = f"{sv / tv:.2f}" if sv and tv else "-"
        fmt = lambda v: f"{v:.1f}" if v is not None else "-"
        print(f"{label:<36} {fmt(sv):>10} {fmt(tv):>10} {unit if unit != 'error' else '':>8} {ratio:>11}")
    for name, rec in errors:
        print(f"  error {rec.get('impl')} {name}: {rec.get('error', '')[:200]}")
    try:
        wan_step(outdir)
    except Exception as e:  # the rest of the table must print
        print(f"wan_step summary failed: {e}")
    try:
        trainer_gpu(outdir)
    except Exception as e:
        print(f"trainer summary failed: {e}")
    try:
        vae(outdir, step_status(outdir))
    except Exception as e:
        print(f"vae summary failed: {type(e).__name__}: {e}")
    try:
        cogvideox_vae(outdir, step_status(outdir))
    except Exception as e:
        print(f"cogvideox_vae summary failed: {type(e).__name__}: {e}")
    try:
        targets(outdir)
    except Exception as e:  # the rest of the output is already printed
        print(f"targets table failed: {type(e).__name__}: {e}")
    print()
    print(f"{total_p} passed, {total_f} failed, {total_s} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
