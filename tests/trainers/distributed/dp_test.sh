#!/bin/bash
# Data-parallel training on 2 MPI ranks (see docs/distributed.md):
#   1. 2 ranks x batch 2 give the same LoRA weights as 1 rank x batch 4 (Diffusion-DPO, SDPO with
#      its C&M mask, DPO-C&M; gradient accumulation too);
#   2. a 2-rank run resumed from its checkpoint continues exactly as the straight 2-rank run,
#      also after a stop request (a signal) that reached one rank only;
#   3. ranks with different configurations stop with an error naming the field;
#   4. a rank that dies (error exit, exit 0 without MPI_Finalize, SIGKILL) makes mpirun stop
#      with a non-zero status within 60 s;
#   5. ZeRO-1: 2 ranks x batch 2 with --zero=1 equal 1 rank x batch 4 and 2 ranks with --zero=0;
#      a resumed 2-rank ZeRO-1 run continues bit for bit; checkpoints of either kind resume the
#      other; tiny all-reduce buckets give the same run as one bucket;
#   6. a rank that hangs while alive makes the others stop with a timeout error naming the
#      collective within --collective_timeout_s (5 s here), and mpirun ends the job.
set -u

BIN="${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/trainers/distributed/dp_train"
T="${TEST_TMPDIR:-$(mktemp -d)}"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

if ! command -v mpirun > /dev/null 2>&1; then
  fail "mpirun not found: this test needs OpenMPI (Debian: apt-get install libopenmpi-dev" \
    "openmpi-bin, as tools/setup.sh does)"
fi
# Shared-memory transport only (no network probing in sandboxes); root is fine in containers.
export OMPI_MCA_btl="self,vader"
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(timeout 60 mpirun --allow-run-as-root --oversubscribe -np 2)

run2() {  # run2 OUT ARGS...: 2 ranks; on failure the run's log goes to the test log
  local out="$1" status
  shift
  "${MPIRUN[@]}" "$BIN" --out="$out" "$@" > "$out.log" 2>&1
  status=$?
  [[ $status -eq 0 ]] || { echo "--- $out.log (exit $status):"; tail -n 40 "$out.log"; }
  return $status
}
run1() {  # run1 OUT ARGS...: one process, no MPI
  local out="$1"
  shift
  "$BIN" --out="$out" "$@" > "$out.log" 2>&1
}

# 1. 2 x b == 1 x 2b.
for obj in diffusion_dpo sdpo dpo_cm; do
  run1 "$T/one_$obj" --objective="$obj" --steps=3 --batch=4 || {
    cat "$T/one_$obj.log"
    fail "1-rank run ($obj)"
  }
  run2 "$T/two_$obj" --objective="$obj" --steps=3 --batch=2 || {
    cat "$T/two_$obj.log"
    fail "2-rank run ($obj)"
  }
  "$BIN" --compare "$T/one_$obj/checkpoint.safetensors" "$T/two_$obj/checkpoint.safetensors" ||
    fail "$obj: 2 ranks x batch 2 differ from 1 rank x batch 4"
  # Rank 0 alone writes the per-step log, with the global batch's metrics.
  [ "$(wc -l < "$T/two_$obj/metrics.jsonl")" -eq 3 ] || fail "$obj: metrics.jsonl should have 3 lines"
done
run1 "$T/one_accum" --steps=2 --batch=4 --grad_accum=2 || fail "1-rank run with grad_accum"
run2 "$T/two_accum" --steps=2 --batch=2 --grad_accum=2 || {
  cat "$T/two_accum.log"
  fail "2-rank run with grad_accum"
}
"$BIN" --compare "$T/one_accum/checkpoint.safetensors" "$T/two_accum/checkpoint.safetensors" ||
  fail "grad_accum 2: 2 ranks x batch 2 differ from 1 rank x batch 4"

