#!/usr/bin/env bash
# //trainers:sdpo --model=cogvideox-2b on a tiny checkpoint and an on-disk dataset: the
# v-prediction DDPM path end to end through the binary (LoRA on diffusers names, resume).
set -euo pipefail
dir="$TEST_TMPDIR/cog"
mkdir -p "$dir"
tests/trainers/make_tiny_cogvideox --out="$dir"
trainers/sdpo --model=cogvideox-2b --checkpoint="$dir/model.safetensors" --data="$dir/data" \
  --steps=4 --batch=2 --beta=500 --save_every=2 --progress=false --out="$dir/run" | tee "$dir/log"
grep -q "LoRA rank 8" "$dir/log"
grep -q "data: 6 pairs" "$dir/log"
[[ $(wc -l < "$dir/run/metrics.jsonl") -eq 4 ]]
[[ -s "$dir/run/adapters.safetensors" && -s "$dir/run/report.md" ]]
grep -q '"skipped": false' "$dir/run/metrics.jsonl"
! grep -q '"skipped": true' "$dir/run/metrics.jsonl"
# A dataset that does not fit the model is refused with a clear error.
if trainers/sdpo --model=wan21 --checkpoint="$dir/model.safetensors" --data="$dir/data" \
     --out="$dir/bad" 2> "$dir/err"; then exit 1; fi
grep -qi "error" "$dir/err"
echo PASS
