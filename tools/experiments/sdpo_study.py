#!/usr/bin/env python3
"""The study behind docs/results.md (issue 17): Diffusion-DPO, DPO-C&M, SDPO with each
importance-weight source and a control that only truncates the timestep range, on the embedded
demo world, at the same betas for every objective, over several seeds, on single-round and
multi-round (off-policy) data. One command runs it and writes the tables:

    bazel build -c opt //trainers:sdpo
    python3 tools/experiments/sdpo_study.py --out /tmp/sdpo_study

The committed tables (tools/experiments/sdpo_study.{csv,md}, quoted in docs/results.md) come
from these two commands (2026-12-06, the binary of main a0cfbba copied to /tmp/sdpo_bin/sdpo;
600 steps instead of the default 100 because 1,000 would not finish on the shared machine):

    python3 tools/experiments/sdpo_study.py --binary /tmp/sdpo_bin/sdpo \
        --out /tmp/sdpo_study600 --steps 600 --eval_every 50 --jobs 2
    python3 tools/experiments/sdpo_study.py --only_tables --out /tmp/sdpo_study600 \
        --steps 600 --eval_every 50

Every run is `bazel-bin/trainers/sdpo --model=wan21 ...` with one thread (`nice -n 10`); a run
whose summary exists is not rerun, so an interrupted study continues where it stopped. Writes
  --csv  one row per run (committed: tools/experiments/sdpo_study.csv),
  --md   the markdown tables that docs/results.md quotes (tools/experiments/sdpo_study.md).
Paired differences: for each (setting, beta, seed) the objective's number minus Diffusion-DPO's
on the same seed (same pairs, data order, timesteps, noise and evaluation noise); the interval
is mean +- t_{0.975, n-1} * sd / sqrt(n) over the seeds.
"""
import argparse
import concurrent.futures
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# t_{0.975, df} for df = 1..30.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def objectives(deff, control_range):
    """name -> (flags, description). SDPO: reading A (clipped weights inside the log-sigmoid)
    with the C&M mask, each weight source at the same normalisation D_eff."""
    sdpo = ["--objective=sdpo"]
    lo, hi = control_range
    def src(s):
        return ["--objective_option=effective_elements=%g,weight_source=%s" % (deff, s)]
    return {
        "dpo": (["--objective=dpo"], "Diffusion-DPO"),
        "dpo-cm": (["--objective=dpo-cm",
                    "--objective_option=effective_elements=%g" % deff], "DPO-C&M (tau 0.9)"),
        "sdpo-closed": (sdpo + src("closed_form"), "SDPO, closed-form E[log w] (<= 1)"),
        "sdpo-sampled": (sdpo + src("sampled"), "SDPO, (i) sampled log ratio at x_prev"),
        "sdpo-generator": (sdpo + src("generator"), "SDPO, (ii) ratio to the generating policy"),
        "sdpo-curve": (sdpo + src("timestep_curve"), "SDPO, (iii) timestep curve w(t)"),
        "control-trunc": (["--objective=dpo-cm",
                           "--objective_option=tau=0,min_timestep=%g,max_timestep=%g" % (lo, hi)],
                          "control: Diffusion-DPO on t in [%g, %g] only" % (lo, hi)),
    }


def run_dir(out, setting, obj, beta, seed):
    return os.path.join(out, setting, "%s-b%g-s%d" % (obj, beta, seed))


def finished(d):
    """A run is complete when the binary printed its final line (an earlier study process may
    have been stopped after the run ended)."""
    out = os.path.join(d, "stdout.txt")
    return (os.path.exists(os.path.join(d, "summary.json")) and os.path.exists(out) and
            any(l.startswith("done: ") for l in open(out)))


def running(d):
    """Whether a trainer left running by an earlier study process writes into d."""
    r = subprocess.run(["pgrep", "-f", "--", "--out=%s " % d], capture_output=True, text=True)
    return bool(r.stdout.strip())


def launch(binary, flags, d, common, stop_at=0):
    while running(d):
        time.sleep(5)
    if finished(d) and not os.path.exists(os.path.join(d, "done")):
        open(os.path.join(d, "done"), "w").write("finished under an earlier study process\n")
    if stop_at and time.time() > stop_at and not os.path.exists(os.path.join(d, "done")):
        return d, -1.0
    if os.path.exists(os.path.join(d, "summary.json")) and os.path.exists(os.path.join(d, "done")):
        return d, 0.0
    os.makedirs(d, exist_ok=True)
    cmd = ["nice", "-n", "10", binary, "--model=wan21", "--threads=1", "--progress=false",
           "--save_every=0", "--out=%s" % d,
           "--resume"] + common + flags  # an interrupted run continues (or starts again)
    t0 = time.time()
    with open(os.path.join(d, "stdout.txt"), "w") as so, open(os.path.join(d, "stderr.txt"),
                                                            "w") as se:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=so, stderr=se).returncode
    if rc != 0:  # reported, and left out of the tables; the study goes on
        print("FAILED (exit %d): %s; see %s/stderr.txt" % (rc, " ".join(cmd), d), file=sys.stderr)
        return d, -2.0
    open(os.path.join(d, "done"), "w").write(" ".join(cmd) + "\n")
    return d, time.time() - t0


