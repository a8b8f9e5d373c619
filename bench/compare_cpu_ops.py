#!/usr/bin/env python3
"""Interleaved CPU comparison of sdpo's engine ops against the PyTorch peer (issue 2).

Runs ours (bench:cpu_ops_bench) and the peer (bench/peers/cpu_ops.py, Debian torch on
OpenBLAS) alternately for --rounds rounds (A B A B ...), pairs cases by name and prints a
markdown table of median times and the ratio ours / peer (median of per-round medians).

    bazel build -c opt //bench:cpu_ops_bench
    /usr/bin/python3 bench/compare_cpu_ops.py --rounds 3 [--quick]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS = {  # our case -> peer case
    "matmul_f32_1024x1024x1024": "matmul_f32_1024x1024x1024",
    "matmul_f32_4096x1536x1536": "matmul_f32_4096x1536x1536",
    "layer_norm_f32_fwd": "layer_norm_f32_fwd",
    "layer_norm_f32_fwd_bwd": "layer_norm_f32_fwd_bwd",
    "attention_math_f32_fwd": "attention_math_f32_fwd",
    "attention_math_f32_fwd_bwd": "attention_math_f32_fwd_bwd",
}


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    recs = {}
    for line in out.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            if "median_s" in r:
                recs[r["name"]] = r
    return recs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ours", default=os.path.join(ROOT, "bazel-bin/bench/cpu_ops_bench"))
    a = ap.parse_args()
    quick = ["--quick"] if a.quick else []
    ours_cmd = [a.ours, "--threads=%d" % a.threads] + quick
    peer_cmd = ["/usr/bin/python3", os.path.join(ROOT, "bench/peers/cpu_ops.py"),
                "--threads", str(a.threads)] + quick
    ours, peer = {}, {}
    for r in range(a.rounds):
        for name, rec in run(peer_cmd).items():
            peer.setdefault(name, []).append(rec["median_s"])
        for name, rec in run(ours_cmd).items():
            ours.setdefault(name, []).append(rec["median_s"])
        print("round %d done" % (r + 1), file=sys.stderr)
    print("| case | sdpo median s | PyTorch median s | ratio sdpo/PyTorch |")
    print("|---|---|---|---|")
    for o, p in PAIRS.items():
        if o in ours and p in peer:
            mo, mp = statistics.median(ours[o]), statistics.median(peer[p])
            print("| %s | %.4f | %.4f | %.2f |" % (o, mo, mp, mo / mp))


if __name__ == "__main__":
    main()