# 2. Resume: 2 steps, then on to 3, equals the straight 3-step 2-rank run.
run2 "$T/resumed" --steps=2 --batch=2 || fail "2-rank run (first half)"
run2 "$T/resumed" --steps=3 --batch=2 --resume || {
  cat "$T/resumed.log"
  fail "2-rank resume"
}
"$BIN" --compare --tolerance=0 "$T/two_sdpo/checkpoint.safetensors" \
  "$T/resumed/checkpoint.safetensors" || fail "a resumed 2-rank run differs from the straight one"

# 2b. A stop request (a signal) that reached rank 1 only: both ranks stop before the same step,
# rank 0 writes the checkpoint there, and the resumed run equals the straight one.
run2 "$T/stopped" --steps=3 --batch=2 --stop_rank=1 --stop_step=2 || fail "2-rank stop"
[[ $(grep -c "interrupted at step 2" "$T/stopped.log") -eq 2 ]] || {
  cat "$T/stopped.log"
  fail "the ranks did not stop together at step 2"
}
run2 "$T/stopped" --steps=3 --batch=2 --resume || fail "2-rank resume after a stop"
"$BIN" --compare --tolerance=0 "$T/two_sdpo/checkpoint.safetensors" \
  "$T/stopped/checkpoint.safetensors" || fail "a stopped and resumed 2-rank run differs"

# 3. Mismatched configurations.
run2 "$T/mismatch" --steps=1 --batch=2 --mismatch_rank=1 && fail "mismatched ranks ran"
grep -q "configurations differ: batch" "$T/mismatch.log" || {
  cat "$T/mismatch.log"
  fail "the mismatch error does not name the field"
}

# 4. A dead rank (error exit, exit 0 without MPI_Finalize, SIGKILL): mpirun must end the whole
# job with a non-zero status instead of leaving rank 0 waiting in a collective.
for how in exit3 exit0 kill; do
  start=$(date +%s)
  run2 "$T/dead_$how" --steps=20 --batch=2 --die_rank=1 --die_step=1 --die_how="$how"
  rc=$?
  elapsed=$(($(date +%s) - start))
  [ "$rc" -ne 0 ] || {
    cat "$T/dead_$how.log"
    fail "mpirun exited 0 although rank 1 died ($how)"
  }
  [ "$rc" -ne 124 ] || {
    cat "$T/dead_$how.log"
    fail "mpirun hung after rank 1 died ($how; killed by timeout after ${elapsed}s)"
  }
  echo "dead rank ($how): mpirun exited with $rc after ${elapsed}s"
done

# 5. ZeRO-1.
run2 "$T/zero_sdpo" --objective=sdpo --steps=3 --batch=2 --zero=1 || {
  cat "$T/zero_sdpo.log"
  fail "2-rank ZeRO-1 run"
}
"$BIN" --compare "$T/one_sdpo/checkpoint.safetensors" "$T/zero_sdpo/checkpoint.safetensors" ||
  fail "ZeRO-1: 2 ranks x batch 2 differ from 1 rank x batch 4"
"$BIN" --compare --tolerance=1e-6 "$T/two_sdpo/checkpoint.safetensors" \
  "$T/zero_sdpo/checkpoint.safetensors" || fail "2 ranks: ZeRO-1 differs from the all-reduce path"
"$BIN" --compare --optimizer --tolerance=1e-6 "$T/two_sdpo/checkpoint.safetensors" \
  "$T/zero_sdpo/checkpoint.safetensors" || fail "2 ranks: ZeRO-1's gathered AdamW state differs"
run2 "$T/zero_accum" --steps=2 --batch=2 --grad_accum=2 --zero=1 || fail "ZeRO-1 with grad_accum"
"$BIN" --compare "$T/one_accum/checkpoint.safetensors" "$T/zero_accum/checkpoint.safetensors" ||
  fail "ZeRO-1 grad_accum 2: 2 ranks x batch 2 differ from 1 rank x batch 4"
