#!/usr/bin/env bash
# GPU check, run on the GPU machine from the repository root with gpu_bundle/cuda.tgz carried:
#   bash tools/gpu/check.sh
# Runs every CUDA test and the micro-benchmarks from gpu_bundle/cuda (built by
# tools/gpu/bundle.sh), the same benchmarks through the machine's PyTorch
# (bench/peers/gpu_ops.py), the NCCL communicator check (cuda_check nccl), one Wan2.1-1.3B SDPO
# step (cuda_check wan_step, via tools/gpu/wan_step.sh), and prints a short table last. Each step has its own timeout; the
# table is printed whatever failed. Logs: $OUT/check.log, summary.txt, gpu_check_logs.tgz
# ($OUT unset: /tmp/sdpo_gpu_check).
set -u
cd "$(dirname "$0")/../.."
START=$SECONDS
# Every file goes to OUTDIR (a scratch folder); what comes back from $OUT is kept to three files:
# check.log (written as it goes), summary.txt and gpu_check_logs.tgz (all the rest).
OUTDIR=/tmp/sdpo_gpu_check
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"
LOGDIR=${OUT:-$OUTDIR}
mkdir -p "$LOGDIR"
LOG="$LOGDIR/check.log"
: > "$LOG"
BUNDLE=gpu_bundle/cuda
# The bundle travels as one archive (tools/gpu/bundle.sh): unpack it.
if [[ -f gpu_bundle/cuda.tgz ]]; then
  rm -rf "$BUNDLE" && tar xzf gpu_bundle/cuda.tgz -C gpu_bundle
fi
PY=/opt/torch/.venv/bin/python3
[[ -x "$PY" ]] || PY=$(command -v python3 || echo python3)
export PYTHONUNBUFFERED=1

say() { echo "$*" | tee -a "$LOG"; }

say "== environment ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
nvidia-smi -L 2>&1 | tee -a "$LOG" || say "nvidia-smi -L failed"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | tee -a "$LOG"
timeout 60 "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1 | tee -a "$LOG" || say "torch: import failed"
[[ -f "$BUNDLE/MANIFEST" ]] && sed 's/^/bundle: /' "$BUNDLE/MANIFEST" | tee -a "$LOG"

# --- CUDA libraries: the torch venv's nvidia wheels first, then the CUDA install -----------------
SITE_DIRS=$(timeout 30 "$PY" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null || true)
find_lib() {
  local name=$1 d f
  for d in $SITE_DIRS; do
    for f in "$d"/nvidia/*/lib/"$name" "$d"/nvidia/*/*/lib/"$name" "$d"/nvidia/lib/"$name"; do
      [[ -e "$f" ]] && { echo "$f"; return 0; }
    done
  done
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    [[ -e "$d/$name" ]] && { echo "$d/$name"; return 0; }
  done
  f=$(ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n {print $NF; exit}')
  [[ -n "$f" ]] && { echo "$f"; return 0; }
  return 1
}
LIBDIRS=""
for lib in libcudart.so.13 libcublasLt.so.13 libcublas.so.13 libcudnn.so.9 libnccl.so.2 libnvrtc.so.13; do
  if path=$(find_lib "$lib"); then
    say "lib: $lib -> $path"
    dir=$(dirname "$path")
    case ":$LIBDIRS:" in *":$dir:"*) ;; *) LIBDIRS="${LIBDIRS:+$LIBDIRS:}$dir" ;; esac
  else
    say "lib: $lib -> NOT FOUND"
  fi
done
# Last: OpenMPI's libraries for the trainer binary, carried in the bundle (see bundle.sh).
[[ -d "$PWD/$BUNDLE/lib" ]] && LIBDIRS="${LIBDIRS:+$LIBDIRS:}$PWD/$BUNDLE/lib"
export LD_LIBRARY_PATH="${LIBDIRS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
for b in cuda_check sdpo; do
  if [[ -x "$BUNDLE/$b" ]]; then
    missing=$(ldd "$BUNDLE/$b" 2>&1 | grep 'not found' || true)
    [[ -n "$missing" ]] && say "ldd $b: $missing"
  else
    say "missing $BUNDLE/$b: run tools/gpu/bundle.sh on the build machine and carry gpu_bundle/"
  fi
done

# --- steps ------------------------------------------------------------------------------------
declare -A RC
step() {  # step NAME LIMIT_SECONDS LOGFILE CMD...
  local name=$1 limit=$2 logf=$3 t0=$SECONDS rc
  shift 3
  say "== $name (limit ${limit}s, log $logf)"
  timeout --kill-after=10 "$limit" "$@" > "$logf" 2>&1
  rc=$?
  RC[$name]=$rc
  tail -n 5 "$logf" | sed 's/^/   | /' | tee -a "$LOG"
  say "== $name: exit $rc after $((SECONDS - t0))s$([[ $rc == 124 || $rc == 137 ]] && echo ' (TIMED OUT)')"
}

