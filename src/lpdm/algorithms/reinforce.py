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

import gymnasium as gym
import numpy as np
import torch

from lpdm.algorithms.base import (
    Algorithm,
    Iteration,
    LearnedNetwork,
    discounted_returns,
    masked_mean,
    masked_std,
)
from lpdm.config import Config
from lpdm.envs import PopulationRunner
from lpdm.networks import Generators, make_policy_head


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
        members = self.members
        episodes = self.config.reinforce.episodes_per_update
        trajectories: list[list[tuple]] = [[] for _ in range(members)]
        iterations = [Iteration() for _ in range(members)]
        finished = np.zeros(members, dtype=int)
        while True:
            active = np.array([finished[k] < episodes and iterations[k].steps < budgets[k]
                               and k not in self.failures for k in range(members)])
            if not active.any():
                break
            obs, target_obs = self.runner.obs, self.runner.target_obs
            actions = self.act(obs, deterministic=False, active=active)
            steps, failures = self.runner.step(actions, active)
            for k, why in failures.items():
                self.failures[k] = f"{why} at step {global_steps[k] + iterations[k].steps + 1}"
            for k, step in enumerate(steps):
                if step is None or not step.valid[0]:
                    continue  # waiting, failed, or the autoreset step after an episode
                iterations[k].steps += 1
                done = bool(step.terminated[0] or step.truncated[0])
                trajectories[k].append((step.obs[0], target_obs[k][0], step.actions[0],
                                        step.reward[0], done))
                finished[k] += done
                for episode in step.episodes:
                    iterations[k].episodes.append((global_steps[k] + iterations[k].steps,
                                                   episode.episodic_return, episode.length))
        with self.timed_update():
            self._update(trajectories)
        return iterations

    def _update(self, trajectories: list[list[tuple]]) -> None:
        """One RL step per member on its transitions ``(obs, target obs, action, reward,
        episode end)``, padded to the longest member's."""
        members = len(trajectories)
        longest = max(len(t) for t in trajectories)
        if longest == 0:
            return
        length = max(self.batch_length or 1 << (longest - 1).bit_length(), longest)
        example = next(t for t in trajectories if t)[0]
        obs = np.zeros((members, length, *np.shape(example[0])), dtype=np.float32)
        target_obs = np.zeros((members, length, *np.shape(example[1])), dtype=np.float32)
        actions = np.zeros((members, length, *np.shape(example[2])), dtype=np.float32)
        returns = np.zeros((members, length))
        valid = np.zeros((members, length), dtype=bool)
        for k, transitions in enumerate(trajectories):
            if not transitions:
                continue
            n = len(transitions)
            obs[k, :n], target_obs[k, :n], actions[k, :n] = (
                np.asarray([t[i] for t in transitions]) for i in range(3))
            ends = np.asarray([t[4] for t in transitions])
            ends[-1] = True  # a budget-cut final episode is updated on as it stands
            returns[k, :n] = discounted_returns(np.asarray([t[3] for t in transitions]), ends,
                                                self.config.gamma)
            valid[k, :n] = True
        self.learn(self.tensor(obs), self.tensor(target_obs), self.tensor(actions),
                   self.tensor(returns), torch.as_tensor(valid, device=self.device))

    def learn(self, obs: torch.Tensor, target_obs: torch.Tensor, actions: torch.Tensor,
              returns: torch.Tensor, valid: torch.Tensor) -> None:
        """The update on a padded batch: ``obs`` ``[K, T, obs_dim]``, ``returns`` and
        ``valid`` ``[K, T]``."""
        advantages = returns - masked_mean(returns, valid).unsqueeze(1)
        if self.config.reinforce.normalize_advantage:
            scaled = advantages / (masked_std(returns, valid).unsqueeze(1) + 1e-8)
            advantages = torch.where(valid.sum(1, keepdim=True) > 1, scaled, advantages)
        features = self.policy.learner.features(obs, returns, target_obs, valid)
        dist = self.policy.head.distribution(features)
        log_prob = self.policy.head.log_prob(dist, actions)
        entropy = masked_mean(self.policy.head.entropy(dist), valid)
        loss = -masked_mean(advantages * log_prob, valid) - self.config.reinforce.ent_coef * entropy
        self.rl_step(loss, valid.any(1).cpu())
