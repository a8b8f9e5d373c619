#!/usr/bin/env bash
# GPU check, run on the GPU machine from the repository root with gpu_bundle/cuda.tgz carried:
#   bash tools/gpu/check.sh
# and here, without a GPU, as a dry run of the same script (what it can check without one):
#   bash tools/gpu/check.sh --dry-run        (or SDPO_CHECK_DRY_RUN=1)
#
# Parts (SDPO_CHECK_PARTS, comma-separated; default "parity,nccl,bench,wan_step,trainer,compile,
# sample" plus "32k" when time is left; vae and cogvideox_vae only when named):
#   parity    the CUDA parity tests of gpu_bundle/cuda/cuda_check (two runs)
#   nccl      the NCCL communicator with world size 1 (cuda_check nccl)
#   bench     the micro-benchmarks, ours and PyTorch's (bench/peers/gpu_ops.py)
#   vae       the video VAE ops' parity cases (Conv3d/Conv2d on both paths, channel RMS norm,
#             upsampling, padding), then a bf16 Wan2.1 VAE decode of 21 latent frames to
#             81x480x832 (random weights of the released shapes, `cuda_check vae`): ours with
#             cuDNN convolutions, ours with our own conv kernel (SDPO_CUDNN_CONV=0) and the
#             PyTorch peer (bench/peers/wan_vae_peer.py): time and peak device memory
#   cogvideox_vae  the group norm parity cases, then a bf16 CogVideoX-2B VAE decode of 13 latent
#             frames at 60x90 to 49x480x720 (random weights of the released shapes,
#             `cuda_check cogvideox_vae`), untiled and with --tiling=on: time and peak device
#             memory
#   wan_step  one Wan2.1-1.3B SDPO step (tools/gpu/wan_step.sh) and the PyTorch peer's eager step,
#             without and with per-block checkpointing, 9,360 tokens per sample
#   trainer   the trainer binary (sdpo --device=cuda --precision=bf16) on a generated 1.3B-shaped
#             checkpoint (`cuda_check make_data`: random bf16 weights, official names and
#             config.json) and generated pairs: LoRA rank 64 and full fine-tuning, without and
#             with recompute, at 9,360 tokens; LoRA + recompute at 81x480x832 (32,760 tokens);
#             its s/step (metrics.jsonl), MFU and peak device memory (nvidia-smi, every 200 ms)
#   compile   the peer's same step under torch.compile (mode SDPO_CHECK_COMPILE_MODE, default
#             "default"), without and with per-block checkpointing, 9,360 tokens
#   sample    SDPO_CHECK_SAMPLE_STEPS (default 10; 50 for the target) UniPC steps with
#             classifier-free guidance at 81x480x832 on the 1.3B: ours (sample) and the peer's
#             DiT loop (bench/peers/wan_bench.py --sample, torch.compile'd)
#   32k       32,760 tokens with recompute: cuda_check wan_step, the peer eager and compiled, and
#             the trainer's full fine-tuning
#   14b       a Wan2.1-14B-shaped checkpoint (sharded as the official one): cuda_check wan_step
#             LoRA + recompute at 32,760 tokens (memory plan vs measured peak), then the trainer
# Every step has its own time limit and runs only while SDPO_CHECK_BUDGET_S (default 520) allows
# it; SDPO_CHECK_SKIP_32K=1 leaves out 32k. The table is printed last whatever failed.
# Logs: $OUT/check.log, summary.txt, gpu_check_logs.tgz ($OUT unset: /tmp/sdpo_gpu_check).
set -u
cd "$(dirname "$0")/../.."
START=$SECONDS
DRY_RUN=${SDPO_CHECK_DRY_RUN:-0}
[[ "${1:-}" == "--dry-run" ]] && DRY_RUN=1
BUDGET=${SDPO_CHECK_BUDGET_S:-520}
DEFAULT_PARTS=parity,nccl,bench,wan_step,trainer,compile,sample
PARTS=",${SDPO_CHECK_PARTS:-$DEFAULT_PARTS},"
[[ -z "${SDPO_CHECK_PARTS:-}" && "${SDPO_CHECK_SKIP_32K:-0}" != 1 ]] && PARTS="${PARTS}32k_if_time,"
COMPILE_MODE=${SDPO_CHECK_COMPILE_MODE:-default}
SAMPLE_STEPS=${SDPO_CHECK_SAMPLE_STEPS:-10}
# Every file goes to OUTDIR (a scratch folder); what comes back from $OUT is kept to three files:
# check.log (written as it goes), summary.txt and gpu_check_logs.tgz (all the rest).
OUTDIR=${SDPO_CHECK_OUTDIR:-/tmp/sdpo_gpu_check}
DATA=${SDPO_CHECK_DATA:-/tmp/sdpo_gpu_data}  # generated checkpoints and pairs (not carried back)
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR" "$DATA"
LOGDIR=${OUT:-$OUTDIR}
mkdir -p "$LOGDIR"
LOG="$LOGDIR/check.log"
: > "$LOG"
STEPS_TSV="$OUTDIR/steps.tsv"  # name, status, seconds: read by summarize.py
: > "$STEPS_TSV"
BUNDLE=gpu_bundle/cuda
# The bundle travels as one archive (tools/gpu/bundle.sh): unpack it.
if [[ -f gpu_bundle/cuda.tgz ]]; then
  rm -rf "$BUNDLE" && tar xzf gpu_bundle/cuda.tgz -C gpu_bundle
