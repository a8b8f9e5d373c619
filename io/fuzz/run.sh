#!/usr/bin/env bash
# Builds the safetensors libFuzzer target with Bazel (clang, ASan + UBSan, separate output base)
# and fuzzes it for N seconds (default 30) from the checked-in seed corpus.
#   io/fuzz/run.sh [seconds] [extra libFuzzer flags...]
# Crashing inputs are written to $OUT_DIR (default /tmp/sdpo-fuzz/crashes).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-30}"
shift || true
out_dir="${OUT_DIR:-/tmp/sdpo-fuzz}"
output_base="${FUZZ_OUTPUT_BASE:-$HOME/.cache/sdpo-fuzz-bazel}"

bazel --output_base="$output_base" build --config=fuzz //io/fuzz:safetensors_fuzz
bin="$(bazel --output_base="$output_base" info --config=fuzz bazel-bin)/io/fuzz/safetensors_fuzz"

mkdir -p "$out_dir/corpus" "$out_dir/crashes"
cp -n io/fuzz/corpus/* "$out_dir/corpus/" 2>/dev/null || true
"$bin" -max_total_time="$seconds" -max_len=16384 -dict=io/fuzz/safetensors.dict \
  -artifact_prefix="$out_dir/crashes/" "$@" "$out_dir/corpus"
