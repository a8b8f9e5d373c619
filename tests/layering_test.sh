#!/usr/bin/env bash
# Checks every #include of the engine's packages against the layer order
#   tensor <- (io, autograd) <- nn <- models <- sdpo <- trainers <- engine
# (the same order the packages' BUILD visibility enforces, see layers/BUILD.bazel).
# Usage: layering_test.sh [ROOT]. Under Bazel the root is the source tree, found from the real
# path of the WORKSPACE file in the runfiles (runfiles hold only declared files).
set -euo pipefail
if [[ $# -ge 1 ]]; then
  root=$1
else
  root=$(dirname "$(readlink -f "${TEST_SRCDIR}/${TEST_WORKSPACE}/WORKSPACE")")
fi
cd "$root"

# The packages each layer may include, besides itself.
declare -A allowed=(
  [tensor]=""
  [io]="tensor"
  [autograd]="tensor"
  [nn]="tensor io autograd"
  [models]="tensor io autograd nn"
  [sdpo]="tensor io autograd nn models"
  [trainers]="tensor io autograd nn models sdpo"
  [engine]="tensor io autograd nn models sdpo trainers"
)

violations=0
checked=0
for layer in "${!allowed[@]}"; do
  [[ -d $layer ]] || { echo "missing package $layer/"; exit 1; }
  while IFS= read -r -d '' file; do
    while IFS= read -r inc; do
      top=${inc%%/*}
      [[ -n ${allowed[$top]+x} ]] || continue  # third-party or system header
      checked=$((checked + 1))
      if [[ $top != "$layer" && " ${allowed[$layer]} " != *" $top "* ]]; then
        echo "layering violation: $file includes \"$inc\" ($layer/ may not depend on $top/)"
        violations=$((violations + 1))
      fi
    done < <(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]+"([^"]+)".*/\1/p' "$file")
  done < <(find -L "$layer" \( -name '*.h' -o -name '*.cc' -o -name '*.cu' -o -name '*.cuh' \) -print0)
done

echo "checked $checked project includes, $violations against the layer order"
[[ $checked -gt 100 ]] || { echo "too few includes found: wrong root?"; exit 1; }
[[ $violations -eq 0 ]]