fi
PY=/opt/torch/.venv/bin/python3
[[ -x "$PY" ]] || PY=$(command -v python3 || echo python3)
export PYTHONUNBUFFERED=1

say() { echo "$*" | tee -a "$LOG"; }
has_part() { [[ "$PARTS" == *",$1,"* ]]; }

say "== environment ($(date -u +%Y-%m-%dT%H:%M:%SZ))$([[ $DRY_RUN == 1 ]] && echo ', DRY RUN')"
say "parts: ${PARTS//,/ } budget ${BUDGET}s, compile mode $COMPILE_MODE, sampling $SAMPLE_STEPS steps"
if [[ $DRY_RUN != 1 ]]; then
  nvidia-smi -L 2>&1 | tee -a "$LOG" || say "nvidia-smi -L failed"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | tee -a "$LOG"
  nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1 > "$OUTDIR/gpu_memory_total_mib"
  timeout 60 "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1 | tee -a "$LOG" || say "torch: import failed"
fi
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
# FFmpeg (io/video) of the build machine's versions: the machine's own, else the bundle's stubs
# (bundle.sh: they abort if called; the check reads and writes no video).
if ldd "$BUNDLE/sdpo" "$BUNDLE/sample" 2>&1 | grep -E 'lib(av|sw)' | grep -q 'not found'; then
  export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$PWD/$BUNDLE/stubs"
  say "FFmpeg libraries not on this machine: the bundle's stubs ($BUNDLE/stubs) stand in"
fi
BUNDLE_OK=1
for b in cuda_check sdpo sample; do
  if [[ -x "$BUNDLE/$b" ]]; then
    missing=$(ldd "$BUNDLE/$b" 2>&1 | grep 'not found' || true)
    [[ -n "$missing" ]] && say "ldd $b: $missing"
  else
    BUNDLE_OK=0
    say "missing $BUNDLE/$b: run tools/gpu/bundle.sh on the build machine and carry gpu_bundle/"
  fi
done

