#!/usr/bin/env python3
"""Summarise the JSON lines of bench/run_cpu_peers.sh into markdown tables.

For each (case, variant): the median of the per-run medians, the minimum of the per-run
minima, the spread of the per-run medians (max/min), and GFLOP/s from both.
    python3 bench/peers/summarize.py RESULTS.jsonl
"""

import json
import statistics
import sys
from collections import OrderedDict


def main(path):
    groups = OrderedDict()
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if "median_s" not in r:
            continue
        key = (r["name"], r.get("env", {}).get("variant", "?"))
        groups.setdefault(key, []).append(r)
    print("| case | variant | runs | median s | min s | run-to-run spread | GFLOP/s (median) "
          "| GFLOP/s (best) | peak RSS MiB | OpenBLAS core | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (name, variant), rs in groups.items():
        meds = [r["median_s"] for r in rs]
        med = statistics.median(meds)
        mn = min(r["min_s"] for r in rs)
        spread = max(meds) / min(meds)
        gf = rs[0].get("gflop")
        if gf is None and rs[0].get("gflops") is not None:
            gf = rs[0]["gflops"] * rs[0]["median_s"]  # GFLOP of the case
        gmed = "%.1f" % (gf / med) if gf else "-"
        gbest = "%.1f" % (gf / mn) if gf else "-"
        rss = "%.0f" % max(r["peak_rss_mib"] for r in rs) if "peak_rss_mib" in rs[0] else "-"
        loads = [r.get("env", {}).get("loadavg_1m") for r in rs]
        loads = "/".join("%.1f" % x for x in loads if x is not None) or "-"
        print("| %s | %s | %d | %.4g | %.4g | %.2fx | %s | %s | %s | %s | %s |" % (
            name, variant, len(rs), med, mn, spread, gmed, gbest, rss,
            rs[0].get("openblas_core", "?"), loads))


if __name__ == "__main__":
    main(sys.argv[1])
