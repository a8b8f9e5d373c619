#!/usr/bin/env bash
# One-shot, idempotent install of every system package sdpo needs to build and test.
# Usage: tools/setup.sh   (as root, or with sudo available)
set -euo pipefail

PACKAGES=(
  bazel-bootstrap      # Bazel 4.2.3 (pulls in a JDK)
  g++ clang            # compilers (clang for the libFuzzer targets)
  libeigen3-dev        # CPU vector kernels
  libopenblas-dev      # CPU GEMM (sgemm/dgemm), linked statically
  libdnnl-dev          # CPU bf16 GEMM (oneDNN matmul on AMX / avx512_bf16), shared
  libabsl-dev          # flags, strings, status (linked statically)
  libgtest-dev         # tests
  libbenchmark-dev     # micro-benchmarks
  libopenmpi-dev openmpi-bin  # data-parallel CPU ranks
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev  # video files (io/video)
  ffmpeg               # ffprobe, for the tests that check the mp4 files we write
  libsentencepiece-dev # the T5 tokenizer (models/umt5)
  libssl-dev           # SHA-256 of the text-embedding cache (models/umt5)
)

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
