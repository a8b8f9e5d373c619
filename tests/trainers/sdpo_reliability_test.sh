#!/usr/bin/env bash
# //trainers:sdpo as clusters and users treat it: SIGTERM mid-run (checkpoint at the step reached,
# exit 75, bit-exact continuation with --resume), reruns over an existing run, --overwrite, a
# finished run resumed, --resume before the first checkpoint, two trainers on one --out, stale
# temporaries of a killed save, and bad flag values. Under a memory limit: nothing here needs
# more than a few hundred MiB.
set -euo pipefail
ulimit -v 8000000
sdpo=trainers/sdpo
tmp="$TEST_TMPDIR"
common=(--model=wan21 --eval_every=0 --pairs_per_prompt=1 --eval_samples=1 --batch=4
        --schedule=constant --progress=false --threads=1)
fail() { echo "FAIL: $*"; exit 1; }
steps_in() { wc -l < "$1/metrics.jsonl"; }
ckpt_step() { grep -ao '"step":"[0-9]*"' "$1/checkpoint.safetensors" | grep -o '[0-9]\+'; }

# --- SIGTERM: the checkpoint at the step reached, exit 75, the resume command printed ----------
"$sdpo" "${common[@]}" --steps=100000 --save_every=0 --out="$tmp/sig" > "$tmp/sig.out" 2> "$tmp/sig.err" &
pid=$!
for _ in $(seq 1 600); do
  [[ -s "$tmp/sig/metrics.jsonl" && $(steps_in "$tmp/sig") -ge 2 ]] && break
  sleep 0.1
done
kill -TERM "$pid"
set +e; wait "$pid"; rc=$?; set -e
[[ $rc -eq 75 ]] || { cat "$tmp/sig.err"; fail "SIGTERM exit code $rc, expected 75"; }
k=$(ckpt_step "$tmp/sig")
[[ $k -ge 2 && $k -eq $(steps_in "$tmp/sig") ]] || fail "checkpoint step $k, metrics $(steps_in "$tmp/sig")"
grep -q "stopped by SIGTERM at step $k" "$tmp/sig.out" || fail "no stop message"
grep -q -- "--out=$tmp/sig --resume" "$tmp/sig.out" || fail "no resume command"
# Continued to k+2 steps, it equals an uninterrupted run of k+2 steps, byte for byte.
"$sdpo" "${common[@]}" --steps=$((k + 2)) --out="$tmp/sig" --resume > "$tmp/resumed.out"
grep -q "resumed at step $k" "$tmp/resumed.out" || fail "did not resume at $k"
"$sdpo" "${common[@]}" --steps=$((k + 2)) --out="$tmp/straight" > /dev/null
cmp "$tmp/sig/checkpoint.safetensors" "$tmp/straight/checkpoint.safetensors" || fail "resume not bit-exact"
cmp "$tmp/sig/adapters.safetensors" "$tmp/straight/adapters.safetensors" || fail "adapters differ"
[[ $(steps_in "$tmp/sig") -eq $((k + 2)) ]] || fail "metrics lines $(steps_in "$tmp/sig")"

# --- a rerun without --resume is refused and changes nothing -----------------------------------
run="$tmp/straight"
sum_before=$(md5sum "$run"/* | md5sum)
if "$sdpo" "${common[@]}" --steps=1 --out="$run" 2> "$tmp/err.txt"; then fail "rerun accepted"; fi
grep -q "already holds a run" "$tmp/err.txt" || fail "rerun message: $(cat "$tmp/err.txt")"
[[ $(md5sum "$run"/* | md5sum) == "$sum_before" ]] || fail "refused rerun changed the run"

# --- resuming a finished run says so and changes nothing ---------------------------------------
"$sdpo" "${common[@]}" --steps=$((k + 2)) --out="$run" --resume > "$tmp/fin.out"
grep -q "is finished: its checkpoint is at step $((k + 2))" "$tmp/fin.out" || fail "finished message"
[[ $(md5sum "$run"/* | md5sum) == "$sum_before" ]] || fail "finished resume changed the run"

# --- other hyper-parameters on resume are refused unless allowed --------------------------------
if "$sdpo" "${common[@]}" --steps=$((k + 3)) --lr=0.01 --out="$run" --resume 2> "$tmp/err.txt"; then
  fail "changed lr accepted"
fi
grep -q 'other settings (lr: 0.001 -> 0.01)' "$tmp/err.txt" || fail "lr change: $(cat "$tmp/err.txt")"
grep -q -- "--allow_config_change" "$tmp/err.txt" || fail "no hint at --allow_config_change"

# --- --overwrite replaces the run; stale temporaries of a killed save are removed ---------------
head -c 4096 /dev/zero > "$run/checkpoint.safetensors.tmp.99999.0"
"$sdpo" "${common[@]}" --steps=1 --out="$run" --overwrite > "$tmp/ow.out"
grep -q "removed $run/checkpoint.safetensors.tmp.99999.0 (4096 bytes" "$tmp/ow.out" || fail "stale tmp"
[[ ! -e "$run/checkpoint.safetensors.tmp.99999.0" ]] || fail "stale tmp kept"
[[ $(steps_in "$run") -eq 1 && $(ckpt_step "$run") -eq 1 ]] || fail "overwrite"

# --- --resume before the first checkpoint starts the run -----------------------------------------
"$sdpo" "${common[@]}" --steps=1 --out="$tmp/new" --resume > "$tmp/new.out"
grep -q "holds no checkpoint yet; starting the run from step 0" "$tmp/new.out" || fail "fresh resume"
[[ $(ckpt_step "$tmp/new") -eq 1 ]] || fail "fresh resume did not train"

# --- two trainers on one --out: the second is refused, naming the first -------------------------
"$sdpo" "${common[@]}" --steps=100000 --out="$tmp/busy" > /dev/null 2>&1 &
first=$!
for _ in $(seq 1 600); do [[ -s "$tmp/busy/.lock" ]] && break; sleep 0.1; done
if "$sdpo" "${common[@]}" --steps=1 --out="$tmp/busy" --resume 2> "$tmp/err.txt"; then
  fail "second trainer accepted"
fi
kill -TERM "$first"; wait "$first" || true
grep -q "is in use by another trainer (pid $first on host" "$tmp/err.txt" || fail "lock: $(cat "$tmp/err.txt")"

# --- bad flag values are refused naming the flag, before anything loads -------------------------
check_flag() {
  local flag=$1 expected=$2
  if "$sdpo" "${common[@]}" "$flag" --out="$tmp/flags" 2> "$tmp/err.txt"; then fail "$flag accepted"; fi
  grep -qF -- "$expected" "$tmp/err.txt" || fail "$flag: $(cat "$tmp/err.txt")"
}
check_flag --beta=0 "--beta=0: DPO beta must be a finite number > 0"
check_flag --beta=nan "--beta=nan: DPO beta must be a finite number > 0"
check_flag --lr=inf "--lr=inf: the peak learning rate must be a finite number > 0"
check_flag --threads=-5 "--threads=-5: must be >= 0"
check_flag --save_every=-1 "--save_every=-1: must be >= 0"
check_flag --max_grad_norm=nan "--max_grad_norm=nan: must be a finite number"
check_flag --max_bad_steps=0 "--max_bad_steps=0: must be >= 1"
[[ ! -e "$tmp/flags" ]] || fail "a refused flag created the run folder"
echo PASS