# --- steps ------------------------------------------------------------------------------------
declare -A RC
# step NAME LIMIT_SECONDS LOGFILE CMD...: runs CMD under its limit when the budget has room for
# it (the dry run records it as not run); one line per step in steps.tsv.
step() {
  local name=$1 limit=$2 logf=$3 t0=$SECONDS rc left
  shift 3
  left=$((BUDGET - (SECONDS - START)))
  if [[ $DRY_RUN == 1 ]]; then
    printf '%s\tnot run (dry run)\t0\n' "$name" >> "$STEPS_TSV"
    say "== $name (dry run: not run): $*"
    return 0
  fi
  if ((left < limit)); then
    RC[$name]=skipped
    printf '%s\tskipped (%ss of the %ss budget left, limit %ss)\t0\n' "$name" "$left" "$BUDGET" \
      "$limit" >> "$STEPS_TSV"
    say "== $name: skipped (${left}s of the budget left, needs ${limit}s)"
    return 1
  fi
  say "== $name (limit ${limit}s, log $logf)"
  timeout --kill-after=10 "$limit" "$@" > "$logf" 2>&1
  rc=$?
  RC[$name]=$rc
  tail -n 5 "$logf" | sed 's/^/   | /' | tee -a "$LOG"
  local status="exit $rc"
  [[ $rc == 0 ]] && status=ok
  [[ $rc == 124 || $rc == 137 ]] && status="timed out after ${limit}s"
  printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - t0))" >> "$STEPS_TSV"
  say "== $name: exit $rc after $((SECONDS - t0))s$([[ $rc == 124 || $rc == 137 ]] && echo ' (TIMED OUT)')"
  return $rc
}
# The device memory in use (MiB, the whole GPU: this process and the CUDA context) every 200 ms
# while a step runs: the trainer prints no allocator peak of its own.
mem_watch_start() {
  [[ $DRY_RUN == 1 ]] && return 0
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$OUTDIR/$1.mem" 2>/dev/null &
  MEM_WATCH=$!
}
mem_watch_stop() {
  [[ $DRY_RUN == 1 || -z "${MEM_WATCH:-}" ]] && return 0
  kill "$MEM_WATCH" 2>/dev/null
  wait "$MEM_WATCH" 2>/dev/null
  MEM_WATCH=""
}
MAKE_DATA=("$BUNDLE/cuda_check" make_data)
# trainer NAME LIMIT CHECKPOINT DATA STEPS FLAGS...: the trainer binary on generated data for
# STEPS steps (tools/gpu/trainer_steps.sh ends it then, before it writes a checkpoint), its run
# folder (metrics.jsonl) in $OUTDIR/NAME; batch 1 pair = the step of cuda_check wan_step and the
# peer.
trainer() {
  local name=$1 limit=$2 ckpt=$3 data=$4 steps=$5
  shift 5
  mem_watch_start "$name"
  step "$name" "$limit" "$OUTDIR/$name.log" bash tools/gpu/trainer_steps.sh "$OUTDIR/$name" \
    "$steps" "$BUNDLE/sdpo" --model=wan21 --checkpoint="$ckpt" --data="$data" --device=cuda \
    --precision=bf16 --batch=1 --steps=1000 --lr=1e-5 --schedule=constant --eval_every=0 \
    --save_every=0 --progress=false --lora_rank=64 --lora_alpha=64 --out="$OUTDIR/$name" "$@"
  local rc=$?
  mem_watch_stop
  return $rc
}
PEER=("$PY" bench/peers/wan_bench.py --gpu --rope float32 --beta 1 --sdpa flash)

