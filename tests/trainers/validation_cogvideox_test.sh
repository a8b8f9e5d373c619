#!/usr/bin/env bash
# Validation in the trainer for CogVideoX, on the tiny diffusers-shaped folder (with the released
# 2B scheduler_config.json and model_index.json): --validation_prompts renders
# validation/step_NNNNNN/pK.{mp4,gif} through DDIM with guidance and the CogVideoX VAE at step 0,
# every --eval_every and at the end; ffprobe reads them; the bytes are the same whether or not the
# run was stopped and resumed in between (fixed noise), and report.md shows them; --val_fraction
# reports held-out loss and accuracy; DPM renders too; --validation_vae_tiling decodes through VAE
# tiles (other pixels); a 5B scheduler under --model=cogvideox-2b
# and a folder without vae/ are refused by name.
set -euo pipefail
ulimit -v 8000000
tmp="$TEST_TMPDIR"
fail() { echo "FAIL: $*"; exit 1; }

fixtures="${SDPO_FIXTURES:-}"
if [[ -z "$fixtures" ]]; then
  root=$(dirname "$(readlink -f tests/fixtures_path.h)")/..
  fixtures=$(readlink -f "$root/../shared/fixtures" || true)
fi
if [[ ! -f "$fixtures/cogvideox_vae/tiny_a.weights.safetensors" ]]; then
  echo "SKIP: shared fixtures not found (set SDPO_FIXTURES)"; exit 0
fi

ckpt="$tmp/CogVideoX-tiny"
tests/trainers/make_tiny_cogvideox_folder --out="$ckpt" --fixtures="$fixtures" \
  --frames=9 --height=32 --width=32
official=tests/trainers/testdata/CogVideoX-2b
mkdir -p "$ckpt/scheduler"
cp "$official/scheduler/scheduler_config.json" "$ckpt/scheduler/"
cp "$official/model_index.json" "$ckpt/"

mkdir -p "$tmp/videos"
tests/trainers/e2e_make_videos --dir="$tmp/videos" --n=16 --frames=9 --size=40
trainers/prepare --model=cogvideox-2b --checkpoint="$ckpt" --pairs="$tmp/videos/pairs.jsonl" \
  --videos="$tmp/videos" --frames=9 --height=32 --width=32 --fps=8 --progress=false \
  --out="$tmp/data" --text_cache="$tmp/cache" > "$tmp/prepare.out" 2>&1 \
  || { cat "$tmp/prepare.out"; fail "prepare"; }
grep -q "wrote 8 pairs" "$tmp/prepare.out" || { cat "$tmp/prepare.out"; fail "prepare: not 8 pairs"; }

printf '{"prompt": "a square moving right, 0"}\n{"prompt": "a square moving left", "seed": 7, "negative_prompt": "blurry"}\n' \
  > "$tmp/prompts.jsonl"

train() {  # train OUT STEPS [flags...]
  local out=$1 steps=$2; shift 2
  trainers/sdpo --model=cogvideox-2b --checkpoint="$ckpt" --data="$tmp/data" --steps="$steps" \
    --batch=2 --lora_rank=4 --lr=1e-2 --eval_every=2 --save_every=2 --progress=false --threads=2 \
    --val_fraction=0.25 --validation_prompts="$tmp/prompts.jsonl" --validation_frames=9 \
    --validation_height=32 --validation_width=32 --validation_steps=2 --validation_guidance=3 \
    --text_cache="$tmp/cache" --out="$out" "$@"
}
probe() {  # width,height,frames of an mp4
  ffprobe -v error -count_frames -select_streams v:0 -show_entries \
    stream=width,height,nb_read_frames -of csv=p=0 "$1"
}

# --- straight run: 4 steps, evaluations at 0, 2 and 4 (DDIM, the default) ------------------------
train "$tmp/a" 4 > "$tmp/a.out" 2>&1 || { cat "$tmp/a.out"; fail "straight run"; }
grep -q "held out: 2 of the pairs" "$tmp/a.out" || { cat "$tmp/a.out"; fail "no held-out split"; }
grep -q "validation: 2 prompt(s)" "$tmp/a.out" || { cat "$tmp/a.out"; fail "no validation prompts"; }
for s in 000000 000002 000004; do
  for k in 0 1; do
    for ext in mp4 gif; do
      [[ -s "$tmp/a/validation/step_$s/p$k.$ext" ]] || fail "missing validation/step_$s/p$k.$ext"
    done
  done
done
[[ $(ls "$tmp/a/validation" | grep -c '^step_') -eq 3 ]] || fail "validation: $(ls "$tmp/a/validation")"
if command -v ffprobe > /dev/null; then
  for f in "$tmp"/a/validation/step_*/p*.mp4; do
    [[ "$(probe "$f")" == "32,32,9" ]] || fail "ffprobe $f: $(probe "$f") (expected 32,32,9)"
  done
  [[ "$(ffprobe -v error -select_streams v:0 -show_entries stream=r_frame_rate -of csv=p=0 \
    "$tmp/a/validation/step_000000/p0.mp4")" == "8/1" ]] || fail "not CogVideoX's 8 fps"
fi
# The policy moved between evaluations (the LoRA is on while rendering), and the prompts differ.
cmp -s "$tmp/a/validation/step_000000/p0.mp4" "$tmp/a/validation/step_000004/p0.mp4" &&
  fail "the step-0 and step-4 videos are identical"
cmp -s "$tmp/a/validation/step_000004/p0.mp4" "$tmp/a/validation/step_000004/p1.mp4" &&
  fail "the two prompts' videos are identical"
