#!/usr/bin/env bash
# --reward_cmd on a real-format checkpoint: a tiny Wan2.1 folder with the official file names
# (DiT, VAE, umT5 + tokenizer); each round samples videos per prompt from the policy to mp4,
# the scorer command ranks them, the pairs are encoded by the VAE and trained on. A scorer that
# crashes, hangs or prints garbage stops the run with a named error, and the run continues with
# --resume from what its folder kept (the round's videos are not sampled again).
set -euo pipefail
ulimit -v 8000000
tmp="$TEST_TMPDIR"
fail() { echo "FAIL: $*"; exit 1; }

source tests/trainers/tiny_wan_folder.sh
ckpt="$tmp/Wan2.1-T2V-tiny"
make_tiny_wan_folder "$ckpt"
printf 'a square moving right\na circle moving up\n' > "$tmp/prompts.txt"

# Scorers: good (distinct scores, the later video of each two wins; logs its stdin), crash,
# hang, garbage.
cat > "$tmp/good.sh" <<'SH'
#!/bin/sh
cat > "$SCORER_LOG"
n=$(grep -o '"video"' "$SCORER_LOG" | wc -l)
echo "[$(seq -s, 1 "$n")]"
SH
printf '#!/bin/sh\ncat > /dev/null\necho "scorer: model weights missing" >&2\nexit 3\n' > "$tmp/crash.sh"
printf '#!/bin/sh\nsleep 60\n' > "$tmp/hang.sh"
printf '#!/bin/sh\ncat > /dev/null\necho "score: 0.5"\n' > "$tmp/garbage.sh"

run=(trainers/sdpo --model=wan21 --checkpoint="$ckpt" --prompts="$tmp/prompts.txt"
     --frames=5 --height=32 --width=32 --fps=8 --sample_steps=2 --guidance=1
     --samples_per_prompt=2 --rounds=2 --steps=4 --batch=2 --lora_rank=4 --eval_every=0
     --save_every=0 --progress=false --threads=2)

# --- a crashing scorer: named error, exit 1; round 0's videos stay ---------------------------
if "${run[@]}" --out="$tmp/run" --reward_cmd="sh $tmp/crash.sh" > "$tmp/crash.out" 2>&1; then
  fail "a crashing scorer did not stop the run"
fi
grep -q "reward_cmd='sh $tmp/crash.sh' failed with exit code 3" "$tmp/crash.out" \
  || { cat "$tmp/crash.out"; fail "crash not named"; }
grep -q "scorer: model weights missing" "$tmp/crash.out" || fail "no stderr tail"
[[ $(ls "$tmp/run/rounds/round0/videos" | grep -c '\.mp4$') -eq 4 ]] || fail "videos not kept"
[[ ! -f "$tmp/run/rounds/round0/scores.json" ]] || fail "scores written by a failed scorer"

# --- resumed with a working scorer: both rounds, 4 steps -------------------------------------
SCORER_LOG="$tmp/scorer_stdin.json" "${run[@]}" --out="$tmp/run" --resume \
  --reward_cmd="sh $tmp/good.sh" > "$tmp/good.out" 2>&1 || { cat "$tmp/good.out"; fail "good run"; }
grep -q "round 0: 4 videos of the base model scored, 2 pairs" "$tmp/good.out" \
  || { cat "$tmp/good.out"; fail "round 0"; }
grep -q "round 1: 4 videos of the policy at step 2 scored, 2 pairs" "$tmp/good.out" \
  || { cat "$tmp/good.out"; fail "round 1"; }
for f in round0_pairs.safetensors round1_pairs.safetensors round1_generator.safetensors \
         round0/scores.json round1/scores.json; do
  [[ -s "$tmp/run/rounds/$f" ]] || fail "missing rounds/$f"
done
[[ $(wc -l < "$tmp/run/rounds.jsonl") -eq 2 ]] || fail "rounds.jsonl"
[[ $(wc -l < "$tmp/run/metrics.jsonl") -eq 4 ]] || fail "metrics lines"
grep -q '"prompt":"a circle moving up","video":"[^"]*/rounds/round1/videos/p1_s1.mp4"' \
  "$tmp/scorer_stdin.json" || { cat "$tmp/scorer_stdin.json"; fail "scorer input"; }
[[ "$(tr -d ' \n' < "$tmp/run/rounds/round1/scores.json" | sed 's/\.0\b//g')" == "[1,2,3,4]" ]] \
  || fail "scores.json: $(cat "$tmp/run/rounds/round1/scores.json")"

# --- a hanging scorer is killed at the timeout; garbage is named ------------------------------
if "${run[@]}" --out="$tmp/hang" --reward_cmd="sh $tmp/hang.sh" --reward_timeout_s=1 \
  > "$tmp/hang.out" 2>&1; then fail "a hanging scorer did not stop the run"; fi
grep -q "did not finish within --reward_timeout_s=1 s and was killed" "$tmp/hang.out" \
  || { cat "$tmp/hang.out"; fail "hang not named"; }
if "${run[@]}" --out="$tmp/garbage" --reward_cmd="sh $tmp/garbage.sh" > "$tmp/garbage.out" 2>&1; then
  fail "garbage scores were accepted"
fi
grep -q "printed something that is not a JSON list of 4 numbers" "$tmp/garbage.out" \
  || { cat "$tmp/garbage.out"; fail "garbage not named"; }
grep -q "output begins: 'score: 0.5" "$tmp/garbage.out" || fail "garbage output not shown"
echo "PASS: --reward_cmd rounds (crash, resume, two rounds, hang, garbage)"