if [[ $DRY_RUN == 1 ]]; then
  # What can be checked without a GPU: the bundle's contents, the paths this script runs, the
  # peer scripts' syntax and CPU code paths, the generator and the trainer at a tiny size.
  DRY_FAIL=0
  export PYTHONPYCACHEPREFIX="$OUTDIR/pycache"  # no __pycache__ in the tree
  dry() {  # dry NAME CMD...: a check of the dry run, its status in steps.tsv
    local name=$1 t0=$SECONDS rc
    shift
    "$@" > "$OUTDIR/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)")" \
      "$((SECONDS - t0))" >> "$STEPS_TSV"
    tail -n 3 "$OUTDIR/$name.log" | sed 's/^/   | /' | tee -a "$LOG"
    say "== dry: $name: $([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)")"
    [[ $rc == 0 ]] || DRY_FAIL=1
  }
  bundle_contents() {
    if [[ ! -f gpu_bundle/cuda.tgz ]]; then
      echo "no gpu_bundle/cuda.tgz: run tools/gpu/bundle.sh"
      # The sh_test checks the script without a bundle.
      [[ "${SDPO_CHECK_ALLOW_NO_BUNDLE:-0}" == 1 ]] && return 0
      return 1
    fi
    local list
    list=$(tar tzf gpu_bundle/cuda.tgz) || return 1
    for f in cuda/cuda_check cuda/sdpo cuda/sample cuda/MANIFEST cuda/stubs/libavcodec.so.59; do
      grep -qx "$f" <<< "$list" || { echo "gpu_bundle/cuda.tgz lacks $f"; return 1; }
    done
    grep -q '^cuda/lib/libmpi' <<< "$list" || { echo "gpu_bundle/cuda.tgz lacks cuda/lib/libmpi*"; return 1; }
    echo "gpu_bundle/cuda.tgz: $(du -h gpu_bundle/cuda.tgz | cut -f1), $(grep -c . <<< "$list") entries"
  }
  script_paths() {
    local f
    for f in tools/gpu/wan_step.sh tools/gpu/trainer_steps.sh tools/gpu/summarize.py bench/peers/wan_bench.py \
      bench/peers/wan_peer.py bench/peers/common.py bench/peers/gpu_ops.py bench/peers/wan_vae_peer.py; do
      [[ -f "$f" ]] || { echo "missing $f"; return 1; }
    done
    bash -n tools/gpu/check.sh && bash -n tools/gpu/wan_step.sh && bash -n tools/gpu/trainer_steps.sh &&
      echo "paths and shell syntax ok"
  }
  # A Python with torch for the CPU code paths (here: Debian's /usr/bin/python3).
  TORCH_PY=""
  for p in "$PY" /usr/bin/python3 python3; do
    if timeout 60 "$p" -c 'import torch' 2>/dev/null; then TORCH_PY=$p; break; fi
  done
  peer_cpu() {
    [[ -n "$TORCH_PY" ]] || { echo "no python with torch here: CPU paths not checked"; return 0; }
    "$TORCH_PY" bench/peers/wan_bench.py --gpu --tiny --device cpu --steps 1 --warmup 1 --amp none &&
      "$TORCH_PY" bench/peers/wan_bench.py --sample --tiny --device cpu --steps 2 --amp none
  }
  # The generator and the trainer: the bundle's binaries when unpacked here, else the ones named
  # by SDPO_MAKE_DATA / SDPO_TRAINER (the sh_test passes bazel's).
  [[ -x "$BUNDLE/cuda_check" ]] || MAKE_DATA=(${SDPO_MAKE_DATA:-missing-make-data})
  TRAINER_BIN=$BUNDLE/sdpo
  SAMPLE_BIN=$BUNDLE/sample
  [[ -x "$TRAINER_BIN" ]] || TRAINER_BIN=${SDPO_TRAINER:-missing-trainer}
  [[ -x "$SAMPLE_BIN" ]] || SAMPLE_BIN=${SDPO_SAMPLE:-missing-sample}
  # The bundle's binaries run here with its FFmpeg stubs first on the path, as on a GPU machine
  # without FFmpeg.
  STUBS_FIRST=$LD_LIBRARY_PATH
  [[ -d "$BUNDLE/stubs" ]] && STUBS_FIRST="$PWD/$BUNDLE/stubs:$LD_LIBRARY_PATH"
  tiny_generator() {
    printf '%s\n' '{"model_type": "t2v", "dim": 64, "ffn_dim": 128, "freq_dim": 32, "text_dim": 48, "text_len": 16, "num_heads": 4, "num_layers": 2}' > "$DATA/tiny_config.json"
    "${MAKE_DATA[@]}" --model="$DATA/tiny_config.json" --checkpoint_out="$DATA/tiny_ckpt" \
      --data_out="$DATA/tiny_pairs" --latent=2x8x8 --pairs=2 --text_tokens=16 \
      --context_out="$DATA/tiny_context.safetensors" --max_shard_gb=0.0001
  }
  tiny_trainer() {  # as the GPU runs: ended by trainer_steps.sh after 2 of 1000 steps
    LD_LIBRARY_PATH=$STUBS_FIRST bash tools/gpu/trainer_steps.sh "$OUTDIR/dry_trainer" 2 "$TRAINER_BIN" --model=wan21 \
      --checkpoint="$DATA/tiny_ckpt" --data="$DATA/tiny_pairs" --device=cpu --batch=1 \
      --steps=1000 --schedule=constant --eval_every=0 --save_every=0 --progress=false \
      --lora_rank=4 --lora_alpha=4 --recompute --out="$OUTDIR/dry_trainer" &&
      [[ ! -f "$OUTDIR/dry_trainer/checkpoint.safetensors" ]]
  }
  tiny_sample() {  # latents only: the generated folder has no VAE
    mkdir -p "$OUTDIR/dry_sample"
    LD_LIBRARY_PATH=$STUBS_FIRST "$SAMPLE_BIN" --model=wan21 --checkpoint="$DATA/tiny_ckpt" \
      --context="$DATA/tiny_context.safetensors" --frames=5 --height=32 --width=32 \
      --sampler=unipc --steps=2 --guidance=5 --progress=false --out="$OUTDIR/dry_sample/v.mp4" &&
      [[ -f "$OUTDIR/dry_sample/v.latents.safetensors" ]]
  }
  dry bundle_contents bundle_contents
  dry script_paths script_paths
  dry py_compile "${TORCH_PY:-$PY}" -m py_compile bench/peers/wan_peer.py bench/peers/wan_bench.py \
    bench/peers/common.py bench/peers/gpu_ops.py bench/peers/wan_vae_peer.py tools/gpu/summarize.py
  dry peer_cpu_paths peer_cpu
  dry generator_tiny tiny_generator
  dry trainer_tiny tiny_trainer
  dry sample_tiny tiny_sample
