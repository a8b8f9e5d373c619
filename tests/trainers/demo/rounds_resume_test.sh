#!/usr/bin/env bash
# --rounds on the demo: resume across a round boundary is bit-exact, the round files record
# their generator, and the generator weight source runs on them (the other sources:
# //tests/trainers:weight_sources_test).
set -euo pipefail
common=(--model=wan21 --threads=1 --steps=4 --rounds=2 --eval_every=0 --pairs_per_prompt=1
        --eval_samples=1 --batch=2 --save_every=0 --progress=false
        --objective_option=effective_elements=1024,weight_source=generator)
straight="$TEST_TMPDIR/straight"
trainers/sdpo "${common[@]}" --out="$straight" > "$TEST_TMPDIR/straight.txt"
grep -q "round 1: .* new pairs from the policy at step 2" "$TEST_TMPDIR/straight.txt"
[[ $(wc -l < "$straight/rounds.jsonl") -eq 2 ]]
[[ $(wc -l < "$straight/metrics.jsonl") -eq 4 ]]
# Generator bookkeeping: round 1's pairs name their generator and its adapter checkpoint.
header=$(head -c 4000 "$straight/rounds/round1_pairs.safetensors" | tr -d '\0')
grep -q '"generator":"round1"' <<< "$header"
grep -q 'round1_generator.safetensors' <<< "$header"
[[ -s "$straight/rounds/round1_generator.safetensors" ]]
# Stopped at the round boundary (step 2), then resumed: the same adapters bit for bit.
split="$TEST_TMPDIR/split"
trainers/sdpo "${common[@]}" --out="$split" --until_round=1 > /dev/null
[[ ! -e "$split/rounds/round1_pairs.safetensors" ]]
trainers/sdpo "${common[@]}" --out="$split" --resume > "$TEST_TMPDIR/split.txt"
grep -q "round 1: .* pairs in the buffer, resumed at step 2" "$TEST_TMPDIR/split.txt"
cmp "$straight/adapters.safetensors" "$split/adapters.safetensors"
cmp "$straight/rounds/round1_pairs.safetensors" "$split/rounds/round1_pairs.safetensors"
[[ $(wc -l < "$split/metrics.jsonl") -eq 4 ]]
# Bad uses fail with a clear message.
if trainers/sdpo --rounds=5 --steps=3 --out="$TEST_TMPDIR/x" 2> "$TEST_TMPDIR/err.txt"; then exit 1; fi
grep -q "expected 1 <= rounds <= --steps" "$TEST_TMPDIR/err.txt"
echo PASS