# Parity tests in two runs, so that a fault in the attention kernels cannot hide the rest.
# SDPO_CUDA_SYNC=1: every launch is synchronised, so a fault names its kernel.
export SDPO_CUDA_SYNC=1
step parity_ops 120 "$OUTDIR/parity_ops.log" "$BUNDLE/cuda_check" --gtest_color=no \
  --gtest_filter='-*attn*' --gtest_output="json:$OUTDIR/parity_ops.json"
step parity_attention 90 "$OUTDIR/parity_attention.log" "$BUNDLE/cuda_check" --gtest_color=no \
  --gtest_filter='*attn*' --gtest_output="json:$OUTDIR/parity_attention.json"
unset SDPO_CUDA_SYNC
# The NCCL communicator on this GPU (world size 1; trainers/distributed/nccl_communicator.h):
# all-reduce / reduce-scatter / all-gather / broadcast of f32, bf16 and f64 tensors against the
# CPU. libnccl.so.2 is dlopen()ed: found above and put on LD_LIBRARY_PATH.
step nccl 60 "$OUTDIR/nccl.log" "$BUNDLE/cuda_check" nccl
step bench_sdpo 120 "$OUTDIR/bench_sdpo.log" "$BUNDLE/cuda_check" bench --json "$OUTDIR/bench_sdpo.jsonl"
step bench_torch 120 "$OUTDIR/bench_torch.log" "$PY" bench/peers/gpu_ops.py --json "$OUTDIR/bench_torch.jsonl"
# One SDPO step of Wan2.1-1.3B (bench/cuda/wan_step.h), tried in decreasing sizes (see
# tools/gpu/wan_step.sh), then the PyTorch peer's same step in this call (bench/peers/wan_bench.py:
# bf16 autocast, SDPA, fused AdamW; without and with per-block checkpointing).
step wan_step 150 "$OUTDIR/wan_step.log" bash tools/gpu/wan_step.sh "$BUNDLE/cuda_check" \
  "$OUTDIR/bench_wan_step.jsonl" 140
step torch_wan_step 90 "$OUTDIR/torch_wan_step.log" "$PY" bench/peers/wan_bench.py --gpu \
  --steps 10 --rope float32 --beta 1
step torch_wan_step_ckpt 90 "$OUTDIR/torch_wan_step_ckpt.log" "$PY" bench/peers/wan_bench.py \
  --gpu --steps 10 --rope float32 --beta 1 --ckpt
# The trainer binary on this GPU: the embedded demo, bf16, 30 steps (trainers/sdpo_main.cc).
step trainer_gpu 120 "$OUTDIR/trainer_gpu.log" "$BUNDLE/sdpo" --model=wan21 --device=cuda \
  --precision=bf16 --steps=30 --eval_every=0 --save_every=0 --progress=false \
  --out="$OUTDIR/trainer_gpu_run"
# If time is left (and SDPO_CHECK_SKIP_32K is not 1): 21 latent frames (32,760 tokens per
# sample), per-block recompute on both sides.
if [[ "${SDPO_CHECK_SKIP_32K:-0}" != 1 ]] && ((SECONDS - START < 360)); then
  step wan_step_32k 100 "$OUTDIR/wan_step_32k.log" "$BUNDLE/cuda_check" wan_step --recompute \
    --f=21 --steps=2 --warmup=1 --budget_s=90 --json "$OUTDIR/bench_wan_step.jsonl"
  step torch_wan_step_32k 100 "$OUTDIR/torch_wan_step_32k.log" "$PY" bench/peers/wan_bench.py \
    --gpu --latent 16,21,60,104 --steps 2 --warmup 1 --rope float32 --beta 1 --ckpt
else
  say "== 32,760-token runs skipped ($((SECONDS - START))s elapsed)"
fi

# Failure details (first lines) into check.log; the table below names the failed tests.
for f in "$OUTDIR"/parity_*.log; do
  if grep -q -E 'Failure|FAILED|exception|CUDA error' "$f" 2>/dev/null; then
    echo "== failure details from $(basename "$f") (first 80 lines)" >> "$LOG"
    grep -E -A4 'Failure$|exception|CUDA error|emu:' "$f" | head -n 80 >> "$LOG"
  fi
done
tar czf "$OUTDIR.tgz" -C "$OUTDIR" . 2>/dev/null && mv -f "$OUTDIR.tgz" "$LOGDIR/gpu_check_logs.tgz"
say "== summary (total $((SECONDS - START))s; logs: $LOG, $LOGDIR/gpu_check_logs.tgz)"
"$PY" tools/gpu/summarize.py "$OUTDIR" > "$LOGDIR/summary.txt" 2>&1
rc=$?
cat "$LOGDIR/summary.txt" >> "$LOG"
if [[ $rc != 0 ]]; then
  # Without a working Python: the raw numbers.
  echo "summarize.py failed (exit $rc):"
  cat "$LOGDIR/summary.txt"
  cat "$OUTDIR"/bench_*.jsonl 2>/dev/null
  grep -h -E '^\[  (PASSED|FAILED) ' "$OUTDIR"/parity_*.log 2>/dev/null
else
  cat "$LOGDIR/summary.txt"
fi
exit 0
