#!/usr/bin/env bash
# Issue 26's equal-budget tuning of the new learners under PPO: dfa, layerwise and
# lpdm-metric each get exactly the budget of the tuned study's bp (docs/results/tuned/run.sh:
# 16 trials x 3 held-out seeds 10-12 x 100k steps, each learner's own search space from its
# spec), on the tuned study's environments, WORKERS (default 2) `lpdm tune` processes
# sharing each study. bp's studies are the tuned study's own (same environments, seeds,
# budget and sampler), so they are not run again here. Then each learner's best.json is
# confirmed on seeds 0-4 at the suite's budget:
#   bash docs/results/leaderboard/tune.sh [OUT]          (default ~/runs/leaderboard-tuned)
#   CONFIRM=1 bash docs/results/leaderboard/tune.sh [OUT] (the confirmation sweeps)
# The layout is the tuned study's (docs/results/tuned/): each environment's confirmation
# joins the leaderboard's "PPO after equal tuning" board (beside issue 25's tuned bp, lpdm,
# lpdm-guided and frozen on seeds 0-9) as
#   lpdm report OUT/PART/{dfa,layerwise,lpdm-metric} --out T/suite/parts/PART
# (T = docs/results/leaderboard/tuned; commit its archive.npz, runs.csv and report.md), each
# study's tune.json, trials.csv, best.json, report.md and figures go to T/studies/ENV/LEARNER/,
# and `lpdm tuned T/studies --learners dfa,layerwise,lpdm-metric --envs E,... --write
# T/README.md` (E: the five) lists them with the confirmations.
# ENVS (default the five) and LEARNERS (default the three) limit it, e.g. ENVS=CartPole-v1.
# A study already committed under T/studies is not run again, and its confirmation reads the
# committed best.json (so a new machine needs only the repository).
# Run it from the repository root with its virtual environment active; rerunning resumes.
set -u
OUT=${1:-$HOME/runs/leaderboard-tuned}
committed=$(pwd)/docs/results/leaderboard/tuned/studies
mkdir -p "$OUT" && cd "$OUT"
for env in ${ENVS:-CartPole-v1 Pendulum-v1 InvertedDoublePendulum-v4 Hopper-v4 HalfCheetah-v4}; do
  for learner in ${LEARNERS:-dfa layerwise lpdm-metric}; do
    study=$env/$learner
    [ -f "$committed/$study/best.json" ] && study=$committed/$study
    if [ -n "${CONFIRM:-}" ]; then
      part=$(echo "${env%-v*}" | tr '[:upper:]' '[:lower:]')
      lpdm sweep --out "$part/$learner" --suite paper --env "$env" --algo ppo \
        --learner "$learner" --config "$study/best.json" --seeds 5 --population 5 \
        --workers 1 --no-progress >> confirm.log 2>&1
      continue
    fi
    if [ "$study" != "$env/$learner" ]; then
      echo "$env $learner: committed ($study), not tuned again"
      continue
    fi
    for worker in $(seq 1 "${WORKERS:-2}"); do
      lpdm tune --env $env --algo ppo --learner $learner --trials 16 --total-steps 100000 \
        --tune-seeds 10,11,12 --no-progress --out $env/$learner >> tune-$worker.log 2>&1 &
    done
    wait
  done
done