# Resume of a ZeRO-1 run (its shards gathered into one checkpoint, re-sharded on load).
run2 "$T/zero_resumed" --steps=2 --batch=2 --zero=1 || fail "2-rank ZeRO-1 run (first half)"
run2 "$T/zero_resumed" --steps=3 --batch=2 --zero=1 --resume || {
  cat "$T/zero_resumed.log"
  fail "2-rank ZeRO-1 resume"
}
"$BIN" --compare --tolerance=0 "$T/zero_sdpo/checkpoint.safetensors" \
  "$T/zero_resumed/checkpoint.safetensors" || fail "a resumed ZeRO-1 run differs from the straight one"
"$BIN" --compare --optimizer --tolerance=0 "$T/zero_sdpo/checkpoint.safetensors" \
  "$T/zero_resumed/checkpoint.safetensors" || fail "a resumed ZeRO-1 run's AdamW state differs"
# Cross: a ZeRO-1 checkpoint resumed without ZeRO, and the other way round.
run2 "$T/cross_a" --steps=2 --batch=2 --zero=1 || fail "cross (ZeRO-1 first half)"
run2 "$T/cross_a" --steps=3 --batch=2 --zero=0 --resume || fail "cross (resume without ZeRO)"
"$BIN" --compare --tolerance=1e-6 "$T/zero_sdpo/checkpoint.safetensors" \
  "$T/cross_a/checkpoint.safetensors" || fail "a ZeRO-1 checkpoint resumed without ZeRO differs"
run2 "$T/cross_b" --steps=2 --batch=2 --zero=0 || fail "cross (all-reduce first half)"
run2 "$T/cross_b" --steps=3 --batch=2 --zero=1 --resume || fail "cross (resume with ZeRO-1)"
"$BIN" --compare --tolerance=1e-6 "$T/two_sdpo/checkpoint.safetensors" \
  "$T/cross_b/checkpoint.safetensors" || fail "an all-reduce checkpoint resumed with ZeRO-1 differs"
# Buckets of 1 KiB (dozens per step, tensors split across buckets) vs the default 25 MiB.
run2 "$T/small_buckets" --steps=3 --batch=2 --bucket_mb=0.001 || fail "2-rank run, 1 KiB buckets"
"$BIN" --compare --tolerance=0 "$T/two_sdpo/checkpoint.safetensors" \
  "$T/small_buckets/checkpoint.safetensors" || fail "1 KiB buckets differ from one bucket"
run2 "$T/zero_small" --steps=3 --batch=2 --zero=1 --bucket_mb=0.001 || fail "ZeRO-1, 1 KiB chunks"
"$BIN" --compare --tolerance=0 "$T/zero_sdpo/checkpoint.safetensors" \
  "$T/zero_small/checkpoint.safetensors" || fail "ZeRO-1 with 1 KiB chunks differs from one chunk"

# 6. A hung rank (alive, sleeping outside any collective): rank 0 must give up after the 5 s
# timeout with an error naming the collective, and the job must end (MPI_Abort).
for zero in 0 1; do
  start=$(date +%s)
  run2 "$T/hang_$zero" --steps=20 --batch=2 --zero="$zero" --hang_rank=1 --hang_step=1 \
    --collective_timeout_s=5
  rc=$?
  elapsed=$(($(date +%s) - start))
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || {
    cat "$T/hang_$zero.log"
    fail "a hung rank (zero=$zero): mpirun exited with $rc after ${elapsed}s"
  }
  grep -q "rank 0 of 2): .*timed out on rank 0 of 2 after 5 s" "$T/hang_$zero.log" || {
    cat "$T/hang_$zero.log"
    fail "a hung rank (zero=$zero): no timeout error from rank 0"
  }
  [ "$elapsed" -le 30 ] || fail "a hung rank (zero=$zero): the job took ${elapsed}s to end"
  echo "hung rank (zero=$zero): $(grep -o 'error (rank 0 of 2): [A-Za-z]* ([^)]*)' \
    "$T/hang_$zero.log" | head -1); mpirun exited with $rc after ${elapsed}s"
done

echo "PASS"
