#!/usr/bin/env bash
# The Wan2.1-1.3B SDPO-step benchmark of tools/gpu/check.sh: `cuda_check wan_step` runs, each in
# its own process (a crash or an out-of-memory leaves the next one a clean device), within
# BUDGET seconds in all. Every run appends one JSON line (ok true/false) to JSONL.
#   1. full fine-tune, no recompute, latent 16x6x60x104 (9,360 tokens/sample; the PyTorch peer's
#      step; at most 80 s), then the same with per-block recompute (the peer's --ckpt);
#   2. if both failed: LoRA (rank 64) + recompute at 9,360 tokens, then at 16x2x30x52 (780 tokens).
# usage: wan_step.sh CUDA_CHECK JSONL [BUDGET_SECONDS=140]
set -u
BIN=$1
JSONL=$2
BUDGET=${3:-140}
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }
attempt() {  # attempt MIN_SECONDS MAX_SECONDS ARGS...: runs when MIN_SECONDS are left, for at most MAX
  local need=$1 max=$2 l
  shift 2
  l=$(left)
  if ((l < need)); then
    echo "wan_step.sh: skipped ($l s left): $*"
    echo "{\"name\": \"wan_step\", \"label\": \"$*\", \"ok\": false, \"error\": \"skipped: ${l}s left of ${BUDGET}s\"}" >> "$JSONL"
    return 1
  fi
  ((l > max)) && l=$max
  echo "wan_step.sh: running (limit $((l - 3))s): $BIN wan_step $*"
  local n0
  n0=$(wc -l < "$JSONL" 2>/dev/null || echo 0)
  timeout --kill-after=3 $((l - 3)) "$BIN" wan_step --budget_s=$((l * 6 / 10)) --json "$JSONL" "$@"
  local rc=$?
  echo "wan_step.sh: exit $rc"
  if (( $(wc -l < "$JSONL" 2>/dev/null || echo 0) == n0 )); then
    # Killed or crashed before it could print its line.
    echo "{\"name\": \"wan_step\", \"label\": \"$*\", \"ok\": false, \"error\": \"exit $rc (timeout 124/137, crash otherwise) after $((SECONDS - START))s in all\"}" >> "$JSONL"
  fi
  return $rc
}
: >> "$JSONL"
attempt 30 80 --profile
full=$?
attempt 35 999 --recompute
recompute=$?
if ((full != 0 && recompute != 0)); then
  attempt 25 999 --lora --recompute || attempt 10 999 --lora --recompute --f=2 --h=30 --w=52
fi
exit 0
