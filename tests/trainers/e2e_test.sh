#!/usr/bin/env bash
# Raw data to a trained model to a video, as a user runs it: a tiny Wan2.1 checkpoint folder with
# the official file names (DiT wan21/tiny_a, VAE wan_vae/tiny_a, umT5 tiny_a as the released
# .pth with google/umt5-xxl/spiece.model), mp4 clips written by io/video and a pairs.jsonl
# -> //trainers:prepare (killed with SIGKILL half way and rerun, or stopped by SIGTERM and rerun:
# the same dataset bit for bit as a straight run) -> //trainers:sdpo 20 steps -> //trainers:sample
# from a prompt to an mp4 that ffprobe reads.
set -euo pipefail
ulimit -v 8000000
tmp="$TEST_TMPDIR"
fail() { echo "FAIL: $*"; exit 1; }

source tests/trainers/tiny_wan_folder.sh

# --- the checkpoint folder, as released ----------------------------------------------------------
ckpt="$tmp/Wan2.1-T2V-tiny"
make_tiny_wan_folder "$ckpt"

# --- raw videos and the table ----------------------------------------------------------------------
mkdir -p "$tmp/videos"
tests/trainers/e2e_make_videos --dir="$tmp/videos" --n=24 --frames=9 --size=40
clip=(--model=wan21 --checkpoint="$ckpt" --pairs="$tmp/videos/pairs.jsonl" --videos="$tmp/videos"
      --frames=5 --height=32 --width=32 --fps=8 --progress=false)

# --- prepare, straight -----------------------------------------------------------------------------
trainers/prepare "${clip[@]}" --out="$tmp/data_straight" --text_cache="$tmp/cache1" > "$tmp/p1.out"
grep -q "wrote 12 pairs" "$tmp/p1.out" || { cat "$tmp/p1.out"; fail "straight prepare"; }

# --- prepare, killed half way (SIGKILL) and rerun ----------------------------------------------------
trainers/prepare "${clip[@]}" --out="$tmp/data" --text_cache="$tmp/cache2" > "$tmp/p2.out" 2>&1 &
pid=$!
for _ in $(seq 1 3000); do
  n=$(ls "$tmp/data/.prepare" 2>/dev/null | grep -c '^row-' || true)
  [[ $n -ge 3 ]] && break
  sleep 0.01
done
kill -KILL "$pid" 2>/dev/null || true
set +e; wait "$pid"; set -e
[[ ! -f "$tmp/data/manifest.jsonl" ]] || fail "prepare finished before it was killed"
trainers/prepare "${clip[@]}" --out="$tmp/data" --text_cache="$tmp/cache2" > "$tmp/p3.out"
grep -Eq "by an earlier run" "$tmp/p3.out" || { cat "$tmp/p3.out"; fail "rerun did not resume"; }
grep -q " 0 by an earlier run" "$tmp/p3.out" && fail "rerun found nothing done: $(cat "$tmp/p3.out")"
diff -r "$tmp/data" "$tmp/data_straight" || fail "resumed dataset differs from the straight one"

# --- SIGTERM: stops after the current row with exit 75; the rerun finishes the same dataset -----
trainers/prepare "${clip[@]}" --out="$tmp/data_term" --text_cache="$tmp/cache2" > "$tmp/t1.out" 2>&1 &
pid=$!
for _ in $(seq 1 3000); do
  n=$(ls "$tmp/data_term/.prepare" 2>/dev/null | grep -c '^row-' || true)
  [[ $n -ge 2 ]] && break
  sleep 0.01
done
kill -TERM "$pid" 2>/dev/null || true
set +e; wait "$pid"; rc=$?; set -e
[[ $rc -eq 75 ]] || { cat "$tmp/t1.out"; fail "SIGTERM exit code $rc, expected 75"; }
grep -q "rerun the same command to continue" "$tmp/t1.out" || fail "no resume hint: $(cat "$tmp/t1.out")"
trainers/prepare "${clip[@]}" --out="$tmp/data_term" --text_cache="$tmp/cache2" > /dev/null
diff -r "$tmp/data_term" "$tmp/data_straight" || fail "dataset after SIGTERM + rerun differs"

# --- train 20 steps on it ------------------------------------------------------------------------------
# (the folder as released: the trainer picks the DiT's official file name over the VAE's)
trainers/sdpo --model=wan21 --checkpoint="$ckpt" --data="$tmp/data" --steps=20 --batch=2 \
  --lora_rank=4 --eval_every=0 --save_every=0 --progress=false --threads=2 --out="$tmp/run" \
  > "$tmp/train.out" || { cat "$tmp/train.out"; fail "training"; }
[[ $(wc -l < "$tmp/run/metrics.jsonl") -eq 20 ]] || fail "metrics lines $(wc -l < "$tmp/run/metrics.jsonl")"
[[ -s "$tmp/run/adapters.safetensors" ]] || fail "no adapters"

# --- sample the trained model from a prompt to mp4 ------------------------------------------------------
trainers/sample --model=wan21 --checkpoint="$ckpt" --lora="$tmp/run/adapters.safetensors" \
  --prompt="a square moving right, 0" --frames=5 --height=32 --width=32 --steps=3 \
  --progress=false --threads=2 --out="$tmp/out/video.mp4" > "$tmp/sample.out" 2>&1 \
  || { cat "$tmp/sample.out"; fail "sampling"; }
[[ -s "$tmp/out/video.mp4" ]] || { cat "$tmp/sample.out"; fail "no mp4"; }
if command -v ffprobe > /dev/null; then
  frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries \
    stream=nb_read_frames,width,height -of csv=p=0 "$tmp/out/video.mp4")
  [[ "$frames" == "32,32,5" ]] || fail "ffprobe: $frames (expected 32,32,5)"
fi
echo "PASS: videos -> prepare (killed and resumed, same bytes) -> 20 steps -> mp4"
