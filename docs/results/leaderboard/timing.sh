#!/usr/bin/env bash
# The leaderboard's costs (issue 26): every learner in one sweep per algorithm, in turn, at
# the boards' settings and population size (5 seeds in one process), a few iterations each,
# so their times per iteration compare. Run it on an otherwise idle core: the other core may
# be busy, but the load must not change while it runs.
# Usage: timing.sh OUT   (rerun to resume; then commit OUT/ALGO/report/ minus index.html as
#        docs/results/leaderboard/timing/ALGO/ and run lpdm leaderboard --write)
set -eu
out=$1
learners=bp,lpdm,lpdm-guided,dfa,layerwise,lpdm-metric,frozen
time_algo() {  # ALGO [sweep options]
  lpdm sweep --out "$out/$1" --algo "$1" --learner "$learners" --seeds 5 --population 5 \
    --workers 1 --no-progress "${@:2}"
  lpdm report "$out/$1" --out "$out/$1/report"
}
# PPO at the suite's settings: 40 iterations of 512 steps on CartPole, 10 of 2048 on Hopper
time_algo ppo --suite paper --env CartPole-v1,Hopper-v4 --total-steps 20480
# DQN at docs/results/dqn's settings but learning_starts (10k there): 2000 TD steps (one per
# 10 environment steps) after 1000 steps of play, so the few iterations without a TD step
# weigh little in the time per iteration
time_algo dqn --env CartPole-v1,LunarLander-v3 --learning-starts 1000 --total-steps 21000