grep -q '!\[p1\](validation/step_000004/p1.gif) \[mp4\](validation/step_000004/p1.mp4)' \
  "$tmp/a/report.md" || { cat "$tmp/a/report.md"; fail "report.md does not show the videos"; }
grep -q 'a square moving left" (seed 7)' "$tmp/a/report.md" || fail "report.md lacks the prompts"
grep -q 'val_loss.svg' "$tmp/a/report.md" || fail "report.md lacks the held-out plot"
[[ $(grep -c '"val_loss"' "$tmp/a/evals.jsonl") -eq 3 ]] || fail "evals.jsonl: $(cat "$tmp/a/evals.jsonl")"

# --- the same run stopped at step 2 and resumed: the same bytes, nothing redone ----------------------
train "$tmp/b" 2 > "$tmp/b1.out" 2>&1 || { cat "$tmp/b1.out"; fail "first half"; }
touch -d '2000-01-01' "$tmp/b/validation/step_000002/p0.mp4"
train "$tmp/b" 4 --resume > "$tmp/b2.out" 2>&1 || { cat "$tmp/b2.out"; fail "resumed half"; }
grep -q "resumed at step 2" "$tmp/b2.out" || { cat "$tmp/b2.out"; fail "did not resume"; }
[[ $(stat -c %Y "$tmp/b/validation/step_000002/p0.mp4") -lt 1000000000 ]] \
  || fail "the resumed run redid validation/step_000002"
diff -r "$tmp/a/validation" "$tmp/b/validation" || fail "validation videos differ across a resume"
diff "$tmp/a/evals.jsonl" "$tmp/b/evals.jsonl" || fail "held-out metrics differ across a resume"

# --- DPM (stochastic steps, noise from the prompt's seed): two runs give the same bytes ----------
head -n 1 "$tmp/prompts.jsonl" > "$tmp/one.jsonl"
for run in d1 d2; do
  train "$tmp/$run" 1 --eval_every=0 --val_fraction=0 --validation_sampler=dpm \
    --validation_prompts="$tmp/one.jsonl" \
    > "$tmp/$run.out" 2>&1 || { cat "$tmp/$run.out"; fail "DPM run $run"; }
done
[[ -s "$tmp/d1/validation/step_000001/p0.mp4" ]] || fail "no DPM video: $(ls -R "$tmp/d1/validation")"
diff -r "$tmp/d1/validation" "$tmp/d2/validation" || fail "DPM validation videos are not reproducible"
cmp -s "$tmp/d1/validation/step_000000/p0.mp4" "$tmp/a/validation/step_000000/p0.mp4" &&
  fail "DPM and DDIM gave the same video of the same policy"

# --- VAE tiles (--validation_vae_tiling) decode the same latents to other pixels -----------------
train "$tmp/t1" 1 --eval_every=0 --val_fraction=0 --validation_sampler=dpm \
  --validation_prompts="$tmp/one.jsonl" --validation_vae_tiling=16x16:8x8 \
  > "$tmp/t1.out" 2>&1 || { cat "$tmp/t1.out"; fail "tiled validation run"; }
[[ -s "$tmp/t1/validation/step_000001/p0.mp4" ]] || fail "no tiled video: $(ls -R "$tmp/t1/validation")"
cmp -s "$tmp/t1/validation/step_000001/p0.mp4" "$tmp/d1/validation/step_000001/p0.mp4" &&
  fail "tiled and untiled VAE decodes gave the same video"

# --- refusals, each named ----------------------------------------------------------------------
expect_error() {  # expect_error PATTERN CMD...
  local pattern=$1; shift
  if "$@" > "$tmp/err.out" 2>&1; then fail "accepted: $*"; fi
  grep -q -- "$pattern" "$tmp/err.out" || { cat "$tmp/err.out"; fail "no '$pattern' in the error"; }
}
expect_error "validation_sampler=unipc: CogVideoX samples with ddim or dpm" \
  train "$tmp/e1" 2 --validation_sampler=unipc
expect_error "validation_frames=8: the CogVideoX VAE needs 1 + 4k" train "$tmp/e2" 2 --validation_frames=8
novae="$tmp/novae"; cp -r "$ckpt" "$novae"; rm -r "$novae/vae"
expect_error "has no vae/ folder" trainers/sdpo --model=cogvideox-2b --checkpoint="$novae" \
  --data="$tmp/data" --validation_prompts="$tmp/prompts.jsonl" --text_cache="$tmp/cache" \
  --out="$tmp/e3"
five="$tmp/five"; cp -r "$ckpt" "$five"
cp tests/trainers/testdata/CogVideoX-5b/scheduler/scheduler_config.json "$five/scheduler/"
expect_error "snr_shift_scale 1 (cogvideox-2b: 3)" trainers/sdpo --model=cogvideox-2b \
  --checkpoint="$five" --data="$tmp/data" --steps=1 --out="$tmp/e4"
expect_error "validation_vae_tiling=20x16:8x8: the tile height 20" train "$tmp/e5" 1 \
  --validation_vae_tiling=20x16:8x8
expect_error "text_compute must be f32 or bf16" train "$tmp/e6" 1 --text_compute=fp8
expect_error "validation_vae_tiling is for the CogVideoX VAE" trainers/sdpo --model=wan21 \
  --validation_vae_tiling=on --out="$tmp/e7"
echo "PASS: CogVideoX validation videos (DDIM and DPM, fixed noise, resume-safe, in report.md), held-out pairs"
