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
# Resume to 8 steps: continues at step 6 and appends 2 metric lines; the adapters are also
# written in ComfyUI's format.
trainers/sdpo --model=wan21 --steps=8 --eval_every=0 --pairs_per_prompt=1 --eval_samples=1 \
  --batch=4 --out="$out" --resume --progress=false --lora_format=comfyui > "$TEST_TMPDIR/resume.txt"
grep -q "resumed at step 6" "$TEST_TMPDIR/resume.txt"
grep -q "adapters for other tools (comfyui)" "$TEST_TMPDIR/resume.txt"
[[ -s "$out/adapters_comfyui.safetensors" ]]
[[ $(wc -l < "$out/metrics.jsonl") -eq 8 ]]
# report.md: the weight profile measured over the whole run (the first run's steps included).
grep -q "^## Measured importance weights, first vs last steps" "$out/report.md"
grep -q "over the first and the last 1 of 8 steps" "$out/report.md"
grep -Eq '^\| \[0, 100\) \| [0-9]+ \| ' "$out/report.md"
grep -q "<polyline" "$out/weight_profile_run.svg"
# Bad flags fail with a clear message, not a crash.
if trainers/sdpo --model=cogvideox-9b --out="$TEST_TMPDIR/x" 2> "$TEST_TMPDIR/err.txt"; then exit 1; fi
grep -q "expected wan21, cogvideox-2b or cogvideox-5b" "$TEST_TMPDIR/err.txt"
if trainers/sdpo --precision=bf16 --out="$TEST_TMPDIR/x" 2> "$TEST_TMPDIR/err.txt"; then exit 1; fi
grep -q "precision=bf16 needs --device=cuda" "$TEST_TMPDIR/err.txt"
# --device=cuda: without a GPU (or a CUDA build) a clear error and exit code 1, not a crash; with
# one, a one-step bf16 run of the demo on it.
set +e
trainers/sdpo --model=wan21 --device=cuda --precision=bf16 --steps=1 --eval_every=0 \
  --pairs_per_prompt=1 --eval_samples=1 --batch=2 --progress=false --out="$TEST_TMPDIR/gpu" \
  > "$TEST_TMPDIR/gpu_out.txt" 2> "$TEST_TMPDIR/err.txt"
rc=$?
set -e
if [[ $rc -eq 0 ]]; then
  [[ -s "$TEST_TMPDIR/gpu/checkpoint.safetensors" ]]
  grep -q "device: cuda:0, bf16 compute" "$TEST_TMPDIR/gpu_out.txt"
else
  [[ $rc -eq 1 ]] || { echo "--device=cuda exited with $rc"; cat "$TEST_TMPDIR/err.txt"; exit 1; }
  grep -q "sdpo: error: --device=cuda: CUDA is unavailable in this process" "$TEST_TMPDIR/err.txt"
fi
trainers/sample --lora="$out/adapters.safetensors" --prompts="a red blob moving right slow" \
  --samples=1 --steps=4 --out="$TEST_TMPDIR/samples" | grep -q reward
[[ -s "$TEST_TMPDIR/samples/samples.gif" && -s "$TEST_TMPDIR/samples/samples.png" && -s "$TEST_TMPDIR/samples/samples.mp4" ]]
echo PASS
