#!/usr/bin/env bash
# Issue 25's confirmation: each learner's tuned options (studies/ENV/LEARNER/best.json) on
# seeds 0-9, one sweep per learner (their options differ), then one report over the four:
# its archive.npz (and runs.csv) is what gets committed.
# Usage: confirm.sh OUT ENV [ENV...]
#   at the suite's budget of ENV: OUT/PART/  -> commit PART/report/archive.npz as
#                                               suite/parts/PART/archive.npz
#   STEPS=1000000 confirm.sh OUT Hopper-v4   -> OUT/hopper-1m/ (the longer budget, O4)
# WORKERS (default 1) cells at once; rerun to resume.
set -eu
out=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
for env in "$@"; do
  part=$(echo "${env%-v*}" | tr '[:upper:]' '[:lower:]')
  budget=()
  if [ -n "${STEPS:-}" ]; then part="$part-$((STEPS / 1000000))m"; budget=(--total-steps "$STEPS"); fi
  for learner in bp lpdm lpdm-guided frozen; do
    lpdm sweep --out "$out/$part/$learner" --suite paper --env "$env" --algo ppo \
      --learner "$learner" --config "$here/studies/$env/$learner/best.json" "${budget[@]}" \
      --seeds 10 --population 10 --workers "${WORKERS:-1}" --no-progress
  done
  lpdm report "$out/$part"/{bp,lpdm,lpdm-guided,frozen} --out "$out/$part/report"
  echo "part $part: $out/$part/report"
done
