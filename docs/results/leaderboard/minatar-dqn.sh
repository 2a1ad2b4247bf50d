#!/usr/bin/env bash
# Issue 26's MinAtar DQN part: Breakout-v1 and SpaceInvaders-v1, 1M steps, seeds 0-2
# (populations of 3), bp, layerwise, lpdm, dfa and frozen on the conv trunk (16 x 3x3
# convolutions, then one dense layer of 128 as in MinAtar's DQN). MinAtar's DQN settings
# (Young & Tian 2019: batch 32, replay 100k, replay start 5000, target network every 1000
# steps, learning rate 2.5e-4, epsilon 1 -> 0.1 over the first 100k steps, Huber loss,
# gamma 0.99) but one TD step every 4 environment steps instead of every step (CleanRL's
# Atari DQN ratio): on this project's 2-core machines a run then costs about 30 CPU
# minutes instead of about 1.5 hours. Adam, as for every DQN run here, instead of RMSprop.
#   bash docs/results/leaderboard/minatar-dqn.sh [OUT]    (default ~/runs/leaderboard/minatar-dqn)
# Run it from the repository root with its virtual environment active; rerunning resumes.
# Then `lpdm report OUT --out docs/results/leaderboard/minatar-dqn` (commit its archive.npz,
# runs.csv and report.md) and `lpdm leaderboard --write docs/results/leaderboard`: the page's
# "DQN on MinAtar" board reads that folder.
set -u
OUT=${1:-$HOME/runs/leaderboard/minatar-dqn}
lpdm sweep --out "$OUT" --env MinAtar/Breakout-v1,MinAtar/SpaceInvaders-v1 --algo dqn \
  --learner bp,layerwise,lpdm,dfa,frozen --seeds 3 --population 3 --total-steps 1000000 \
  --trunk conv --hidden-sizes 128 --batch-size 32 --buffer-size 100000 \
  --learning-starts 5000 --target-network-frequency 1000 --train-frequency 4 --lr 0.00025 \
  --start-e 1 --end-e 0.1 --exploration-fraction 0.1 --huber true --gamma 0.99 \
  --workers "${WORKERS:-1}" --no-progress
