"""PPO (clipped surrogate, GAE) with separate actor and critic trunks, under any learner.

Follows CleanRL's ``ppo.py`` / ``ppo_continuous_action.py``: clipped policy surrogate,
GAE(λ), optionally clipped value loss, entropy bonus, per-minibatch advantage
normalisation, linear learning-rate annealing, gradient-norm clipping and an optional
target-KL early stop. The actor and the critic each have their own trunk and a learner
of the same kind; under the local learners both trunks learn from every minibatch's
observations, guided (``lpdm-guided``) by the returns or the advantages.

Vector environments autoreset on the next step. The dummy reset transitions stay in the
batch as padding, masked out of every loss, mean and distance (so that all members of a
population have batches of one size), and a time-limit truncation is bootstrapped with
the critic's value of the true final observation (which next-step autoreset returns with
the truncation). Each member anneals its learning rates by its own step count, draws its
own minibatch permutations and normalises its own advantages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from lpdm.algorithms.base import (
    Algorithm,
    LearnedNetwork,
    anneal_fraction,
    masked_mean,
    masked_std,
)
from lpdm.algorithms.collector import Decision, Horizon, Iteration, Row
from lpdm.config import Config
from lpdm.envs import PopulationRunner
from lpdm.networks import Generators, ValueHead, make_policy_head, member_permutations


def generalized_advantages(
    rewards: np.ndarray,
    values: np.ndarray,
    next_value: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE over a rollout ``[T, ...]``; returns ``(advantages, returns)``, both ``[T, ...]``.

    ``values[t]`` is ``V(obs_t)`` and the value of the observation after step ``t`` is
    ``values[t + 1]`` (``next_value`` after the last step). After a termination or a
    truncation that next observation is the episode's true final observation (next-step
    autoreset), so a truncation bootstraps from it and a termination does not; either way
    the advantage recursion stops there. The dummy reset step that follows carries no
    transition and must be masked out by the caller. A member whose rollout stops early
    (its budget) is marked truncated at its last step.
    """
    steps = rewards.shape[0]
    advantages = np.zeros_like(rewards, dtype=np.float64)
    last = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in range(steps - 1, -1, -1):
        following = next_value if t == steps - 1 else values[t + 1]
        delta = rewards[t] + gamma * (1.0 - terminated[t]) * following - values[t]
        continues = 1.0 - (terminated[t] | truncated[t])
        last = delta + gamma * gae_lambda * continues * last
        advantages[t] = last
    return advantages, advantages + values


class Rollout(NamedTuple):
    """A population's rollout, members first: ``N = T * E`` samples per member (``T`` rows
    of ``E`` environments; a minibatch has ``M`` instead of ``N``)."""

    obs: Tensor  # [K, N, *obs_shape]
    target_obs: Tensor  # [K, N, *target_shape]
    actions: Tensor  # [K, N] (discrete) or [K, N, A]
    log_probs: Tensor  # [K, N] of the actions when sampled
    values: Tensor  # [K, N] the critic's V(obs) when sampled
    advantages: Tensor  # [K, N] GAE(λ)
    returns: Tensor  # [K, N] advantages + values
    valid: Tensor  # [K, N] bool: False on padding and autoreset dummies

    def rows(self, index: Tensor) -> Rollout:
        """Rows ``index`` ``[K, M]`` of each member's samples -> ``[K, M, ...]``."""
        return Rollout(*(_rows(x, index) for x in self))


class _RolloutRecorder:
    """Keeps the rows of a rollout of ``rows`` rows, ``[T, K, E, ...]``; member ``k``'s
    rollout is cut (marked truncated) at row ``horizons[k] - 1``."""

    def __init__(self, rows: int, members: int, num_envs: int, horizons: np.ndarray) -> None:
        shape = (rows, members, num_envs)
        self.horizons = horizons
        self.rewards = np.zeros(shape)
        self.terminated, self.truncated, self.valid = (np.zeros(shape, dtype=bool)
                                                       for _ in range(3))
        self.obs: list[np.ndarray] = []
        self.target_obs: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.log_probs: list[np.ndarray] = []
        self.values: list[np.ndarray] = []

    def record(self, row: Row) -> None:
        t = row.index
        log_prob, value = row.decision.extras
        self.obs.append(row.obs)
        self.target_obs.append(row.target_obs)
        self.actions.append(row.decision.actions)
        self.log_probs.append(log_prob)
        self.values.append(value)
        for k, step in enumerate(row.steps):
            if step is None:
                continue
            self.rewards[t, k], self.terminated[t, k], self.valid[t, k] = step.reward, \
                step.terminated, step.valid
            self.truncated[t, k] = step.truncated | (t == self.horizons[k] - 1)


