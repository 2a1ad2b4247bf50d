"""PPO (clipped surrogate, GAE) with separate actor and critic trunks, under any learner.

Follows CleanRL's ``ppo.py`` / ``ppo_continuous_action.py``: clipped policy surrogate,
GAE(λ), optionally clipped value loss, entropy bonus, per-minibatch advantage
normalisation, linear learning-rate annealing, gradient-norm clipping and an optional
target-KL early stop. The actor and the critic each have their own trunk and a learner
of the same kind; under the local learners both trunks learn from every minibatch's
observations, guided (``lpdm-guided``) by the returns or the advantages.

Vector environments autoreset on the next step. The dummy reset transitions are masked
out, and a time-limit truncation is bootstrapped with the critic's value of the true
final observation (which next-step autoreset returns with the truncation).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lpdm.algorithms.base import Algorithm, Iteration, LearnedNetwork, anneal_fraction
from lpdm.config import Config
from lpdm.envs import EnvRunner
from lpdm.networks import ValueHead, make_policy_head


def generalized_advantages(
    rewards: np.ndarray,
    values: np.ndarray,
    next_value: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE over a rollout ``[T, E]``; returns ``(advantages, returns)``, both ``[T, E]``.

    ``values[t]`` is ``V(obs_t)`` and the value of the observation after step ``t`` is
    ``values[t + 1]`` (``next_value`` after the last step). After a termination or a
    truncation that next observation is the episode's true final observation (next-step
    autoreset), so a truncation bootstraps from it and a termination does not; either way
    the advantage recursion stops there. The dummy reset step that follows carries no
    transition and must be masked out by the caller.
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


class PPO(Algorithm):
    def __init__(self, config: Config, runner: EnvRunner) -> None:
        obs_dim, action_space = self.spaces(runner)
        self.policy = LearnedNetwork(
            "actor", obs_dim, lambda width: make_policy_head(action_space, width), config)
        self.critic = LearnedNetwork("critic", obs_dim, ValueHead, config)
        super().__init__(config, runner, [self.policy, self.critic])
        self.action_shape = action_space.shape

    @torch.no_grad()
    def _policy_step(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sampled actions, their log-probabilities and the values of ``obs`` ``[E, ...]``."""
        obs_t = self.tensor(obs)
        dist = self.policy.head.distribution(self.policy.trunk(obs_t))
        actions = dist.sample()
        log_prob = self.policy.head.log_prob(dist, actions)
        value = self.critic.head(self.critic.trunk(obs_t))
        return actions.cpu().numpy(), log_prob.cpu().numpy(), value.cpu().numpy()

    def iterate(self, global_step: int, budget: int) -> Iteration:
        c, ppo = self.config, self.config.ppo
        if ppo.anneal_lr:
            self.set_lr_fraction(anneal_fraction(global_step, c.total_steps))
        num_envs = self.runner.num_envs
        horizon = min(ppo.num_steps, -(-budget // num_envs))
        obs, target_obs, actions, log_probs, values, rewards, terminated, truncated, valid = (
            [] for _ in range(9))
        iteration = Iteration(steps=0)
        for _ in range(horizon):
            action, log_prob, value = self._policy_step(self.runner.obs)
            step = self.runner.step(action)
            obs.append(step.obs)
            target_obs.append(step.target_obs)
            actions.append(action)
            log_probs.append(log_prob)
            values.append(value)
            rewards.append(step.reward)
            terminated.append(step.terminated)
            truncated.append(step.truncated)
            valid.append(step.valid)
            iteration.steps += int(step.valid.sum())
            for episode in step.episodes:
                iteration.episodes.append(
                    (global_step + iteration.steps, episode.episodic_return, episode.length))
        _, _, next_value = self._policy_step(self.runner.obs)
        advantages, returns = generalized_advantages(
            np.asarray(rewards), np.asarray(values, dtype=np.float64), next_value,
            np.asarray(terminated), np.asarray(truncated), c.gamma, ppo.gae_lambda)
        mask = np.asarray(valid)
        batch = {
            "obs": np.asarray(obs)[mask],
            "target_obs": np.asarray(target_obs)[mask],
            "actions": np.asarray(actions)[mask],
            "log_probs": np.asarray(log_probs)[mask],
            "values": np.asarray(values)[mask],
            "advantages": advantages[mask],
            "returns": returns[mask],
        }
        with self.timed_update():
            iteration.stats = self._update({k: self.tensor(v) for k, v in batch.items()})
        return iteration

    def _update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """``update_epochs`` passes of minibatch PPO over the valid rollout samples ``[B, ...]``."""
        ppo = self.config.ppo
        size = batch["obs"].shape[0]
        minibatch = max(-(-size // ppo.num_minibatches), 1)
        stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "entropy": [],
                                         "approx_kl": [], "clip_fraction": []}
        for _ in range(ppo.update_epochs):
            order = torch.randperm(size, device=self.device)
            for start in range(0, size, minibatch):
                index = order[start:start + minibatch]
                mb = {k: v[index] for k, v in batch.items()}
                kl = self._minibatch_step(mb, stats)
            if ppo.target_kl is not None and kl > ppo.target_kl:
                break
        values, returns = batch["values"], batch["returns"]
        variance = float(returns.var()) if size > 1 else float("nan")
        explained = (1.0 - float((returns - values).var()) / variance
                     if variance and variance > 0 else float("nan"))
        summary = {k: float(np.mean(v)) for k, v in stats.items() if v}
        summary["explained_variance"] = explained
        return summary

    def _minibatch_step(self, mb: dict[str, Tensor], stats: dict[str, list[float]]) -> float:
        c, ppo = self.config, self.config.ppo
        advantages = mb["advantages"]
        guidance = advantages if c.local.guidance_signal == "advantages" else mb["returns"]
        actor_features = self.policy.learner.features(mb["obs"], guidance, mb["target_obs"])
        critic_features = self.critic.learner.features(mb["obs"], guidance, mb["target_obs"])

        dist = self.policy.head.distribution(actor_features)
        log_prob = self.policy.head.log_prob(dist, mb["actions"])
        entropy = self.policy.head.entropy(dist).mean()
        log_ratio = log_prob - mb["log_probs"]
        ratio = log_ratio.exp()
        with torch.no_grad():
            approx_kl = float(((ratio - 1) - log_ratio).mean())
            clip_fraction = float(((ratio - 1.0).abs() > ppo.clip_coef).float().mean())
        if ppo.norm_adv and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = torch.max(
            -advantages * ratio,
            -advantages * ratio.clamp(1 - ppo.clip_coef, 1 + ppo.clip_coef),
        ).mean()

        value = self.critic.head(critic_features)
        if ppo.clip_vloss:
            clipped = mb["values"] + (value - mb["values"]).clamp(-ppo.clip_coef, ppo.clip_coef)
            value_loss = 0.5 * torch.max((value - mb["returns"]) ** 2,
                                         (clipped - mb["returns"]) ** 2).mean()
        else:
            value_loss = 0.5 * ((value - mb["returns"]) ** 2).mean()

        loss = policy_loss - c.ent_coef * entropy + ppo.vf_coef * value_loss
        self.rl_step(loss)
        for key, number in (("policy_loss", policy_loss), ("value_loss", value_loss),
                            ("entropy", entropy)):
            stats[key].append(number.item())
        stats["approx_kl"].append(approx_kl)
        stats["clip_fraction"].append(clip_fraction)
        return approx_kl
