#!/usr/bin/env bash
# tools/gpu/check.sh --dry-run without a GPU or a bundle: every check the dry run can make passes
# (script paths and syntax, the peers' Python, the generator and the trainer at a tiny size, the
# trainer ended after its timed steps before it writes a checkpoint), and the table skeleton names every target with "not
# run". A broken generator, trainer flag or script path fails it.
set -euo pipefail
export SDPO_CHECK_OUTDIR="$TEST_TMPDIR/check" SDPO_CHECK_DATA="$TEST_TMPDIR/data"
export SDPO_CHECK_ALLOW_NO_BUNDLE=1 OUT="$TEST_TMPDIR/out"
export SDPO_MAKE_DATA="$PWD/tools/data/make_full_scale" SDPO_TRAINER="$PWD/trainers/sdpo"
export SDPO_SAMPLE="$PWD/trainers/sample"
export SDPO_CHECK_PARTS=parity,nccl,bench,vae,cogvideox_vae,wan_step,trainer,compile,sample,32k,14b
bash tools/gpu/check.sh --dry-run > "$TEST_TMPDIR/stdout.txt" 2>&1 || {
  cat "$TEST_TMPDIR/stdout.txt"
  exit 1
}
steps="$SDPO_CHECK_OUTDIR/steps.tsv"
for check in script_paths py_compile peer_cpu_paths generator_tiny trainer_tiny sample_tiny; do
  grep -q "^$check	ok	" "$steps" || { echo "dry-run check $check did not pass"; cat "$steps"; exit 1; }
done
# The generated tiny checkpoint is sharded (--max_shard_gb tiny) and the trainer trained on it
# (at least the 2 steps asked for: a tiny step can end before trainer_steps.sh looks again).
[[ -f "$SDPO_CHECK_DATA/tiny_ckpt/diffusion_pytorch_model.safetensors.index.json" ]] ||
  { echo "the tiny checkpoint is not sharded"; exit 1; }
n=$(grep -c . "$SDPO_CHECK_OUTDIR/dry_trainer/metrics.jsonl")
((n >= 2 && n < 1000)) || { echo "the tiny trainer wrote $n steps"; exit 1; }
# Every GPU step was listed, none run; the table ends the output.
for s in parity_ops parity_vae vae_sdpo vae_torch vae_sdpo_own parity_cogvideox_vae cogvideox_vae_sdpo wan_step trainer_full trainer_full_recompute trainer_lora_recompute_f21 \
  torch_compile torch_compile_ckpt sample_sdpo sample_torch wan_step_14b trainer_14b_lora_recompute_f21; do
  grep -q "^$s	not run (dry run)	" "$steps" || { echo "step $s not listed"; exit 1; }
done
summary="$OUT/summary.txt"
grep -q "Issue 20 targets" "$summary"
[[ $(grep -c "not run (dry run)" "$summary") -ge 14 ]] || { cat "$summary"; exit 1; }
if grep -q -E "MISSED|met$" "$summary"; then echo "a verdict without a measurement"; exit 1; fi
tail -n 1 "$TEST_TMPDIR/stdout.txt" | grep -q "passed"
echo PASS
