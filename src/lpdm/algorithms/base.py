"""What every algorithm shares: learned networks, the RL optimizer step, state, diagnostics.

An algorithm owns one or more :class:`LearnedNetwork` (trunk + head + learner). It
trains them through :meth:`Algorithm.rl_step`, whose optimizer holds the heads'
parameters and whatever trunk parameters the learner exposes to the RL loss.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from lpdm.config import Config
from lpdm.envs import EnvRunner
from lpdm.learners import Learner, make_learner
from lpdm.networks import Trunk

DIAGNOSTIC_FIELDS = ("local_loss", "distance_corr", "saturation", "distance_entropy")


def trunk_sizes(config: Config) -> tuple[int, ...]:
    """The hidden widths of a trunk: none for the ``linear`` control, else ``--hidden-sizes``."""
    return () if config.learner == "linear" else config.network.hidden_sizes


class LearnedNetwork(nn.Module):
    """A trunk, the head on its features and the learner that trains the trunk.

    ``make_head(width)`` builds the head for the trunk's output width.
    """

    def __init__(self, name: str, in_dim: int, make_head: Callable[[int], nn.Module],
                 config: Config) -> None:
        super().__init__()
        self.name = name
        sizes = trunk_sizes(config)
        # the head first: initialisations draw from the seeded RNG in this order
        self.head = make_head(sizes[-1] if sizes else in_dim)
        self.trunk = Trunk(in_dim, sizes)
        self.learner: Learner = make_learner(config.learner, self.trunk, config.local,
                                             config.network.hidden_lr)

    def param_groups(self, lr: float, hidden_lr: float) -> list[dict]:
        groups = [{"params": list(self.head.parameters()), "lr": lr}]
        if trunk_params := self.learner.rl_parameters():
            groups.append({"params": trunk_params, "lr": hidden_lr})
        return groups

    def diagnostic_names(self) -> list[str]:
        return [f"{self.name}_l{i + 1}_{field}"
                for i in range(len(self.trunk.layers)) for field in DIAGNOSTIC_FIELDS]

    def diagnostics(self) -> dict[str, float]:
        values = {}
        for i, layer in enumerate(self.learner.diagnostics):
            for field_name in DIAGNOSTIC_FIELDS:
                values[f"{self.name}_l{i + 1}_{field_name}"] = getattr(layer, field_name)
        return values


@dataclass
class Iteration:
    """What one collect-and-update iteration did."""

    steps: int  # valid environment steps collected
    episodes: list[tuple[int, float, int]] = field(default_factory=list)
    # (global step at which the episode ended, return, length)
    stats: dict[str, float] = field(default_factory=dict)  # losses etc. of the update


class Algorithm(ABC):
    """A learner-agnostic RL algorithm over an :class:`EnvRunner`.

    Subclasses set ``self.policy``, the network whose head chooses actions.
    """

    policy: LearnedNetwork

    def __init__(self, config: Config, runner: EnvRunner, networks: list[LearnedNetwork]) -> None:
        self.config = config
        self.runner = runner
        self.device = torch.device(config.run.device)
        self.networks = nn.ModuleList(networks).to(self.device)
        groups = [g for n in networks for g in n.param_groups(config.network.lr,
                                                                config.network.hidden_lr)]
        for group in groups:
            group["base_lr"] = group["lr"]
        self.optimizer = torch.optim.Adam(groups, eps=1e-5)
        self.update_seconds = 0.0
        self.updates = 0

    @staticmethod
    def spaces(runner: EnvRunner) -> tuple[int, gym.Space]:
        return int(np.prod(runner.envs.single_observation_space.shape)), \
            runner.envs.single_action_space

    @abstractmethod
    def iterate(self, global_step: int, budget: int) -> Iteration:
        """Collect at most ``budget`` valid steps, then update; ``global_step`` before it."""

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions ``[E, ...]`` of ``self.policy`` for observations ``[E, obs_dim]``.

        Deterministic: the argmax or the mean action; else a sample. No learning.
        """
        features = self.policy.trunk(self.tensor(obs))
        head = self.policy.head
        actions = head.deterministic(features) if deterministic else \
            head.distribution(features).sample()
        return actions.cpu().numpy()

    def tensor(self, array: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(array), dtype=torch.float32, device=self.device)

    def rl_step(self, loss: Tensor) -> None:
        """One optimizer step of the RL loss (heads, plus the trunk under ``bp``)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm and self.config.max_grad_norm > 0:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.optimizer.step()

    def set_lr_fraction(self, fraction: float) -> None:
        """Scale every learning rate (RL optimizer and local optimizers) by ``fraction``."""
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * fraction
        for network in self.networks:
            network.learner.set_lr_scale(fraction)

    def timed_update(self) -> _UpdateTimer:
        """Context of one update phase: timed, and the learners report diagnostics once."""
        for network in self.networks:
            network.learner.request_diagnostics()
        return _UpdateTimer(self)

    def diagnostic_names(self) -> list[str]:
        if not self.config.local.diagnostics:
            return []
        return [name for n in self.networks for name in n.diagnostic_names()]

    def diagnostics(self) -> dict[str, float]:
        if not self.config.local.diagnostics:
            return {}
        values: dict[str, float] = {}
        for network in self.networks:
            values |= network.diagnostics()
        return values

    def state_dict(self) -> dict:
        return {
            "networks": self.networks.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "learners": [n.learner.state_dict() for n in self.networks],
            "update_seconds": self.update_seconds,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.networks.load_state_dict(state["networks"])
        self.optimizer.load_state_dict(state["optimizer"])
        for network, saved in zip(self.networks, state["learners"], strict=True):
            network.learner.load_state_dict(saved)
        self.update_seconds = float(state["update_seconds"])
        self.updates = int(state["updates"])


class _UpdateTimer:
    """Context manager adding the wall time of an update to ``algorithm.update_seconds``."""

    def __init__(self, algorithm: Algorithm) -> None:
        self.algorithm = algorithm

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.algorithm.update_seconds += time.perf_counter() - self.start
        self.algorithm.updates += 1


def discounted_returns(rewards: np.ndarray, episode_ends: np.ndarray, gamma: float) -> np.ndarray:
    """Returns-to-go ``[T]``; ``episode_ends[t]`` True where an episode (or the batch) stops."""
    returns = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if episode_ends[t]:
            running = 0.0
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def anneal_fraction(global_step: int, total_steps: int) -> float:
    """Linear learning-rate annealing: 1 at the start, approaching 0 at ``total_steps``."""
    return max(1.0 - global_step / total_steps, 0.0) if total_steps > 0 else 1.0
