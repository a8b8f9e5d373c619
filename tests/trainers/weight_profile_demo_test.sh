#!/bin/bash
# The weight_profile tool's demo mode writes its CSV and SVG plots for both families, documents
# the checkpoint-mode TODO in --help, and rejects bad flags with a clear message.
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

"$tool" --help | grep -q "TODO (not implemented yet)"
if "$tool" --family=ddpm --out="$out/x" --checkpoint=model.safetensors 2> "$out/err"; then
  echo "--checkpoint should fail"; exit 1
fi
grep -q "TODO" "$out/err"
if "$tool" --family=diffusion --out="$out/x" 2> "$out/err"; then
  echo "bad family should fail"; exit 1
fi
grep -q "unknown schedule family" "$out/err"
if "$tool" --out="$out/x" 2> "$out/err"; then echo "missing --family should fail"; exit 1; fi
grep -q "family=flow|ddpm is required" "$out/err"
echo "weight_profile demo OK"
