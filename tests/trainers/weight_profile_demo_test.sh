#!/bin/bash
# The weight_profile tool's demo mode writes its CSV and SVG plots for both families, documents
# the checkpoint mode in --help, measures a trained demo run (--checkpoint) and its metrics
# (--run), and rejects bad flags with a clear message.
set -euo pipefail
tool="$1"
out="${TEST_TMPDIR:-/tmp}/weight_profile"

for family in ddpm flow; do
  "$tool" --family="$family" --out="$out/$family" --buckets=10 --pairs_per_step=2
  for f in weight_profile.csv weight_profile_points.csv weight_profile.svg weight_profile_w.svg; do
    test -s "$out/$family/$f" || { echo "missing $out/$family/$f"; exit 1; }
  done
  grep -q "</svg>" "$out/$family/weight_profile.svg"
  grep -q "<polyline" "$out/$family/weight_profile.svg"
  head -1 "$out/$family/weight_profile.csv" |
    grep -q "^bucket,t_lo,t_hi,pairs,mask_rate,winner_mean"
  lines=$(wc -l < "$out/$family/weight_profile.csv")
  [ "$lines" -eq 11 ] || { echo "expected 10 buckets + header, got $lines lines"; exit 1; }
  lines=$(wc -l < "$out/$family/weight_profile_points.csv")
  [ "$lines" -eq 1001 ] || { echo "expected 1000 grid points + header, got $lines lines"; exit 1; }
done

# Calibrated normalisation: the low-t buckets are masked, the middle ones are not.
"$tool" --family=ddpm --out="$out/calibrated" --buckets=10 --calibrate_timestep=63 > "$out/log"
grep -q "mask rate" "$out/log"

"$tool" --help > "$out/help" || true
grep -q -- "--checkpoint=RUN|FILE" "$out/help"
mkdir -p "$out/no_run"
if "$tool" --out="$out/x" --checkpoint="$out/no_run" 2> "$out/err"; then
  echo "--checkpoint without adapters should fail"; exit 1
fi
grep -q "no adapters file $out/no_run/adapters.safetensors" "$out/err"
if "$tool" --family=diffusion --out="$out/x" 2> "$out/err"; then
  echo "bad family should fail"; exit 1
fi
grep -q "unknown schedule family" "$out/err"
if "$tool" --out="$out/x" 2> "$out/err"; then echo "missing --family should fail"; exit 1; fi
grep -q "family=flow|ddpm is required" "$out/err"
# --run: the profile measured in training, from a run's metrics.jsonl (hand-written: 10 steps,
# 3 buckets; the first step's winners weigh 0.5 in bucket 0, the last step's 1.5).
run="$out/run"
mkdir -p "$run"
: > "$run/metrics.jsonl"
for s in 1 2 3 4 5 6 7 8 9 10; do
  w=1.0; [ $s -eq 1 ] && w=0.5; [ $s -eq 10 ] && w=1.5
  echo "{\"step\": $s, \"skipped\": false, \"metrics\": {\"bucket_t_lo/b0\": 0, \"bucket_pairs/b0\": 2, \"logw_w_weight_mean/b0\": $w, \"logw_l_weight_mean/b0\": 0.9, \"bucket_t_lo/b1\": 300, \"bucket_pairs/b1\": 1, \"logw_w_weight_mean/b1\": 1.25, \"logw_l_weight_mean/b1\": 0.75, \"bucket_t_lo/b2\": 600, \"bucket_pairs/b2\": 0}}" >> "$run/metrics.jsonl"
done
"$tool" --run="$run" --out="$out/from_run" | grep -q "10 steps, window 1"
grep -q "^0,0,2,0.5,0.9,2,1.5,0.9$" "$out/from_run/weight_profile_run.csv"
grep -q "^1,300,1,1.25,0.75,1,1.25,0.75$" "$out/from_run/weight_profile_run.csv"
grep -q "^2,600,0,nan,nan,0,nan,nan$" "$out/from_run/weight_profile_run.csv"  # no pairs there
grep -q "<polyline" "$out/from_run/weight_profile_run.svg"
if "$tool" --run="$out/nowhere" --out="$out/x" 2> "$out/err"; then echo "bad --run"; exit 1; fi
grep -q "cannot read .*metrics.jsonl" "$out/err"
# --checkpoint: a trained demo run's adapters on the base model, 4 buckets x 2 demo pairs. The
# closed form gives 0 < w <= 1, and k(t) falls with t, so the lowest bucket weighs least.
sdpo="$2"
"$sdpo" --model=wan21 --steps=3 --eval_every=0 --save_every=0 --pairs_per_prompt=1 \
  --eval_samples=1 --batch=2 --progress=false --out="$out/trained" > "$out/train.log"
"$tool" --checkpoint="$out/trained" --buckets=4 --num_pairs=2 --out="$out/ckpt" > "$out/ckpt.log"
grep -q "$out/trained/adapters.safetensors on 2 pairs (demo pairs of seed 0)" "$out/ckpt.log"
for f in weight_profile.csv weight_profile.svg weight_profile_w.svg; do
  [ -s "$out/ckpt/$f" ] || { echo "missing $f"; exit 1; }
done
awk -F, 'NR > 1 {
  if ($4 != 2 || $12 <= 0 || $12 > 1 || $19 <= 0 || $19 > 1) { print "bad row: " $0; bad = 1 }
  w[NR] = $12 } END { if (bad || NR != 5 || !(w[2] < w[5])) { print "profile wrong"; exit 1 } }' \
  "$out/ckpt/weight_profile.csv"
if "$tool" --checkpoint="$out/trained" --base="$out/trained/adapters.safetensors" \
  --out="$out/x" 2> "$out/err"; then echo "--base without pairs should fail"; exit 1; fi
grep -q "needs the pairs to measure on: --data=DIR or --pairs=FILE" "$out/err"
echo "weight_profile demo OK"
