#!/usr/bin/env bash
# Issue 25's confirmation: each learner's tuned options (studies/ENV/LEARNER/best.json) on
# seeds 0-9 (SEEDS), one sweep per learner (their options differ), then one report over the four:
# its archive.npz (and runs.csv) is what gets committed.
# Usage: confirm.sh OUT ENV [ENV...]
#   at the suite's budget of ENV: OUT/PART/  -> commit PART/report/archive.npz as
#                                               suite/parts/PART/archive.npz
#   STEPS=1000000 SEEDS=5 confirm.sh OUT Hopper-v4   -> OUT/hopper-1m/ (the longer budget,
#                     O4, on seeds 0-4) -> commit as long/parts/hopper-1m/archive.npz, kept
#                     apart so that the suite-budget pages do not count Hopper-v4 twice
# SEEDS (default 10) seeds 0..SEEDS-1; LEARNERS (default the four) which sweeps to run, e.g.
# one list per core, then once more with all four to write the report; WORKERS (default 1)
# cells at once; rerun to resume.
set -eu
out=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
for env in "$@"; do
  part=$(echo "${env%-v*}" | tr '[:upper:]' '[:lower:]')
  budget=()
  if [ -n "${STEPS:-}" ]; then part="$part-$((STEPS / 1000000))m"; budget=(--total-steps "$STEPS"); fi
  for learner in ${LEARNERS:-bp lpdm lpdm-guided frozen}; do
    lpdm sweep --out "$out/$part/$learner" --suite paper --env "$env" --algo ppo \
      --learner "$learner" --config "$here/studies/$env/$learner/best.json" "${budget[@]}" \
      --seeds "${SEEDS:-10}" --population "${SEEDS:-10}" --workers "${WORKERS:-1}" --no-progress
  done
  [ -n "${LEARNERS:-}" ] && continue
  lpdm report "$out/$part"/{bp,lpdm,lpdm-guided,frozen} --out "$out/$part/report"
  echo "part $part: $out/$part/report"
done