fi

if has_part parity; then
  # Parity tests in two runs, so that a fault in the attention kernels cannot hide the rest.
  # SDPO_CUDA_SYNC=1: every launch is synchronised, so a fault names its kernel.
  export SDPO_CUDA_SYNC=1
  step parity_ops 120 "$OUTDIR/parity_ops.log" "$BUNDLE/cuda_check" --gtest_color=no \
    --gtest_filter='-*attn*' --gtest_output="json:$OUTDIR/parity_ops.json"
  step parity_attention 90 "$OUTDIR/parity_attention.log" "$BUNDLE/cuda_check" --gtest_color=no \
    --gtest_filter='*attn*' --gtest_output="json:$OUTDIR/parity_attention.json"
  unset SDPO_CUDA_SYNC
fi
# The NCCL communicator on this GPU (world size 1; trainers/distributed/nccl_communicator.h):
# all-reduce / reduce-scatter / all-gather / broadcast of f32, bf16 and f64 tensors against the
# CPU. libnccl.so.2 is dlopen()ed: found above and put on LD_LIBRARY_PATH.
has_part nccl && step nccl 60 "$OUTDIR/nccl.log" "$BUNDLE/cuda_check" nccl
if has_part bench; then
  step bench_sdpo 120 "$OUTDIR/bench_sdpo.log" "$BUNDLE/cuda_check" bench --json "$OUTDIR/bench_sdpo.jsonl"
  step bench_torch 120 "$OUTDIR/bench_torch.log" "$PY" bench/peers/gpu_ops.py --json "$OUTDIR/bench_torch.jsonl"
fi
if has_part vae; then
  # SDPO_CUDA_SYNC=1 for the parity cases (a fault names its kernel), not for the timed decodes.
  SDPO_CUDA_SYNC=1 step parity_vae 60 "$OUTDIR/parity_vae.log" "$BUNDLE/cuda_check" \
    --gtest_color=no --gtest_filter='*conv*:*channel_rms*:*upsample_pad*' \
    --gtest_output="json:$OUTDIR/parity_vae.json"
  VAE=(vae --mode=decode --frames=81 --height=480 --width=832 --dtype=bf16)
  step vae_sdpo 120 "$OUTDIR/vae_sdpo.log" "$BUNDLE/cuda_check" "${VAE[@]}" \
    --json "$OUTDIR/vae_sdpo.jsonl"
  step vae_torch 150 "$OUTDIR/vae_torch.log" "$PY" bench/peers/wan_vae_peer.py --bench \
    --device cuda --dtype bf16 --frames 81 --height 480 --width 832 --json "$OUTDIR/vae_torch.jsonl"
  SDPO_CUDNN_CONV=0 step vae_sdpo_own 150 "$OUTDIR/vae_sdpo_own.log" "$BUNDLE/cuda_check" \
    "${VAE[@]}" --json "$OUTDIR/vae_sdpo_own.jsonl"
