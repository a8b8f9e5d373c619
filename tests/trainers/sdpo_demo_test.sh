#!/usr/bin/env bash
# Runs //trainers:sdpo on the embedded demo for a few steps, resumes it, and samples from the
# trained adapters; checks the outputs a user relies on.
set -euo pipefail
out="$TEST_TMPDIR/run"
trainers/sdpo --model=wan21 --steps=6 --eval_every=0 --save_every=3 --pairs_per_prompt=1 \
  --eval_samples=1 --batch=4 --out="$out" 2> "$TEST_TMPDIR/stderr.txt" | tee "$TEST_TMPDIR/stdout.txt"
grep -q "train \[" "$TEST_TMPDIR/stderr.txt"            # the progress bar
grep -q "win_rate_vs_base" "$TEST_TMPDIR/stdout.txt"
for f in metrics.jsonl summary.json report.md loss.svg weight_profile.svg checkpoint.safetensors adapters.safetensors; do
  [[ -s "$out/$f" ]] || { echo "missing $out/$f"; exit 1; }
done
[[ $(wc -l < "$out/metrics.jsonl") -eq 6 ]]
grep -q '"eval_after"' "$out/summary.json"
# Resume to 8 steps: continues at step 6 and appends 2 metric lines.
trainers/sdpo --model=wan21 --steps=8 --eval_every=0 --pairs_per_prompt=1 --eval_samples=1 \
  --batch=4 --out="$out" --resume --progress=false | grep -q "resumed at step 6"
[[ $(wc -l < "$out/metrics.jsonl") -eq 8 ]]
# Bad flags fail with a clear message, not a crash.
if trainers/sdpo --model=cogvideox-9b --out="$TEST_TMPDIR/x" 2> "$TEST_TMPDIR/err.txt"; then exit 1; fi
grep -q "expected wan21, cogvideox-2b or cogvideox-5b" "$TEST_TMPDIR/err.txt"
trainers/sample --lora="$out/adapters.safetensors" --prompts="a red blob moving right slow" \
  --samples=1 --steps=4 --out="$TEST_TMPDIR/samples" | grep -q reward
[[ -s "$TEST_TMPDIR/samples/samples.gif" && -s "$TEST_TMPDIR/samples/samples.png" ]]
echo PASS
