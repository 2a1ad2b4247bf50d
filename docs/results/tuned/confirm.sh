#!/usr/bin/env bash
# Issue 25's confirmation: each learner's tuned options (studies/ENV/LEARNER/best.json) on
# seeds 0-9 at the suite's budget for ENV, one sweep per learner (their options differ),
# then one report over the four: its archive.npz is the part committed under suite/parts/.
# Usage: confirm.sh OUT ENV [ENV...]   (WORKERS, default 1; rerun to resume)
set -eu
out=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
for env in "$@"; do
  part=$(echo "${env%-v*}" | tr '[:upper:]' '[:lower:]')
  for learner in bp lpdm lpdm-guided frozen; do
    lpdm sweep --out "$out/$part/$learner" --suite paper --env "$env" --algo ppo \
      --learner "$learner" --config "$here/studies/$env/$learner/best.json" \
      --seeds 10 --population 10 --workers "${WORKERS:-1}" --no-progress
  done
  lpdm report "$out/$part"/{bp,lpdm,lpdm-guided,frozen} --out "$out/$part/report"
  echo "part $part: $out/$part/report/archive.npz -> $here/suite/parts/$part/archive.npz"
done
