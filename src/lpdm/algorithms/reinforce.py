"""REINFORCE with a mean baseline, for Discrete and Box actions, under any learner.

Each iteration collects whole episodes (``episodes_per_update``, one by default) from a
single environment, computes discounted returns-to-go ``G_t`` and takes one gradient
step of ``-(G_t - b) log π(a_t|s_t)`` (``b`` the batch mean, optionally divided by the
std). The trunk's features come from the learner, which, for the local learners, runs
its local updates over blocks of ``distance_batch`` samples with ``G_t`` as guidance.
"""

from __future__ import annotations

import numpy as np

from lpdm.algorithms.base import Algorithm, Iteration, LearnedNetwork, discounted_returns
from lpdm.config import Config
from lpdm.envs import EnvRunner
from lpdm.networks import make_policy_head


class Reinforce(Algorithm):
    def __init__(self, config: Config, runner: EnvRunner) -> None:
        obs_dim, action_space = self.spaces(runner)
        self.policy = LearnedNetwork(
            "policy", obs_dim, lambda width: make_policy_head(action_space, width), config)
        super().__init__(config, runner, [self.policy])

    def iterate(self, global_step: int, budget: int) -> Iteration:
        observations, target_obs, actions, rewards, ends = [], [], [], [], []
        iteration = Iteration(steps=0)
        finished = 0
        while finished < self.config.reinforce.episodes_per_update and iteration.steps < budget:
            step = self.runner.step(self.act(self.runner.obs, deterministic=False))
            if not step.valid[0]:
                continue  # the autoreset step after an episode: no transition
            iteration.steps += 1
            observations.append(step.obs[0])
            target_obs.append(step.target_obs[0])
            actions.append(step.actions[0])
            rewards.append(step.reward[0])
            done = bool(step.terminated[0] or step.truncated[0])
            ends.append(done)
            finished += done
            for episode in step.episodes:
                iteration.episodes.append(
                    (global_step + iteration.steps, episode.episodic_return, episode.length))
        ends[-1] = True  # a budget-cut final episode is updated on as it stands
        with self.timed_update():
            self._update(np.asarray(observations), np.asarray(target_obs), np.asarray(actions),
                         np.asarray(rewards), np.asarray(ends))
        return iteration

    def _update(self, observations: np.ndarray, target_obs: np.ndarray, actions: np.ndarray,
                rewards: np.ndarray, ends: np.ndarray) -> None:
        returns = discounted_returns(rewards, ends, self.config.gamma)
        returns_t = self.tensor(returns)
        advantages = returns_t - returns_t.mean()
        if self.config.reinforce.normalize_advantage and len(returns) > 1:
            advantages = advantages / (advantages.std() + 1e-8)
        features = self.policy.learner.features(self.tensor(observations), returns_t,
                                                self.tensor(target_obs))
        dist = self.policy.head.distribution(features)
        log_prob = self.policy.head.log_prob(dist, self.tensor(actions))
        entropy = self.policy.head.entropy(dist).mean()
        loss = -(advantages * log_prob).mean() - self.config.ent_coef * entropy
        self.rl_step(loss)
