#!/usr/bin/env bash
# Builds the torch checkpoint (.pth) libFuzzer target with Bazel (clang, ASan + UBSan, separate
# output base) and fuzzes it for N seconds (default 30) from the checked-in seed corpus.
#   io/fuzz/run_torch_pickle.sh [seconds] [extra libFuzzer flags...]
# Crashing inputs are written to $OUT_DIR/crashes (default /tmp/sdpo-fuzz-pickle/crashes).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-30}"
shift || true
out_dir="${OUT_DIR:-/tmp/sdpo-fuzz-pickle}"
output_base="${FUZZ_OUTPUT_BASE:-$HOME/.cache/sdpo-fuzz-bazel}"

# --symlink_prefix=/: no bazel-* links, which would point into this output base and make the
# normal build's `bazel build //...` fail with "infinite symlink expansion".
bazel --output_base="$output_base" build --config=fuzz --symlink_prefix=/ //io/fuzz:torch_pickle_fuzz
bin="$(bazel --output_base="$output_base" info --config=fuzz bazel-bin)/io/fuzz/torch_pickle_fuzz"

mkdir -p "$out_dir/corpus" "$out_dir/crashes"
cp -n io/fuzz/corpus_pickle/* "$out_dir/corpus/" 2>/dev/null || true
"$bin" -max_total_time="$seconds" -max_len=16384 -dict=io/fuzz/torch_pickle.dict \
  -artifact_prefix="$out_dir/crashes/" "$@" "$out_dir/corpus"