fi
if has_part cogvideox_vae; then
  SDPO_CUDA_SYNC=1 step parity_cogvideox_vae 30 "$OUTDIR/parity_cogvideox_vae.log" \
    "$BUNDLE/cuda_check" --gtest_color=no --gtest_filter='*group_norm*' \
    --gtest_output="json:$OUTDIR/parity_cogvideox_vae.json"
  step cogvideox_vae_sdpo 150 "$OUTDIR/cogvideox_vae_sdpo.log" "$BUNDLE/cuda_check" cogvideox_vae \
    --latent_frames=13 --height=480 --width=720 --dtype=bf16 --json "$OUTDIR/cogvideox_vae_sdpo.jsonl"
  step cogvideox_vae_sdpo_tiled 150 "$OUTDIR/cogvideox_vae_sdpo_tiled.log" "$BUNDLE/cuda_check" \
    cogvideox_vae --latent_frames=13 --height=480 --width=720 --dtype=bf16 --tiling=on \
    --json "$OUTDIR/cogvideox_vae_sdpo_tiled.jsonl"
fi
if has_part wan_step; then
  # One SDPO step of Wan2.1-1.3B (bench/cuda/wan_step.h), tried in decreasing sizes (see
  # tools/gpu/wan_step.sh), then the PyTorch peer's same step in this call (bf16 autocast, SDPA
  # flash, fused AdamW; without and with per-block checkpointing).
  step wan_step 150 "$OUTDIR/wan_step.log" bash tools/gpu/wan_step.sh "$BUNDLE/cuda_check" \
    "$OUTDIR/bench_wan_step.jsonl" 140
  step torch_wan_step 90 "$OUTDIR/torch_wan_step.log" "${PEER[@]}" --steps 10
  step torch_wan_step_ckpt 90 "$OUTDIR/torch_wan_step_ckpt.log" "${PEER[@]}" --steps 10 --ckpt
fi
if has_part trainer || has_part sample || has_part 32k; then
  # A Wan2.1-1.3B-shaped checkpoint folder (one file, config.json) and pairs at 6 and 21 latent
  # frames (9,360 and 32,760 tokens per sample), contexts [512, 4096]; the make_data line of
  # each log carries the model FLOPs of one step on that data (summarize.py's MFU).
  step make_data_1.3b 90 "$OUTDIR/make_data_1.3b.log" "${MAKE_DATA[@]}" --model=1.3b \
    --checkpoint_out="$DATA/wan13b" --data_out="$DATA/pairs_f6" --latent=6x60x104 --pairs=4 \
    --context_out="$DATA/context.safetensors"
  step make_data_f21 60 "$OUTDIR/make_data_f21.log" "${MAKE_DATA[@]}" --model=1.3b \
    --data_out="$DATA/pairs_f21" --latent=21x60x104 --pairs=2
fi
if has_part trainer; then
  # The embedded demo, bf16, 30 steps (trainers/sdpo_main.cc): the binary trains on the GPU.
  step trainer_gpu 120 "$OUTDIR/trainer_gpu.log" "$BUNDLE/sdpo" --model=wan21 --device=cuda \
    --precision=bf16 --steps=30 --eval_every=0 --save_every=0 --progress=false \
    --out="$OUTDIR/trainer_gpu_run"
  trainer trainer_full 75 "$DATA/wan13b" "$DATA/pairs_f6" 8 --full
  trainer trainer_full_recompute 75 "$DATA/wan13b" "$DATA/pairs_f6" 8 --full --recompute
  trainer trainer_lora 60 "$DATA/wan13b" "$DATA/pairs_f6" 8
  trainer trainer_lora_recompute 60 "$DATA/wan13b" "$DATA/pairs_f6" 8 --recompute
  trainer trainer_lora_recompute_f21 90 "$DATA/wan13b" "$DATA/pairs_f21" 5 --recompute
