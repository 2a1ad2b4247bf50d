"""REINFORCE with a mean baseline, for Discrete and Box actions, under any learner.

Each iteration collects whole episodes (``episodes_per_update``, one by default) from a
single environment per member, computes discounted returns-to-go ``G_t`` and takes one
gradient step of ``-(G_t - b) log π(a_t|s_t)`` (``b`` the batch mean, optionally divided
by the std). The trunk's features come from the learner, which, for the local learners,
runs its local updates over blocks of ``distance_batch`` samples with ``G_t`` as guidance.

In a population every member collects its own episodes; a member whose episodes are done
waits (its environment is not stepped) until every member's are, so that members update
together, each on its own data only. Batches are padded (masked) to a fixed length, the
most steps an update can hold (``episodes_per_update`` times the environment's time
limit), so that a member's arithmetic never depends on its co-members: a member computes
bit for bit what it would compute alone. (For an environment without a time limit the
padding is the longest member's batch rounded up to a power of two, and members are equal
to solo runs up to float rounding.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from lpdm.algorithms.base import (
    Algorithm,
    LearnedNetwork,
    discounted_returns,
    masked_mean,
    masked_std,
)
from lpdm.algorithms.collector import Decision, Iteration, Quota, Row, Transition
from lpdm.config import Config
from lpdm.envs import PopulationRunner
from lpdm.networks import Generators, make_policy_head


class EpisodeBatch(NamedTuple):
    """A population's episodes, members first and padded to ``T`` steps."""

    obs: Tensor  # [K, T, *obs_shape]
    target_obs: Tensor  # [K, T, *target_shape]
    actions: Tensor  # [K, T] (discrete) or [K, T, A]
    returns: Tensor  # [K, T] discounted returns-to-go G_t
    valid: Tensor  # [K, T] bool: False on padding


class Reinforce(Algorithm):
    def __init__(self, config: Config, runner: PopulationRunner, generators: Generators) -> None:
        obs_dim, action_space = self.spaces(runner)
        self.policy = LearnedNetwork(
            "policy", obs_dim, lambda width, g: make_policy_head(action_space, width, g),
            config, generators)
        super().__init__(config, runner, [self.policy], generators)
        limit = gym.spec(config.env).max_episode_steps if config.env in gym.registry else None
        self.batch_length = limit * config.reinforce.episodes_per_update if limit else None

    def iterate(self, global_steps: Sequence[int], budgets: Sequence[int]) -> list[Iteration]:
        trajectories: list[list[Transition]] = [[] for _ in range(self.members)]

        def act(obs: np.ndarray, active: np.ndarray, steps: list[int]) -> Decision:
            return Decision(self.act(obs, deterministic=False, active=active))

        def record(row: Row) -> None:
            for k, transition in row.transitions():
                trajectories[k].append(transition)

        stop = Quota(budgets, self.config.reinforce.episodes_per_update)
        iterations = self.collector.collect(global_steps, act, stop, record)
        with self.timed_update():
            self._update(trajectories)
        return iterations

    def _update(self, trajectories: list[list[Transition]]) -> None:
        """One RL step per member on its transitions, padded to ``batch_length``."""
        batch = self.episode_batch(trajectories)
        if batch is not None:
            self.learn(batch)

    def episode_batch(self, trajectories: list[list[Transition]]) -> EpisodeBatch | None:
        """Each member's transitions with their returns-to-go, padded to the most steps an
        update can hold (else the longest member's, rounded up to a power of two); None
        when no member has any."""
        members = len(trajectories)
        longest = max(len(t) for t in trajectories)
        if longest == 0:
            return None
        length = max(self.batch_length or 1 << (longest - 1).bit_length(), longest)
        example = next(t for t in trajectories if t)[0]
        obs = np.zeros((members, length, *np.shape(example.obs)), dtype=np.float32)
        target_obs = np.zeros((members, length, *np.shape(example.target_obs)), dtype=np.float32)
        actions = np.zeros((members, length, *np.shape(example.action)), dtype=np.float32)
        returns = np.zeros((members, length))
        valid = np.zeros((members, length), dtype=bool)
        for k, transitions in enumerate(trajectories):
            if not transitions:
                continue
            n = len(transitions)
            obs[k, :n] = np.asarray([t.obs for t in transitions])
            target_obs[k, :n] = np.asarray([t.target_obs for t in transitions])
            actions[k, :n] = np.asarray([t.action for t in transitions])
            ends = np.asarray([t.ended for t in transitions])
            ends[-1] = True  # a budget-cut final episode is updated on as it stands
            returns[k, :n] = discounted_returns(np.asarray([t.reward for t in transitions]),
                                                ends, self.config.gamma)
            valid[k, :n] = True
        return EpisodeBatch(self.tensor(obs), self.tensor(target_obs), self.tensor(actions),
                            self.tensor(returns), torch.as_tensor(valid, device=self.device))

    def learn(self, batch: EpisodeBatch) -> None:
        """One RL step of every member with a valid row on its padded ``batch``."""
        returns, valid = batch.returns, batch.valid
        advantages = returns - masked_mean(returns, valid).unsqueeze(1)
        if self.config.reinforce.normalize_advantage:
            scaled = advantages / (masked_std(returns, valid).unsqueeze(1) + 1e-8)
            advantages = torch.where(valid.sum(1, keepdim=True) > 1, scaled, advantages)
        features = self.policy.learner.features(batch.obs, returns, batch.target_obs, valid)
        ent_coef = self.config.reinforce.ent_coef

        def policy_loss(head: nn.Module, features: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            dist = head.distribution(features)
            log_prob = head.log_prob(dist, batch.actions)
            entropy = masked_mean(head.entropy(dist), valid)
            return -masked_mean(advantages * log_prob, valid) - ent_coef * entropy, {}

        loss, _ = self.policy.rl_loss(features, policy_loss)
        self.rl_step(loss, valid.any(1).cpu())
