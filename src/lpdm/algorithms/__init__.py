"""RL algorithms. Each is learner-agnostic: it never asks how its trunks are trained."""

from __future__ import annotations

from lpdm.algorithms.base import Algorithm, Iteration
from lpdm.algorithms.ppo import PPO
from lpdm.algorithms.reinforce import Reinforce
from lpdm.config import Config
from lpdm.envs import EnvRunner


def make_algorithm(config: Config, runner: EnvRunner) -> Algorithm:
    """The algorithm named by ``config.algo`` over ``runner``'s environments."""
    if config.algo == "reinforce":
        return Reinforce(config, runner)
    if config.algo == "ppo":
        return PPO(config, runner)
    raise ValueError(f"unknown algorithm {config.algo!r}")


__all__ = ["PPO", "Algorithm", "Iteration", "Reinforce", "make_algorithm"]