fi
if has_part compile; then
  step torch_compile 150 "$OUTDIR/torch_compile.log" "${PEER[@]}" --steps 10 --compile "$COMPILE_MODE"
  step torch_compile_ckpt 150 "$OUTDIR/torch_compile_ckpt.log" "${PEER[@]}" --steps 10 --ckpt \
    --compile "$COMPILE_MODE"
fi
if has_part sample; then
  # Sampling 81x480x832 (latent [16, 21, 60, 104]) with guidance 5: ours on the generated
  # checkpoint (wall time of the whole command, loading included), the peer's DiT loop.
  sample_limit=$((30 + SAMPLE_STEPS * 3))
  mkdir -p "$OUTDIR/sample"  # sample writes next to --out, into an existing folder
  step sample_sdpo "$sample_limit" "$OUTDIR/sample_sdpo.log" "$BUNDLE/sample" --model=wan21 \
    --checkpoint="$DATA/wan13b" --context="$DATA/context.safetensors" --frames=81 --height=480 \
    --width=832 --sampler=unipc --steps="$SAMPLE_STEPS" --guidance=5 --device=cuda \
    --precision=bf16 --progress=false --out="$OUTDIR/sample/video.mp4"
  step sample_torch $((sample_limit + 60)) "$OUTDIR/sample_torch.log" "$PY" bench/peers/wan_bench.py \
    --sample --steps "$SAMPLE_STEPS" --rope float32 --sdpa flash --compile "$COMPILE_MODE"
fi
# 32,760 tokens per sample, per-block recompute on both sides: asked for, or by default when
# under 300 s have passed.
if has_part 32k || { has_part 32k_if_time && ((SECONDS - START < 300)); }; then
  step wan_step_32k 100 "$OUTDIR/wan_step_32k.log" "$BUNDLE/cuda_check" wan_step --recompute \
    --f=21 --steps=2 --warmup=1 --budget_s=90 --json "$OUTDIR/bench_wan_step.jsonl"
  step torch_wan_step_32k 100 "$OUTDIR/torch_wan_step_32k.log" "${PEER[@]}" \
    --latent 16,21,60,104 --steps 2 --warmup 1 --ckpt
  step torch_compile_32k 180 "$OUTDIR/torch_compile_32k.log" "${PEER[@]}" \
    --latent 16,21,60,104 --steps 2 --warmup 2 --ckpt --compile "$COMPILE_MODE"
  trainer trainer_full_recompute_f21 120 "$DATA/wan13b" "$DATA/pairs_f21" 5 --full --recompute
elif has_part 32k_if_time; then
  say "== 32,760-token runs skipped ($((SECONDS - START))s elapsed)"
fi
if has_part 14b; then
  # Wan2.1-14B LoRA rank 64 with recompute at 81x480x832: the memory plan printed before step 0
  # against the allocator's peak (cuda_check wan_step), then the trainer on a generated 14B
  # checkpoint (six shards and the index, as the official one).
  step wan_step_14b 240 "$OUTDIR/wan_step_14b.log" "$BUNDLE/cuda_check" wan_step --config=14b \
    --lora --recompute --f=21 --steps=1 --warmup=1 --budget_s=200 \
    --json "$OUTDIR/bench_wan_step.jsonl" --label="14b lora+recompute 21x60x104"
  step make_data_14b 150 "$OUTDIR/make_data_14b.log" "${MAKE_DATA[@]}" --model=14b \
    --checkpoint_out="$DATA/wan14b" --data_out="$DATA/pairs14_f21" --latent=21x60x104 --pairs=2
  trainer trainer_14b_lora_recompute_f21 300 "$DATA/wan14b" "$DATA/pairs14_f21" 3 --recompute
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
SUMMARY_PY=$PY
[[ $DRY_RUN == 1 ]] && SUMMARY_PY=${TORCH_PY:-$PY}
"$SUMMARY_PY" tools/gpu/summarize.py "$OUTDIR" > "$LOGDIR/summary.txt" 2>&1
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
# The dry run fails when one of its checks failed (the GPU run always exits 0: the table says).
[[ $DRY_RUN == 1 ]] && exit $((DRY_FAIL || rc != 0))
exit 0
