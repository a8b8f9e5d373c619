#!/bin/bash
# The embedding example trains, saves its adapters, samples and evaluates through //engine.
set -euo pipefail
out="${TEST_TMPDIR:-/tmp}/embed"
mkdir -p "$out"
"$1" --steps=3 --adapters="$out/adapters.safetensors" | tee "$out/log"
for want in "step 3: loss" "sample for" "held-out reward"; do
  grep -q "$want" "$out/log" || { echo "missing '$want' in the output"; exit 1; }
done
test -s "$out/adapters.safetensors" || { echo "no adapters written"; exit 1; }
if "$1" --bogus 2> "$out/err"; then echo "an unknown flag should fail"; exit 1; fi
echo "embed example OK"
