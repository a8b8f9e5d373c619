#!/usr/bin/env bash
# Validation in the trainer on a tiny Wan2.1 checkpoint folder with the official file names:
# --validation_prompts renders validation/step_NNNNNN/pK.{mp4,gif} at step 0, every --eval_every
# and at the end, identical bytes whether or not the run was stopped and resumed in between (fixed
# noise), not redone on resume, and shown in report.md; --val_fraction holds out pairs (recorded
# in val_split.json, checked on resume) whose loss and accuracy reach evals.jsonl, summary.json
# and the report's plots; bad flags and folders are named.
set -euo pipefail
ulimit -v 8000000
tmp="$TEST_TMPDIR"
fail() { echo "FAIL: $*"; exit 1; }

source tests/trainers/tiny_wan_folder.sh

# --- the checkpoint folder, as released, and a small dataset ---------------------------------------
ckpt="$tmp/Wan2.1-T2V-tiny"
make_tiny_wan_folder "$ckpt"
mkdir -p "$tmp/videos"
tests/trainers/e2e_make_videos --dir="$tmp/videos" --n=16 --frames=5 --size=32
trainers/prepare --model=wan21 --checkpoint="$ckpt" --pairs="$tmp/videos/pairs.jsonl" \
  --videos="$tmp/videos" --frames=5 --height=32 --width=32 --fps=8 --progress=false \
  --out="$tmp/data" --text_cache="$tmp/cache" > "$tmp/prepare.out" \
  || { cat "$tmp/prepare.out"; fail "prepare"; }
grep -q "wrote 8 pairs" "$tmp/prepare.out" || { cat "$tmp/prepare.out"; fail "prepare: not 8 pairs"; }

printf 'a square moving right, 0\n\n{"prompt": "a square moving left", "seed": 7, "negative_prompt": "blurry"}\n' \
  > "$tmp/bad_mixed.txt"
printf '{"prompt": "a square moving right, 0"}\n{"prompt": "a square moving left", "seed": 7, "negative_prompt": "blurry"}\n' \
  > "$tmp/prompts.jsonl"
printf 'a square moving right, 0\na square moving right and then left and then right again, 1\n' \
  > "$tmp/long.txt"

train() {  # train OUT STEPS [flags...]
  local out=$1 steps=$2; shift 2
  trainers/sdpo --model=wan21 --checkpoint="$ckpt" --data="$tmp/data" --steps="$steps" \
    --batch=2 --lora_rank=4 --lr=1e-2 --eval_every=2 --save_every=2 --progress=false --threads=2 \
    --val_fraction=0.25 --validation_prompts="$tmp/prompts.jsonl" --validation_frames=5 \
    --validation_height=32 --validation_width=32 --validation_steps=2 --validation_guidance=3 \
    --validation_fps=8 --text_cache="$tmp/cache" --out="$out" "$@"
}

# --- straight run: 4 steps, evaluations at 0, 2 and 4 -------------------------------------------------
train "$tmp/a" 4 > "$tmp/a.out" 2>&1 || { cat "$tmp/a.out"; fail "straight run"; }
grep -q "held out: 2 of the pairs" "$tmp/a.out" || { cat "$tmp/a.out"; fail "no held-out split"; }
for s in 000000 000002 000004; do
  for k in 0 1; do
    for ext in mp4 gif; do
      [[ -s "$tmp/a/validation/step_$s/p$k.$ext" ]] || fail "missing validation/step_$s/p$k.$ext"
    done
  done
done
[[ $(ls "$tmp/a/validation" | grep -c '^step_') -eq 3 ]] || fail "validation: $(ls "$tmp/a/validation")"
if command -v ffprobe > /dev/null; then
  frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries \
    stream=nb_read_frames,width,height -of csv=p=0 "$tmp/a/validation/step_000004/p1.mp4")
  [[ "$frames" == "32,32,5" ]] || fail "ffprobe: $frames (expected 32,32,5)"
fi
# the policy moved between evaluations: its videos changed (the test can fail)
cmp -s "$tmp/a/validation/step_000000/p0.mp4" "$tmp/a/validation/step_000004/p0.mp4" &&
  fail "the step-0 and step-4 videos are identical: the LoRA is not on while rendering"
grep -q '!\[p1\](validation/step_000004/p1.gif) \[mp4\](validation/step_000004/p1.mp4)' \
  "$tmp/a/report.md" || { cat "$tmp/a/report.md"; fail "report.md does not show the videos"; }
