#!/usr/bin/env bash
# GPU checks of the PyTorch peer (run on the device machine, torch 2.x with CUDA):
#   1. wan_peer.py fixture parity on CUDA: float32 (SDPA and plain math) and bf16 autocast
#   2. wan_bench.py --gpu: the 1.3B "SDPO step" (tiny smoke first, then full size)
# FIX points at a copy of shared/fixtures/wan21 that travelled with the tree.
#   FIX=gpu_bundle/peer_fixtures/wan21 bash bench/peers/gpu_check.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
FIX=${FIX:-gpu_bundle/peer_fixtures/wan21}
LOG=${OUT:-/tmp}/gpu_check.jsonl
: > "$LOG"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'

echo "== parity f32 (sdpa)";   python3 bench/peers/wan_peer.py --verify "$FIX" --device cuda | tee -a "$LOG"
echo "== parity f32 (math)";   python3 bench/peers/wan_peer.py --verify "$FIX" --device cuda --no-sdpa | tee -a "$LOG"
echo "== parity bf16 autocast"; python3 bench/peers/wan_peer.py --verify "$FIX" --device cuda --amp bf16 | tee -a "$LOG"

echo "== sdpo step tiny";      python3 bench/peers/wan_bench.py --gpu --tiny | tee -a "$LOG"
echo "== sdpo step 1.3B, no activation checkpointing, rope f64"
python3 bench/peers/wan_bench.py --gpu --steps "${STEPS:-10}" 2>&1 | tail -3 | tee -a "$LOG"
echo "== sdpo step 1.3B, activation checkpointing per block, rope f64"
python3 bench/peers/wan_bench.py --gpu --steps "${STEPS:-10}" --ckpt 2>&1 | tail -3 | tee -a "$LOG"
echo "== sdpo step 1.3B, no activation checkpointing, rope f32"
python3 bench/peers/wan_bench.py --gpu --steps "${STEPS:-10}" --rope float32 2>&1 | tail -3 | tee -a "$LOG"