def evals_of(d):
    """(step, heldout_reward) of every evaluation, all rounds."""
    out = {}
    summary = json.load(open(os.path.join(d, "summary.json")))
    for e in summary["evals"]:
        out[e["step"]] = e["values"]["heldout_reward"]
    rounds = os.path.join(d, "rounds.jsonl")
    if os.path.exists(rounds):
        for line in open(rounds):
            r = json.loads(line)
            if "heldout_reward" in r["eval"]:
                out[r["end_step"]] = r["eval"]["heldout_reward"]
    return sorted(out.items())


def profile(metrics, which):
    """Mean importance weight per t bucket over the first / last 10% of the steps."""
    n = len(metrics)
    k = max(1, n // 10)
    rows = metrics[:k] if which == "start" else metrics[n - k:]
    buckets = {}
    for m in rows:
        mm = m.get("metrics", {})
        for b in range(10):
            pairs = mm.get("bucket_pairs/b%d" % b, 0) or 0
            if pairs == 0:
                continue
            ww = mm.get("logw_w_weight_mean/b%d" % b)
            wl = mm.get("logw_l_weight_mean/b%d" % b)
            if ww is None or wl is None:
                continue
            s = buckets.setdefault(b, [0.0, 0.0])
            s[0] += pairs * 0.5 * (ww + wl)
            s[1] += pairs
    return {b: s[0] / s[1] for b, s in buckets.items() if s[1] > 0}


def summarize(d, setting, obj, beta, seed, seconds):
    summary = json.load(open(os.path.join(d, "summary.json")))
    metrics = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
    ok = [m for m in metrics if not m["skipped"]]
    half = ok[len(ok) // 2:]
    ev = evals_of(d)
    final = summary["eval_after"]
    rounds = os.path.join(d, "rounds.jsonl")
    if os.path.exists(rounds):  # the last round's trainer evaluated after, not before
        final = [json.loads(l) for l in open(rounds)][-1]["eval"]
    rewards = [r for _, r in ev]
    row = {
        "setting": setting, "objective": obj, "beta": beta, "seed": seed,
        "steps": len(metrics), "skipped": len(metrics) - len(ok),
        "heldout_reward": final["heldout_reward"],
        "base_heldout_reward": final["base_heldout_reward"],
        "win_rate": final["win_rate_vs_base"],
        "best_eval_reward": max(rewards) if rewards else float("nan"),
        "late_decline": final["heldout_reward"] - max(rewards) if rewards else 0.0,
        "loss_var_2nd_half": statistics.pvariance([m["metrics"]["loss"] for m in half]),
        "grad_norm_var_2nd_half": statistics.pvariance([m["grad_norm"] for m in half]),
        "grad_norm_mean_2nd_half": statistics.mean([m["grad_norm"] for m in half]),
        "mask_rate": statistics.mean([m["metrics"]["mask_rate"] for m in ok]),
        "clip_rate": statistics.mean([m["metrics"]["clip_rate"] for m in ok]),
        "weight_mean": statistics.mean([0.5 * (m["metrics"]["logw_w_weight_mean"] +
                                               m["metrics"]["logw_l_weight_mean"]) for m in ok]),
        "evals": " ".join("%d:%.4f" % (s, r) for s, r in ev),
        "seconds": round(seconds, 1),
    }
    for which in ("start", "end"):
        p = profile(ok, which)
        row["profile_" + which] = " ".join("b%d:%.4f" % (b, p[b]) for b in sorted(p))
    return row


def ci(values):
    n = len(values)
    m = statistics.mean(values)
    if n < 2:
        return m, float("nan")
    return m, T975[min(n - 1, 30) - 1] * statistics.stdev(values) / math.sqrt(n)


def fmt_ci(values, digits=3):
    m, h = ci(values)
    if math.isnan(h):
        return "%+.*f" % (digits, m)
    mark = " *" if abs(m) > h else ""
    return "%+.*f ± %.*f%s" % (digits, m, digits, h, mark)


def ms(values, digits=3):
    if len(values) < 2:
        return "%.*f" % (digits, values[0])
    return "%.*f ± %.*f" % (digits, statistics.mean(values), digits, statistics.stdev(values))


def tables(rows, names, betas, settings, seeds, beta_ref):
    by = {(r["setting"], r["objective"], r["beta"], r["seed"]): r for r in rows}
    objs = [o for o in names if any(r["objective"] == o for r in rows)]
    md = []
    for setting in settings:
        for beta in betas:
            if not any((setting, "dpo", beta, s) in by for s in seeds):
                continue
            have = [s for s in seeds if (setting, "dpo", beta, s) in by]
            md.append("\n**%s data, beta %g** (seeds %s; held-out reward and win rate: mean ± sd "
                      "over seeds; Δ: paired difference from Diffusion-DPO on the same seed, mean "
                      "± 95%% CI, `*` = the interval excludes 0; n = seeds with both runs)\n" %
                      (setting, beta, ",".join(str(s) for s in have)))
            md.append("| objective | n | held-out reward | win rate vs base | Δ reward vs DPO | "
                      "Δ win rate vs DPO | grad-norm var | loss var | late decline | mask | "
                      "clip | mean w |")
            md.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
            for o in objs:
                rs = [by[(setting, o, beta, s)] for s in seeds if (setting, o, beta, s) in by]
                ds = [(by[(setting, o, beta, s)], by[(setting, "dpo", beta, s)]) for s in seeds
                      if (setting, o, beta, s) in by and (setting, "dpo", beta, s) in by]
                if not rs:
                    continue
                dr = [a["heldout_reward"] - b["heldout_reward"] for a, b in ds]
                dw = [a["win_rate"] - b["win_rate"] for a, b in ds]
                md.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %.3f | %.3f | %.3f |" % (
                    names[o][1], len(rs), ms([r["heldout_reward"] for r in rs]),
                    ms([r["win_rate"] for r in rs]),
                    "—" if o == "dpo" else fmt_ci(dr), "—" if o == "dpo" else fmt_ci(dw),
                    ms([r["grad_norm_var_2nd_half"] for r in rs], 4),
                    ms([r["loss_var_2nd_half"] for r in rs], 4),
                    ms([r["late_decline"] for r in rs]),
                    statistics.mean([r["mask_rate"] for r in rs]),
                    statistics.mean([r["clip_rate"] for r in rs]),
                    statistics.mean([r["weight_mean"] for r in rs])))
    # Beta sensitivity: spread of the final reward across betas (per seed, then averaged).
    md.append("\n**Beta sensitivity** (final held-out reward: mean over seeds at each beta; "
              "spread = max - min over the betas of the per-seed rewards, mean ± 95% CI over "
              "seeds)\n")
    md.append("| setting | objective | " + " | ".join("beta %g" % b for b in betas) +
              " | spread |")
    md.append("|---|---|" + "---|" * len(betas) + "---|")
    for setting in settings:
        for o in objs:
            cols, spreads = [], []
            for b in betas:
                rs = [by[(setting, o, b, s)]["heldout_reward"] for s in seeds
                      if (setting, o, b, s) in by]
                cols.append("%.3f" % statistics.mean(rs) if rs else "—")
            for s in seeds:
                v = [by[(setting, o, b, s)]["heldout_reward"] for b in betas
                     if (setting, o, b, s) in by]
                if len(v) == len(betas) and len(v) > 1:
                    spreads.append(max(v) - min(v))
            if all(c == "—" for c in cols):
                continue
            sp = ("—" if not spreads else "%.3f (1 seed)" % spreads[0] if len(spreads) == 1
                  else "%.3f ± %.3f" % ci(spreads))
            md.append("| %s | %s | %s | %s |" % (setting, names[o][1], " | ".join(cols), sp))
    # Weight profile at the reference beta, single-round data.
    md.append("\n**Measured importance-weight profile** (mean w per t bucket of [0, 1000], "
              "pairs-weighted over winner and loser, first and last 10%% of the steps, beta %g, "
              "seed mean; buckets without samples blank)\n" % beta_ref)
    md.append("| setting | objective | when | " + " | ".join("b%d" % b for b in range(10)) + " |")
    md.append("|---|---|---|" + "---|" * 10)
    for setting in settings:
        for o in objs:
            if o in ("dpo", "control-trunc"):
                continue
            for which in ("start", "end"):
                acc = {}
                for s in seeds:
                    r = by.get((setting, o, beta_ref, s))
                    if not r:
                        continue
                    for item in r["profile_" + which].split():
                        b, v = item.split(":")
                        acc.setdefault(int(b[1:]), []).append(float(v))
                if not acc:
                    continue
                md.append("| %s | %s | %s | %s |" % (
                    setting, names[o][1], which, " | ".join(
                        "%.3f" % statistics.mean(acc[b]) if b in acc else "" for b in range(10))))
    return "\n".join(md) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "bazel-bin/trainers/sdpo"))
    ap.add_argument("--out", default="/tmp/sdpo_study")
    ap.add_argument("--csv", default=os.path.join(ROOT, "tools/experiments/sdpo_study.csv"))
    ap.add_argument("--md", default=os.path.join(ROOT, "tools/experiments/sdpo_study.md"))
    ap.add_argument("--betas", default="10,100,1000")
    ap.add_argument("--beta_ref", type=float, default=100,
                    help="the beta of the multi-round runs and of the weight-profile table")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the multi-round setting")
    ap.add_argument("--eval_every", type=int, default=50)
    ap.add_argument("--eval_samples", type=int, default=4)
    ap.add_argument("--pairs_per_prompt", type=int, default=4)
    ap.add_argument("--deff", type=float, default=1024.0,
                    help="effective_elements of the weights (1024 = D, the demo latent's size: "
                    "the whole-sample ratio)")
    ap.add_argument("--control_range", default="200,1000",
                    help="the control's timestep range: where the closed-form SDPO mask keeps "
                    "most pairs at D_eff = D (measured: buckets below t = 200 are mostly masked)")
    ap.add_argument("--objectives", default="",
                    help="comma list (default: all of " + ",".join(objectives(1, (0, 1))) + ")")
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--only_tables", action="store_true", help="summarise existing runs")
    ap.add_argument("--stop_at", type=float, default=0,
                    help="unix time after which no new run starts (0: none); the tables then "
                    "cover the runs that finished")
    a = ap.parse_args()
    betas = [float(b) for b in a.betas.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    names = objectives(a.deff, tuple(float(x) for x in a.control_range.split(",")))
    objs = a.objectives.split(",") if a.objectives else list(names)
    common = ["--steps=%d" % a.steps, "--eval_every=%d" % a.eval_every,
              "--eval_samples=%d" % a.eval_samples, "--pairs_per_prompt=%d" % a.pairs_per_prompt]
    settings = {"single-round": ["--rounds=1"], "multi-round": ["--rounds=%d" % a.rounds]}
    plan = []
    # Seed-major: a study cut short still has every configuration for its first seeds.
    for seed in seeds:
        for setting, sflags in settings.items():
            for o in objs:
                for beta in (betas if setting == "single-round" else [a.beta_ref]):
                    flags = names[o][0] + sflags + [
                        "--beta=%g" % beta, "--seed=%d" % seed,
                        "--demo_pairs=%s" % os.path.join(
                            a.out, "pairs-s%d-p%d.safetensors" % (seed, a.pairs_per_prompt))]
                    plan.append((setting, o, beta, seed, flags))
    # The reference beta first (every objective, both settings, all seeds), then the other betas
    # seed by seed: a study cut short by --stop_at still has the main comparison complete.
    plan.sort(key=lambda r: (r[2] != a.beta_ref, r[3]))
    print("study: %d runs, %d at a time, into %s" % (len(plan), a.jobs, a.out), file=sys.stderr)
    seconds = {}
    if not a.only_tables:
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
            futures = {pool.submit(launch, a.binary, flags,
                                   run_dir(a.out, s, o, b, seed), common, a.stop_at):
                       (s, o, b, seed)
                       for s, o, b, seed, flags in plan}
            for i, f in enumerate(concurrent.futures.as_completed(futures)):
                d, sec = f.result()
                if sec < 0:
                    continue  # not started (past --stop_at) or failed
                seconds[futures[f]] = sec
                print("[%d/%d %.0fs] %s (%.0fs)" % (i + 1, len(plan), time.time() - t0, d, sec),
                      file=sys.stderr)
    rows = []
    for s, o, b, seed, _ in plan:
        d = run_dir(a.out, s, o, b, seed)
        if os.path.exists(os.path.join(d, "done")):
            rows.append(summarize(d, s, o, b, seed, seconds.get((s, o, b, seed), 0.0)))
    with open(a.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    md = ("<!-- written by tools/experiments/sdpo_study.py %s -->\n" %
          " ".join(sys.argv[1:]))
    md += ("Runs: %d; steps %d; eval every %d steps on %d samples per held-out prompt; "
           "D_eff %g; multi-round = %d rounds at beta %g.\n" %
           (len(rows), a.steps, a.eval_every, a.eval_samples, a.deff, a.rounds, a.beta_ref))
    md += tables(rows, names, betas, list(settings), seeds, a.beta_ref)
    open(a.md, "w").write(md)
    print(md)


if __name__ == "__main__":
    main()
