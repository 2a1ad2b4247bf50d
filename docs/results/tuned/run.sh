#!/usr/bin/env bash
# Issue 25's tuned study, PPO part: every learner the same budget (16 trials x 3 held-out
# seeds 10-12 x 100k steps), one environment and learner at a time, WORKERS (default 2)
# `lpdm tune` processes sharing each study. Run it from the repository root with its
# virtual environment active:  bash docs/results/tuned/run.sh [OUT]   (default ~/runs/tuned)
# Rerunning it resumes every study from its database (OUT/ENV/LEARNER/study.db).
set -u
OUT=${1:-$HOME/runs/tuned}
mkdir -p "$OUT" && cd "$OUT"
# lpdm and lpdm-guided also search where the local step sits in PPO (objection O3)
python - <<'PY'
import json
from lpdm.tuning.space import default_space
for learner in ("lpdm", "lpdm-guided"):
    space = default_space("ppo", learner) | {
        "local_update": {"type": "categorical", "choices": ["minibatch", "epoch", "rollout"]}}
    json.dump(space, open(f"space-ppo-{learner}.json", "w"), indent=1)
PY
for env in CartPole-v1 Pendulum-v1 InvertedDoublePendulum-v4 Hopper-v4 HalfCheetah-v4; do
  for learner in bp lpdm lpdm-guided frozen; do
    space=""; [ -f space-ppo-$learner.json ] && space="--space space-ppo-$learner.json"
    for worker in $(seq 1 "${WORKERS:-2}"); do
      lpdm tune --env $env --algo ppo --learner $learner --trials 16 --total-steps 100000 \
        --tune-seeds 10,11,12 $space --no-progress --out $env/$learner >> tune-$worker.log 2>&1 &
    done
    wait
  done
done
