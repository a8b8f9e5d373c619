#!/usr/bin/env bash
# PyTorch CPU peers of the engine-op (bench/cpu_ops_bench.cc) and small-Wan (bench/wan_bench.cc)
# benchmarks.
#
#   bash bench/run_cpu_peers.sh            # install check + interleaved runs + summary
#   ROUNDS=3 WAN_REPEATS=3 bash bench/run_cpu_peers.sh
#   SKIP_WAN=1 bash bench/run_cpu_peers.sh # only the op benchmarks
#
# Every case runs in two variants, interleaved (A B A B ...), because the 2-core machine's
# speed drifts and other jobs share it:
#   env    the environment as it is (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as set, if set)
#   unset  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE  (OpenBLAS picks its own kernel)
# The raw JSON lines go to $OUT (default /tmp/sdpo_cpu_peers_<stamp>.jsonl); a markdown
# summary is printed at the end. Uses Debian's /usr/bin/python3 (python3-torch lands there),
# never the pyenv python on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
WAN_REPEATS=${WAN_REPEATS:-3}
TIMEOUT=${TIMEOUT:-240}   # per script; a script that overruns is logged and skipped
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-/tmp/sdpo_cpu_peers_${STAMP}.jsonl}

# --- 1. install the CPU peer (idempotent) ---------------------------------------------------
need_install=0
dpkg -s python3-torch >/dev/null 2>&1 || need_install=1
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || need_install=1
if [ "$need_install" = 1 ]; then
  echo "installing python3-torch + libopenblas0-pthread (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends python3-torch libopenblas0-pthread \
    || { apt-get update && apt-get install -y --no-install-recommends python3-torch libopenblas0-pthread; }
fi
"$PY" -c 'import torch' || { echo "torch not importable by $PY" >&2; exit 1; }

# --- 2. machine / library facts ----------------------------------------------------------------
{
  echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# nproc: $(nproc); cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p')"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}"
  echo "# libblas.so.3 -> $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 || echo '?')"
} | tee "$OUT.txt" >&2
for v in env unset; do
  if [ $v = env ]; then pre=(env); else pre=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE); fi
  "${pre[@]}" "$PY" - <<'EOF' | sed "s/^/# [$v] /" | tee -a "$OUT.txt" >&2
import sys; sys.path.insert(0, "bench/peers")
import torch
from common import openblas_info
i = openblas_info()
print("torch %s; BLAS mapped: %s; OpenBLAS core: %s; config: %s" % (
    torch.__version__, i["blas"], i.get("openblas_core"), i.get("openblas_config")))
EOF
done

# --- 3. interleaved runs -------------------------------------------------------------------------
run() {  # run VARIANT ROUND cmd...
  local v=$1 r=$2; shift 2
  if [ "$v" = env ]; then
    SDPO_BENCH_VARIANT=$v SDPO_BENCH_ROUND=$r "$@"
  else
    SDPO_BENCH_VARIANT=$v SDPO_BENCH_ROUND=$r env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"
  fi
}
: > "$OUT"
for r in $(seq 1 "$ROUNDS"); do
  for v in env unset; do
    echo "== round $r variant $v: cpu_ops (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    run $v $r timeout "$TIMEOUT" "$PY" bench/peers/cpu_ops.py --threads "$THREADS" \
      | tee -a "$OUT" || echo "!! cpu_ops round $r variant $v failed or timed out" >&2
  done
  if [ -z "${SKIP_WAN:-}" ]; then
    for v in env unset; do
      echo "== round $r variant $v: wan_bench (load $(cut -d' ' -f1 /proc/loadavg))" >&2
      run $v $r timeout "$TIMEOUT" "$PY" bench/peers/wan_bench.py --threads "$THREADS" \
        --repeats "$WAN_REPEATS" | tee -a "$OUT" \
        || echo "!! wan_bench round $r variant $v failed or timed out" >&2
    done
  fi
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT.txt" >&2

# --- 4. summary ---------------------------------------------------------------------------------
"$PY" bench/peers/summarize.py "$OUT"
echo "raw results: $OUT (facts: $OUT.txt)" >&2
