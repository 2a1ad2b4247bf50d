"""RL algorithms. Each is learner-agnostic: it never asks how its trunks are trained."""

from __future__ import annotations

from lpdm.algorithms.base import Algorithm
from lpdm.algorithms.collector import Iteration
from lpdm.algorithms.dqn import DQN
from lpdm.algorithms.ppo import PPO
from lpdm.algorithms.reinforce import Reinforce
from lpdm.config import Config
from lpdm.envs import PopulationRunner
from lpdm.networks import Generators

# The learned networks of each algorithm, in the order of its ``networks``.
NETWORK_NAMES = {"reinforce": ("policy",), "ppo": ("actor", "critic"), "dqn": ("q",)}


def make_algorithm(config: Config, runner: PopulationRunner, generators: Generators
                   ) -> Algorithm:
    """The algorithm named by ``config.algo`` for a population over ``runner``'s
    environments, member ``k`` seeded by ``generators[k]``."""
    if config.algo == "reinforce":
        return Reinforce(config, runner, generators)
    if config.algo == "ppo":
        return PPO(config, runner, generators)
    if config.algo == "dqn":
        return DQN(config, runner, generators)
    raise ValueError(f"unknown algorithm {config.algo!r}")


__all__ = ["DQN", "NETWORK_NAMES", "PPO", "Algorithm", "Iteration", "Reinforce",
           "make_algorithm"]
