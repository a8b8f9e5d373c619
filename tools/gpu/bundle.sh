#!/usr/bin/env bash
# Builds the CUDA tests and micro-benchmarks (one binary, cuda_check, which also writes the
# full-scale random checkpoint and data: `cuda_check make_data`), the trainer (sdpo) and the
# sampler (sample) with -c opt into gpu_bundle/cuda/ (git-ignored),
# self-contained except for the CUDA libraries: Abseil and GoogleTest are linked statically and
# every sdpo library is linked into the binaries (--dynamic_mode=off). The GPU machine provides
# libcudart / libcublasLt / libcublas (tools/gpu/check.sh finds them there and sets
# LD_LIBRARY_PATH). Run here, from anywhere in the repository:
#   bash tools/gpu/bundle.sh
# then carry gpu_bundle/cuda.tgz to the GPU machine and run `bash tools/gpu/check.sh` there (it
# unpacks the archive).
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGETS=(//tools/gpu:cuda_check //trainers:sdpo //trainers:sample)
DEST=gpu_bundle/cuda

if [[ ! -x "${CUDA_PATH:-/usr/local/cuda}/bin/nvcc" ]]; then
  echo "bundle.sh: no nvcc under ${CUDA_PATH:-/usr/local/cuda}: the CUDA backend would not be built" >&2
  exit 1
fi

echo "bundle.sh: bazel build -c opt ${TARGETS[*]}"
bazel build -c opt --dynamic_mode=off "${TARGETS[@]}"

mkdir -p "$DEST"
rm -rf "$DEST"/cuda_check "$DEST"/cuda_parity_test "$DEST"/cuda_bench "$DEST"/sdpo "$DEST"/sample "$DEST"/lib
OUT_BIN=$(bazel info -c opt bazel-bin)
for b in cuda_check sdpo sample; do
  src="$OUT_BIN/tools/gpu/$b"
  [[ $b != cuda_check ]] && src="$OUT_BIN/trainers/$b"
  cp -f "$src" "$DEST"/
  chmod u+w "$DEST/$b"
  strip --strip-all "$DEST/$b" 2>/dev/null || true
done
# The trainer links OpenMPI (used only under mpirun); the GPU machine has no OpenMPI, so its
# shared libraries travel in lib/ (check.sh puts that folder last on LD_LIBRARY_PATH).
mkdir -p "$DEST/lib"
ldd "$DEST/sdpo" "$DEST/sample" | awk '$3 ~ /^\// {print $3}' |
  grep -E '/lib(mpi|open-rte|open-pal|hwloc|event|udev)[^/]*$' | while read -r lib; do
    cp -fL "$lib" "$DEST/lib/"
  done

# The sampler links FFmpeg (io/video: mp4 files), whose shared libraries pull in
# ~130 codec libraries (65 MB compressed: over what the device tool carries). The GPU check
# never reads or writes a video, so stubs/ holds stand-ins with FFmpeg's sonames and symbol
# versions, each function printing its name and aborting if ever called; check.sh puts stubs/
# on LD_LIBRARY_PATH only when the machine has no FFmpeg of these versions.
rm -rf "$DEST/stubs"
mkdir -p "$DEST/stubs"
objdump -T "$DEST/sdpo" "$DEST/sample" |
  awk 'NF >= 2 {v = $(NF-1); gsub(/[()]/, "", v); if (v ~ /^LIB(AV|SW)/) print v, $NF}' |
  sort -u > "$DEST/stubs/symbols.txt"
for soname in $(objdump -p "$DEST/sdpo" "$DEST/sample" | awk '/NEEDED/ && $2 ~ /^lib(av|sw)/ {print $2}' | sort -u); do
  # libavformat.so.59: version node LIBAVFORMAT_59
  name=${soname%%.so.*}
  version="$(tr '[:lower:]' '[:upper:]' <<< "$name")_${soname##*.so.}"
  syms=$(awk -v v="$version" '$1 == v {print $2}' "$DEST/stubs/symbols.txt")
  {
    echo '#include <stdio.h>'
    echo '#include <stdlib.h>'
    for f in $syms; do
      echo "void $f(void) { fprintf(stderr, \"FFmpeg stub (gpu bundle): $f called; install FFmpeg ($soname)\\n\"); abort(); }"
    done
  } > "$DEST/stubs/$name.c"
  echo "$version { ${syms:+global: $(printf '%s; ' $syms)}local: *; };" > "$DEST/stubs/$name.map"
  gcc -shared -fPIC -O1 -o "$DEST/stubs/$soname" "$DEST/stubs/$name.c" \
    -Wl,-soname,"$soname" -Wl,--version-script="$DEST/stubs/$name.map"
  rm -f "$DEST/stubs/$name.c" "$DEST/stubs/$name.map"
done
for b in sdpo sample; do
  if LD_LIBRARY_PATH="$DEST/stubs" ldd "$DEST/$b" | grep -E 'lib(av|sw)' | grep -v -q "$DEST/stubs"; then
    echo "bundle.sh: $b does not resolve FFmpeg to the stubs" >&2
    exit 1
  fi
done

{
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "nvcc: $("${CUDA_PATH:-/usr/local/cuda}/bin/nvcc" --version | tail -1)"
  for b in cuda_check sdpo sample; do
    echo "$b: $(du -h "$DEST/$b" | cut -f1), needs: $(objdump -p "$DEST/$b" | awk '/NEEDED/ {printf "%s ", $2}')"
  done
} > "$DEST/MANIFEST"
cat "$DEST/MANIFEST"
# Sanity: the binaries must carry the CUDA backend (not the CPU-only fallback).
# (objdump's output captured first: `grep -q` closing the pipe early fails it under pipefail.)
NEEDED=$(objdump -p "$DEST/cuda_check" | awk '/NEEDED/ {print $2}')
if ! grep -q 'libcudart' <<< "$NEEDED"; then
  echo "bundle.sh: cuda_check does not link libcudart: built without CUDA?" >&2
  exit 1
fi
# What travels to the GPU machine (the device tool carries at most 64 MiB): one archive, which
# check.sh unpacks there.
tar czf gpu_bundle/cuda.tgz -C gpu_bundle cuda
echo "bundle.sh: ready in $DEST ($(du -sh "$DEST" | cut -f1)); carry gpu_bundle/cuda.tgz ($(du -h gpu_bundle/cuda.tgz | cut -f1))"
