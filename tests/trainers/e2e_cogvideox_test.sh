#!/usr/bin/env bash
# CogVideoX from raw data to a trained model to a video, as a user runs it, on a tiny folder in
# the diffusers layout made from the shared fixtures (transformer/: the tiny 2B architecture with
# the tiny T5's width 48 and 226 text tokens; vae/: cogvideox_vae tiny_a; text_encoder/: t5 tiny_a
# under transformers names with a transformers config.json; tokenizer/spiece.model: the umt5
# fixtures' SentencePiece model): mp4 clips -> //trainers:prepare --model=cogvideox-2b ->
# //trainers:sdpo 4 LoRA steps -> //trainers:sample --prompt (DDIM) to an mp4 that ffprobe reads;
# prepare --vae_tiling (diffusers' enable_tiling) gives other latents of the same shapes; the 5B
# architecture samples with DPM; a folder without its tokenizer is refused by name.
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

mkdir -p "$tmp/videos"
tests/trainers/e2e_make_videos --dir="$tmp/videos" --n=8 --frames=9 --size=40
clip=(--model=cogvideox-2b --checkpoint="$ckpt" --pairs="$tmp/videos/pairs.jsonl"
      --videos="$tmp/videos" --frames=9 --height=32 --width=32 --fps=8 --progress=false)

# --- prepare ---------------------------------------------------------------------------------------
trainers/prepare "${clip[@]}" --out="$tmp/data" --text_cache="$tmp/cache" > "$tmp/p1.out" 2>&1 \
  || { cat "$tmp/p1.out"; fail "prepare"; }
grep -q "wrote 4 pairs" "$tmp/p1.out" || { cat "$tmp/p1.out"; fail "prepare summary"; }
# Latents [16, 3, 4, 4] (9 frames -> 3 latent frames, 32 px -> 4) and contexts [226, 48].
grep -q '"shape":\[16,3,4,4\]\|"shape": \[16, 3, 4, 4\]' "$tmp"/data/*.safetensors \
  || fail "no [16, 3, 4, 4] latent in the shards"
grep -q '"shape":\[226,48\]\|"shape": \[226, 48\]' "$tmp"/data/*.safetensors \
  || fail "no [226, 48] context in the shards"

# --- VAE tiles (diffusers' enable_tiling): same shapes, other latents; Wan2.1 refuses the flag ------
trainers/prepare "${clip[@]}" --vae_tiling=16x16:8x8 --out="$tmp/data_tiled" \
  --text_cache="$tmp/cache" > "$tmp/pt.out" 2>&1 || { cat "$tmp/pt.out"; fail "prepare --vae_tiling"; }
grep -q "wrote 4 pairs" "$tmp/pt.out" || { cat "$tmp/pt.out"; fail "tiled prepare summary"; }
grep -q '"shape":\[16,3,4,4\]\|"shape": \[16, 3, 4, 4\]' "$tmp"/data_tiled/*.safetensors \
  || fail "no [16, 3, 4, 4] latent in the tiled shards"
cmp -s <(cat "$tmp"/data/*.safetensors) <(cat "$tmp"/data_tiled/*.safetensors) \
  && fail "tiled latents equal the untiled ones"
if trainers/prepare --model=wan21 --vae_tiling=on > "$tmp/wt.out" 2>&1; then
  fail "prepare --model=wan21 --vae_tiling=on succeeded"
fi
grep -q "vae_tiling is for the CogVideoX VAE" "$tmp/wt.out" || { cat "$tmp/wt.out"; fail "wan21 tiling message"; }

# --- train 4 LoRA steps on it ------------------------------------------------------------------------
trainers/sdpo --model=cogvideox-2b --checkpoint="$ckpt" --data="$tmp/data" --steps=4 --batch=2 \
  --lora_rank=4 --eval_every=0 --save_every=0 --progress=false --threads=2 --out="$tmp/run" \
  > "$tmp/train.out" 2>&1 || { cat "$tmp/train.out"; fail "training"; }
[[ $(wc -l < "$tmp/run/metrics.jsonl") -eq 4 ]] || fail "metrics lines $(wc -l < "$tmp/run/metrics.jsonl")"
[[ -s "$tmp/run/adapters.safetensors" ]] || fail "no adapters"

# --- sample the trained model from a prompt to mp4 ------------------------------------------------------
probe() {  # width,height,frames of an mp4
  ffprobe -v error -count_frames -select_streams v:0 -show_entries \
    stream=width,height,nb_read_frames -of csv=p=0 "$1"
}
trainers/sample --model=cogvideox-2b --checkpoint="$ckpt" --lora="$tmp/run/adapters.safetensors" \
  --prompt="a square moving right, 0" --frames=9 --height=32 --width=32 --steps=3 \
  --progress=false --threads=2 --out="$tmp/out/video.mp4" > "$tmp/sample.out" 2>&1 \
  || { cat "$tmp/sample.out"; fail "sampling"; }
grep -q "LoRA: .* adapted layers" "$tmp/sample.out" || { cat "$tmp/sample.out"; fail "no LoRA"; }
[[ -s "$tmp/out/video.mp4" && -s "$tmp/out/video.latents.safetensors" ]] \
  || { cat "$tmp/sample.out"; fail "no mp4 or latents"; }
if command -v ffprobe > /dev/null; then
  [[ "$(probe "$tmp/out/video.mp4")" == "32,32,9" ]] || fail "ffprobe: $(probe "$tmp/out/video.mp4")"
fi

# --- the 5B architecture (3-D RoPE) with the DPM sampler, 2 samples -----------------------------------
tests/trainers/make_tiny_cogvideox_folder --out="$tmp/CogVideoX-5b-tiny" --fixtures="$fixtures" \
  --five_b --frames=9 --height=32 --width=32
trainers/sample --model=cogvideox-5b --checkpoint="$tmp/CogVideoX-5b-tiny" --sampler=dpm \
  --prompt="a square moving left, 1" --samples=2 --frames=9 --height=32 --width=48 --steps=3 \
  --progress=false --threads=2 --out="$tmp/out5/video.mp4" > "$tmp/sample5.out" 2>&1 \
  || { cat "$tmp/sample5.out"; fail "5B sampling"; }
for i in 0 1; do
  [[ -s "$tmp/out5/video_$i.mp4" ]] || { cat "$tmp/sample5.out"; fail "no 5B mp4 $i"; }
  if command -v ffprobe > /dev/null; then
    [[ "$(probe "$tmp/out5/video_$i.mp4")" == "48,32,9" ]] || fail "5B ffprobe: $(probe "$tmp/out5/video_$i.mp4")"
  fi
done
cmp -s "$tmp/out5/video_0.mp4" "$tmp/out5/video_1.mp4" && fail "the two samples are identical"

# --- a folder without its tokenizer is refused by name ------------------------------------------------
rm "$ckpt/tokenizer/spiece.model"
if trainers/prepare "${clip[@]}" --out="$tmp/data2" --text_cache="$tmp/cache2" > "$tmp/bad.out" 2>&1; then
  fail "prepare without tokenizer/spiece.model succeeded"
fi
grep -q "tokenizer/spiece.model" "$tmp/bad.out" || { cat "$tmp/bad.out"; fail "error does not name the tokenizer"; }
echo "PASS: videos -> prepare (cogvideox-2b, untiled and tiled) -> 4 LoRA steps -> mp4; 5B DPM samples; missing tokenizer named"
