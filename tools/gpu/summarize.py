#!/usr/bin/env python3
"""Prints the short table at the end of tools/gpu/check.sh from the files it wrote:
parity_*.json / parity_*.log (GoogleTest) and bench_{sdpo,torch}.jsonl (one JSON line each)."""
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
    for name in ("parity_ops", "parity_attention"):
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
                      ("torch_wan_step_32k.log", True)):
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
        label = "torch " + ("ckpt every block" if ckpt else "no ckpt") + (f" ({tok} tok)" if tok != 9360 else "")
        print(f"  {label:<46} {t['median_s']:>8.3f} {t['min_s']:>8.3f} {t['step_tflop']:>7.1f} "
              f"{100 * t.get('mfu', 0):>5.1f}% {t.get('max_memory_allocated_gib', 0):>9.1f} "
              f"{t.get('warmup', '?')}+{t.get('steps', '?'):<4}")
        o = ours.get((tok, ckpt, False))
        if o:
            ratios.append((("recompute" if ckpt else "full") + (f" {tok} tok" if tok != 9360 else ""),
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
    print()
    print(f"{total_p} passed, {total_f} failed, {total_s} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
