#!/usr/bin/env python3
"""The demo experiment behind docs/results.md: Diffusion-DPO vs DPO-C&M vs SDPO on the embedded
demo world across a beta sweep and several seeds.

    bazel build -c opt //trainers:sdpo
    python3 tools/experiments/demo_sweep.py --betas 30,100,300 --seeds 0,1,2 --out /tmp/sweep

Every run uses the same base model and, for a given seed, the same generated pairs. Prints a
markdown table per (objective, beta): final held-out reward and win rate against the base model
(mean +- std over seeds), the change in held-out reward, the loss and gradient-norm variance over
the last half of training, and the late-degradation check (held-out reward at the end minus the
best intermediate evaluation).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OBJECTIVES = ["dpo", "dpo-cm", "sdpo"]


def run(binary, objective, beta, seed, out, steps, extra):
    d = os.path.join(out, "%s-b%g-s%d" % (objective, beta, seed))
    if not os.path.exists(os.path.join(d, "summary.json")):
        cmd = [binary, "--model=wan21", "--objective=%s" % objective, "--beta=%g" % beta,
               "--seed=%d" % seed, "--steps=%d" % steps, "--eval_every=%d" % max(1, steps // 3),
               "--save_every=0", "--progress=false", "--out=%s" % d,
               # an interrupted run: continue from its checkpoint, else start it again
               "--resume"] + extra
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    summary = json.load(open(os.path.join(d, "summary.json")))
    metrics = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
    half = [m for m in metrics[len(metrics) // 2:] if not m["skipped"]]
    evals = [e["values"]["heldout_reward"] for e in summary["evals"]]
    return {
        "reward": summary["eval_after"]["heldout_reward"],
        "base": summary["eval_after"]["base_heldout_reward"],
        "win": summary["eval_after"]["win_rate_vs_base"],
        "loss_var": statistics.pvariance([m["metrics"]["loss"] for m in half]),
        "gn_var": statistics.pvariance([m["grad_norm"] for m in half]),
        "late_drop": evals[-1] - max(evals[1:]) if len(evals) > 1 else 0.0,
        "mask": statistics.mean([m["metrics"]["mask_rate"] for m in half]),
    }


def ms(values):
    if len(values) == 1:
        return "%.3f" % values[0]
    return "%.3f ± %.3f" % (statistics.mean(values), statistics.stdev(values))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--betas", default="30,100,300")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--out", default="/tmp/sdpo_sweep")
    ap.add_argument("--binary", default=os.path.join(ROOT, "bazel-bin/trainers/sdpo"))
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    a, extra = ap.parse_known_args()
    betas = [float(b) for b in a.betas.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = []
    for obj in a.objectives.split(","):
        for beta in betas:
            rs = []
            for seed in seeds:
                rs.append(run(a.binary, obj, beta, seed, a.out, a.steps, extra))
                print("done %s beta=%g seed=%d" % (obj, beta, seed), file=sys.stderr)
            rows.append((obj, beta, rs))
    print("| objective | beta | held-out reward after | change vs base | win rate vs base | "
          "loss var (2nd half) | grad-norm var (2nd half) | end - best eval | mask rate |")
    print("|---|---|---|---|---|---|---|---|---|")
    for obj, beta, rs in rows:
        print("| %s | %g | %s | %s | %s | %s | %s | %s | %s |" % (
            obj, beta, ms([r["reward"] for r in rs]), ms([r["reward"] - r["base"] for r in rs]),
            ms([r["win"] for r in rs]), ms([r["loss_var"] for r in rs]),
            ms([r["gn_var"] for r in rs]), ms([r["late_drop"] for r in rs]),
            ms([r["mask"] for r in rs])))


if __name__ == "__main__":
    main()