grep -q 'a square moving left" (seed 7)' "$tmp/a/report.md" || fail "report.md lacks the prompts"
grep -q 'val_loss.svg' "$tmp/a/report.md" || fail "report.md lacks the held-out plot"
[[ -s "$tmp/a/val_loss.svg" && -s "$tmp/a/val_accuracy.svg" ]] || fail "no held-out plots"
[[ $(grep -c '"val_loss"' "$tmp/a/evals.jsonl") -eq 3 ]] || fail "evals.jsonl: $(cat "$tmp/a/evals.jsonl")"
grep -q '"val_reward_accuracy"' "$tmp/a/summary.json" || fail "summary.json lacks the held-out metrics"
[[ $(wc -l < "$tmp/a/metrics.jsonl") -eq 4 ]] || fail "metrics.jsonl: not 4 step lines"
grep -q '"pairs": 8' "$tmp/a/val_split.json" || fail "val_split.json: $(cat "$tmp/a/val_split.json")"

# --- the same run stopped at step 2 and resumed: the same bytes, nothing redone ----------------------
train "$tmp/b" 2 > "$tmp/b1.out" 2>&1 || { cat "$tmp/b1.out"; fail "first half"; }
touch -d '2000-01-01' "$tmp/b/validation/step_000002/p0.mp4"
train "$tmp/b" 4 --resume > "$tmp/b2.out" 2>&1 \
  || { cat "$tmp/b2.out"; fail "resumed half"; }
grep -q "resumed at step 2" "$tmp/b2.out" || { cat "$tmp/b2.out"; fail "did not resume"; }
[[ $(stat -c %Y "$tmp/b/validation/step_000002/p0.mp4") -lt 1000000000 ]] \
  || fail "the resumed run redid validation/step_000002"
diff -r "$tmp/a/validation" "$tmp/b/validation" || fail "validation videos differ across a resume"
diff "$tmp/a/evals.jsonl" "$tmp/b/evals.jsonl" || fail "held-out metrics differ across a resume"
diff "$tmp/a/val_split.json" "$tmp/b/val_split.json" || fail "split differs"
grep -q 'validation/step_000000/p0.gif' "$tmp/b/report.md" || fail "resumed report lacks step 0"

# --- the recorded split is checked on resume --------------------------------------------------------
sed -i 's/"heldout_ids": \["/"heldout_ids": ["x/' "$tmp/b/val_split.json"
if train "$tmp/b" 6 --resume > "$tmp/b3.out" 2>&1; then
  fail "a resume with another split was accepted"
fi
grep -q "val_split.json records a held-out split" "$tmp/b3.out" || { cat "$tmp/b3.out"; fail "split message"; }

# --- bad flags and folders, each named ------------------------------------------------------------------
expect_error() {  # expect_error PATTERN CMD...
  local pattern=$1; shift
  if "$@" > "$tmp/err.out" 2>&1; then fail "accepted: $*"; fi
  grep -q -- "$pattern" "$tmp/err.out" || { cat "$tmp/err.out"; fail "no '$pattern' in the error"; }
}
expect_error "exclude each other" train "$tmp/e1" 2 --val_data="$tmp/data"
expect_error "0 < F < 1" train "$tmp/e2" 2 --val_fraction=1
expect_error "leaves none to train on" train "$tmp/e3" 2 --val_fraction=0.95
expect_error "demo evaluates on its own" trainers/sdpo --model=wan21 --val_fraction=0.2 --out="$tmp/e4"
expect_error "bad_mixed.txt line 3: a JSON line" train "$tmp/e5" 2 --validation_prompts="$tmp/bad_mixed.txt"
expect_error "validation_frames=6: the Wan2.1 VAE needs 1 + 4k" train "$tmp/e6" 2 --validation_frames=6
expect_error "prompt 1 (.*) encodes to .* tokens; the model takes at most" train "$tmp/e9" 2 \
  --validation_prompts="$tmp/long.txt"
novae="$tmp/novae"; cp -r "$ckpt" "$novae"; rm "$novae/Wan2.1_VAE.safetensors"
expect_error "has no VAE" trainers/sdpo --model=wan21 --checkpoint="$novae" --data="$tmp/data" \
  --validation_prompts="$tmp/prompts.jsonl" --out="$tmp/e7"
notext="$tmp/notext"; cp -r "$ckpt" "$notext"; rm "$notext/models_t5_umt5-xxl-enc-bf16.pth"
expect_error "no text encoder in" trainers/sdpo --model=wan21 --checkpoint="$notext" \
  --data="$tmp/data" --validation_prompts="$tmp/prompts.jsonl" --out="$tmp/e8"
echo "PASS: validation videos (fixed noise, resume-safe, in report.md) and held-out pairs"
