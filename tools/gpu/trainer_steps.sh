#!/usr/bin/env bash
# Runs the trainer until its run folder's metrics.jsonl holds STEPS lines (or more: it looks every
# 0.2 s), then ends it with SIGKILL: the timed steps are all the check needs, and the checkpoint
# a finished run writes (17 GB for the 1.3B's full fine-tuning: f32 weights and AdamW moments)
# would cost the check tens of seconds and disk. Give the trainer more --steps than STEPS.
#   trainer_steps.sh RUN_DIR STEPS TRAINER [FLAGS...]
# Exit 0 when STEPS lines were written, else the trainer's exit code (1 when it ended early
# without one).
set -u
run_dir=$1
want=$2
shift 2
"$@" &
pid=$!
lines() { [[ -f "$run_dir/metrics.jsonl" ]] && grep -c . "$run_dir/metrics.jsonl" || echo 0; }
while kill -0 "$pid" 2>/dev/null; do
  if (( $(lines) >= want )); then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    echo "trainer_steps.sh: $want steps written to $run_dir/metrics.jsonl; trainer ended"
    exit 0
  fi
  sleep 0.2
done
wait "$pid"
rc=$?
(( $(lines) >= want )) && exit 0
echo "trainer_steps.sh: the trainer exited ($rc) after $(lines) of $want steps"
exit $((rc == 0 ? 1 : rc))