class PPO(Algorithm):
    def __init__(self, config: Config, runner: PopulationRunner, generators: Generators) -> None:
        obs_dim, action_space = self.spaces(runner)
        self.policy = LearnedNetwork(
            "actor", obs_dim, lambda width, g: make_policy_head(action_space, width, g), config,
            generators)
        self.critic = LearnedNetwork("critic", obs_dim, ValueHead, config, generators,
                                     config.ppo.critic_learner)
        super().__init__(config, runner, [self.policy, self.critic], generators)

    @torch.no_grad()
    def _policy_step(self, obs: np.ndarray, active: np.ndarray | None = None) -> Decision:
        """Sampled actions (by the ``active`` members) for ``obs`` ``[K, E, ...]``, with
        their log-probabilities and the values of ``obs`` ``[K, E]`` as extras."""
        obs_t = self.tensor(obs)
        head = self.policy.head
        dist = head.distribution(self.policy.trunk(obs_t))
        actions = head.sample(dist, self.generators, active)
        log_prob = head.log_prob(dist, actions)
        value = self.critic.head(self.critic.trunk(obs_t))
        return Decision(actions.cpu().numpy(), (log_prob.cpu().numpy(), value.cpu().numpy()))

    def iterate(self, global_steps: Sequence[int], budgets: Sequence[int]) -> list[Iteration]:
        c, ppo = self.config, self.config.ppo
        if ppo.anneal_lr:
            self.set_lr_fraction([anneal_fraction(g, c.total_steps) for g in global_steps])
        horizons = np.minimum(ppo.num_steps, -(-np.asarray(budgets) // self.runner.num_envs))
        # always num_steps rows (a member whose budget ends sooner pads its rollout), so
        # that a member's arithmetic never depends on its co-members' budgets
        recorder = _RolloutRecorder(ppo.num_steps, self.members, self.runner.num_envs, horizons)
        iterations = self.collector.collect(
            global_steps, lambda obs, active, steps: self._policy_step(obs, active),
            Horizon(ppo.num_steps, horizons), recorder.record)
        _, (_, next_value) = self._policy_step(self.runner.obs,
                                               np.zeros(self.members, dtype=bool))
        batch = self._rollout(recorder, next_value)
        with self.timed_update():
            stats = self._update(batch)
        for k, iteration in enumerate(iterations):
            iteration.stats = {key: float(value[k]) for key, value in stats.items()}
        return iterations

    def _rollout(self, recorder: _RolloutRecorder, next_value: np.ndarray) -> Rollout:
        """The recorded rows, members first, with their GAE advantages and returns;
        ``next_value`` ``[K, E]``: the values of the observations after the last row."""
        c = self.config
        advantages, returns = generalized_advantages(
            recorder.rewards, np.asarray(recorder.values, dtype=np.float64), next_value,
            recorder.terminated, recorder.truncated, c.gamma, c.ppo.gae_lambda)
        members, size = self.members, recorder.rewards.shape[0] * self.runner.num_envs

        def members_first(rows: np.ndarray | list[np.ndarray]) -> Tensor:
            moved = np.moveaxis(np.asarray(rows), 1, 0)  # [T, K, E, ...] -> [K, T * E, ...]
            return self.tensor(moved.reshape(members, size, *moved.shape[3:]))

        return Rollout(members_first(recorder.obs), members_first(recorder.target_obs),
                       members_first(recorder.actions), members_first(recorder.log_probs),
                       members_first(recorder.values), members_first(advantages),
                       members_first(returns), members_first(recorder.valid).bool())

    def _update(self, batch: Rollout) -> dict[str, np.ndarray]:
        """``update_epochs`` passes of minibatch PPO over the rollout samples ``[K, B, ...]``.

        Returns each statistic per member ``[K]``.
        """
        ppo = self.config.ppo
        size = batch.obs.shape[1]
        minibatch = max(-(-size // ppo.num_minibatches), 1)
        stats: dict[str, list[Tensor]] = {"policy_loss": [], "value_loss": [], "entropy": [],
                                          "approx_kl": [], "clip_fraction": []}
        stopped = torch.zeros(self.members, dtype=torch.bool)
        if ppo.local_update == "rollout":
            self._learn_locally(batch)
        for _ in range(ppo.update_epochs):
            if ppo.local_update == "epoch":
                self._learn_locally(batch._replace(
                    valid=batch.valid & ~stopped.to(self.device).unsqueeze(1)))
            order = member_permutations(self.generators, size, self.device)
            for start in range(0, size, minibatch):
                mb = batch.rows(order[:, start:start + minibatch])
                mb = mb._replace(valid=mb.valid & ~stopped.to(self.device).unsqueeze(1))
                kl = self._minibatch_step(mb, stats)
            if ppo.target_kl is not None:  # a member past the KL stops its epochs alone
                stopped |= (kl > ppo.target_kl).cpu()
                if bool(stopped.all()):
                    break
        valid = batch.valid
        values, returns = batch.values, batch.returns
        variance = masked_std(returns, valid).square()
        residual = masked_std(returns - values, valid).square()
        explained = torch.where(variance > 0, 1.0 - residual / variance.clamp_min(1e-30),
                                torch.full_like(variance, float("nan")))
        summary = {k: torch.stack(v).nanmean(0).cpu().numpy() for k, v in stats.items() if v}
        summary["explained_variance"] = explained.cpu().numpy()
        return summary

    def _guidance(self, batch: Rollout) -> Tensor:
        """The performance signal a guided trunk learns from: advantages or returns."""
        return batch.advantages if self.config.guidance_signal == "advantages" else \
            batch.returns

    def _learn_locally(self, batch: Rollout) -> None:
        """``--local-update epoch`` or ``rollout``: the trunks' local steps on the whole
        rollout ``[K, T*E, ...]`` (in blocks of ``--distance-batch`` rows), apart from the
        minibatches' RL steps."""
        for network in self.networks:
            network.learner.learn(batch.obs, self._guidance(batch), batch.target_obs,
                                  batch.valid)

    def _minibatch_step(self, mb: Rollout, stats: dict[str, list[Tensor]]) -> Tensor:
        """One RL step of every member on its minibatch ``[K, M, ...]`` (and, under
        ``--local-update minibatch``, the trunks' local steps on it); returns the
        approximate KL per member ``[K]``."""
        ppo = self.config.ppo
        valid = mb.valid
        advantages = mb.advantages
        guidance = self._guidance(mb)
        learn = ppo.local_update == "minibatch"
        actor_features = self.policy.learner.features(mb.obs, guidance, mb.target_obs,
                                                      valid, learn)
        critic_features = self.critic.learner.features(mb.obs, guidance, mb.target_obs,
                                                       valid, learn)

        if ppo.norm_adv:
            count = valid.sum(1, keepdim=True)
            mean = masked_mean(advantages, valid).unsqueeze(1)
            std = masked_std(advantages, valid).unsqueeze(1)
            normalised = (advantages - mean) / (std + 1e-8)
            advantages = torch.where(count > 1, normalised, advantages)

        def actor_loss(head: nn.Module, features: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            """The clipped surrogate minus the entropy bonus; the ratio's denominator is the
            behaviour (acting) policy's recorded log-probability."""
            dist = head.distribution(features)
            log_prob = head.log_prob(dist, mb.actions)
            entropy = masked_mean(head.entropy(dist), valid)
            log_ratio = log_prob - mb.log_probs
            ratio = log_ratio.exp()
            with torch.no_grad():
                approx_kl = masked_mean((ratio - 1) - log_ratio, valid)
                clip_fraction = masked_mean(((ratio - 1.0).abs() > ppo.clip_coef).float(),
                                            valid)
            policy_loss = masked_mean(torch.max(
                -advantages * ratio,
                -advantages * ratio.clamp(1 - ppo.clip_coef, 1 + ppo.clip_coef),
            ), valid)
            return policy_loss - ppo.ent_coef * entropy, {
                "policy_loss": policy_loss, "entropy": entropy, "approx_kl": approx_kl,
                "clip_fraction": clip_fraction}

        def critic_loss(head: nn.Module, features: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            """The (clipped) squared error to the returns, halved."""
            value = head(features)
            if ppo.clip_vloss:
                clipped = mb.values + (value - mb.values).clamp(-ppo.clip_coef, ppo.clip_coef)
                value_loss = 0.5 * masked_mean(torch.max((value - mb.returns) ** 2,
                                                         (clipped - mb.returns) ** 2), valid)
            else:
                value_loss = 0.5 * masked_mean((value - mb.returns) ** 2, valid)
            return value_loss, {"value_loss": value_loss}

        actor, actor_stats = self.policy.rl_loss(actor_features, actor_loss)
        critic, critic_stats = self.critic.rl_loss(critic_features, critic_loss)
        loss = actor + ppo.vf_coef * critic
        # a member with no real row in this minibatch (or stopped by the KL) takes no step
        has_rows = valid.any(1)
        self.rl_step(torch.where(has_rows, loss, torch.zeros_like(loss)), has_rows.cpu())
        numbers = actor_stats | critic_stats
        for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
            stats[key].append(torch.where(has_rows, numbers[key].detach(),
                                          torch.full_like(numbers[key], float("nan"))))
        approx_kl = numbers["approx_kl"]
        return approx_kl


def _rows(x: Tensor, index: Tensor) -> Tensor:
    """Rows ``index`` ``[K, M]`` of each member's ``x`` ``[K, B, ...]`` -> ``[K, M, ...]``."""
    return x.gather(1, index.reshape(*index.shape, *([1] * (x.dim() - 2)))
                    .expand(-1, -1, *x.shape[2:]))
