#!/bin/bash
# The collectives (comm_check_main.cc) on 1 process (LocalCommunicator, no MPI) and on 2 and 3
# MPI ranks: bucketed vs unbucketed all-reduce, reduce-scatter / all-gather of sizes not divisible
# by the world size, broadcast in buckets, ZeRO-1 AdamW against the unsharded AdamW.
set -u
BIN="${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/trainers/distributed/comm_check"
command -v mpirun > /dev/null 2>&1 || {
  echo "FAIL: mpirun not found (OpenMPI; tools/setup.sh installs it)" >&2
  exit 1
}
export OMPI_MCA_btl="self,vader"
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
"$BIN" || { echo "FAIL: 1 process" >&2; exit 1; }
for n in 2 3; do
  timeout 60 mpirun --allow-run-as-root --oversubscribe -np "$n" "$BIN" ||
    { echo "FAIL: $n ranks" >&2; exit 1; }
done
echo "PASS"
