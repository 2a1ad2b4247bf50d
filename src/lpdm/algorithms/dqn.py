"""DQN (replay buffer, target network, ε-greedy), under any learner, for Discrete actions.

Follows CleanRL's ``dqn.py`` and its classic-control defaults: a replay buffer of 10,000
transitions, batches of 128, Adam at 2.5e-4, γ 0.99, the target network copied every 500
steps, ε falling linearly from 1 to 0.05 over half the run, learning from step 10,000 on,
a gradient step every 10 steps, squared TD error (``--huber`` for the smooth l1 loss,
``--double-dqn`` for the online network choosing the next action).

The online Q-network's trunk is trained by its learner on each replay batch (the local
update under ``lpdm``/``lpdm-guided``, the TD loss by backpropagation under ``bp``,
nothing under ``frozen``); the head by the TD loss. The target network copies trunk and
acting head and is never trained. ``lpdm-guided`` takes as performance the TD target
(``--guidance-signal td``) or the Monte-Carlo return of the sample's episode
(``returns``), which the replay buffer fills in when the episode ends. The learner is also
given the batch's rewards and next observations (``set_transitions``: ``lpdm-metric``'s
bisimulation target).

A truncated episode is bootstrapped from the value of its true final observation
(next-step autoreset returns it with the truncation); a terminated one is not. An
iteration collects ``train_frequency`` transitions per member (a member that has its
share waits), then each member that has passed ``learning_starts`` takes one gradient
step, and copies its target network when its step count crosses a multiple of
``target_network_frequency``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpdm.algorithms.base import Algorithm, LearnedNetwork, masked_mean
from lpdm.algorithms.collector import Decision, Iteration, Quota, Row, Transition
from lpdm.config import Config
from lpdm.envs import PopulationRunner
from lpdm.networks import Generators, MemberLinear, member_noise, seeded_generators
from lpdm.replay import ReplayBuffers


class QHead(nn.Module):
    """Action values; features ``[K, B, F]`` -> ``[K, B, actions]``; the greedy action."""

    def __init__(self, in_dim: int, n_actions: int, generators: Generators) -> None:
        super().__init__()
        self.values = MemberLinear(in_dim, n_actions, 1.0, generators)

    def forward(self, features: Tensor) -> Tensor:
        return self.values(features)

    def deterministic(self, features: Tensor) -> Tensor:
        return self.values(features).argmax(dim=-1)


def td_target(rewards: Tensor, next_best: Tensor, terminated: Tensor, gamma: float) -> Tensor:
    """``r + γ max_a Q_target(s', a)``, without the bootstrap where the episode terminated.

    A truncated episode keeps its bootstrap: its ``s'`` is the true final observation.
    """
    return rewards + gamma * next_best * (1.0 - terminated)


def linear_schedule(start: float, end: float, duration: float, step: int) -> float:
    """CleanRL's ε schedule: from ``start`` to ``end`` over ``duration`` steps, then ``end``."""
    slope = (end - start) / duration if duration > 0 else 0.0
    return max(slope * step + start, end) if duration > 0 else end


class DQN(Algorithm):
    adam_eps = 1e-8  # CleanRL's dqn.py: torch's default
    # a TD step every train_frequency (4) steps: measuring each one cost 7% of MinAtar runs
    diagnostics_every = 10

    def __init__(self, config: Config, runner: PopulationRunner, generators: Generators) -> None:
        obs_dim, action_space = self.spaces(runner)
        self.n_actions = int(action_space.n)
        self.policy = LearnedNetwork(
            "q", obs_dim, lambda width, g: QHead(width, self.n_actions, g), config, generators)
        super().__init__(config, runner, [self.policy], generators)
        # the target network: the same shapes, never trained, a copy of the online network
        # built from throw-away generators (the members' own streams stay untouched), then
        # overwritten by the copy
        self.target = self.policy.acting_copy(seeded_generators([0] * self.members)
                                              ).to(self.device)
        self.target.requires_grad_(False)
        self._copy_target(torch.ones(self.members, dtype=torch.bool))
        space = runner.envs.single_observation_space
        # images (bool, uint8) are stored as they come: a float copy would be 4-32x larger
        storage = space.dtype if space.dtype in (np.bool_, np.uint8) else np.float32
        self.buffer = ReplayBuffers(self.members, config.dqn.buffer_size, space.shape,
                                    space.shape, storage)

    # ----------------------------------------------------------------- target network

    @torch.no_grad()
    def _copy_target(self, members: Tensor) -> None:
        """``target = tau * online + (1 - tau) * target`` for the ``members`` ([K] bool)."""
        tau = self.config.dqn.tau
        online = [*self.policy.trunk.parameters(), *self.policy.head.parameters()]
        target = [*self.target["trunk"].parameters(), *self.target["head"].parameters()]
        for q, t in zip(online, target, strict=True):
            index = members.to(t.device)
            t[index] = tau * q[index] + (1.0 - tau) * t[index]

    def weights_loaded(self, members: Tensor) -> None:
        super().weights_loaded(members)
        tau, self.config.dqn.tau = self.config.dqn.tau, 1.0
        try:
            self._copy_target(members)
        finally:
            self.config.dqn.tau = tau

    def target_values(self, obs: Tensor) -> Tensor:
        return self.target["head"](self.target["trunk"](obs))

    # ----------------------------------------------------------------- acting

    def epsilon(self, global_step: int) -> float:
        d = self.config.dqn
        return linear_schedule(d.start_e, d.end_e, d.exploration_fraction *
                               self.config.total_steps, global_step)

    @torch.no_grad()
    def explore(self, obs: np.ndarray, steps: Sequence[int], active: np.ndarray) -> np.ndarray:
        """ε-greedy actions ``[K, 1]``; member ``k``'s coin and random action from its own
        generator (only the ``active`` members draw)."""
        greedy = self.act(obs, deterministic=True)
        coins = member_noise(self.generators, (2,), normal=False, active=active).numpy()
        actions = greedy.copy()
        for k in np.flatnonzero(active):
            if coins[k, 0] < self.epsilon(steps[k]):
                actions[k, 0] = min(int(coins[k, 1] * self.n_actions), self.n_actions - 1)
        return actions

    # ----------------------------------------------------------------- iteration

    def iterate(self, global_steps: Sequence[int], budgets: Sequence[int]) -> list[Iteration]:
        d = self.config.dqn
        quota = np.minimum(d.train_frequency, np.asarray(budgets))  # steps before the update

        def act(obs: np.ndarray, active: np.ndarray, steps: list[int]) -> Decision:
            return Decision(self.explore(obs, steps, active))

        def record(row: Row) -> None:
            for k, transition in row.transitions():
                self.store(k, transition)

        iterations = self.collector.collect(global_steps, act, Quota(quota), record)
        after = np.asarray(global_steps) + np.array([i.steps for i in iterations])
        learning = (after > d.learning_starts) & (np.array([i.steps for i in iterations]) > 0)
        learning &= np.array([k not in self.failures for k in range(self.members)])
        if learning.any():
            with self.timed_update():
                stats = self._update(torch.as_tensor(learning))
            for k in np.flatnonzero(learning):
                iterations[k].stats = {key: float(value[k]) for key, value in stats.items()}
        else:
            self.update_seconds = 0.0
        before = np.asarray(global_steps)
        crossed = (after // d.target_network_frequency) > (before // d.target_network_frequency)
        crossed &= after > d.learning_starts
        if crossed.any():
            self._copy_target(torch.as_tensor(crossed))
        return iterations

    def store(self, member: int, transition: Transition) -> None:
        """Put member ``member``'s transition in its buffer: ``s'`` is the true final
        observation after a termination or a truncation (next-step autoreset), and only a
        termination stops the bootstrap."""
        self.buffer.add(member, transition.obs, transition.target_obs, transition.next_obs,
                        int(transition.action), transition.reward, transition.terminated,
                        transition.ended, self.config.gamma)

    def _update(self, learning: Tensor) -> dict[str, np.ndarray]:
        """One TD step of every member in ``learning`` (``[K]`` bool) on its own replay batch."""
        c, d = self.config, self.config.dqn
        batch = self.buffer.sample(self.generators, d.batch_size,
                                   np.flatnonzero(learning.numpy()).tolist(), c.gamma)
        obs, target_obs, next_obs = (self.tensor(x) for x in (batch.obs, batch.target_obs,
                                                                  batch.next_obs))
        actions, rewards = self.tensor(batch.actions), self.tensor(batch.rewards)
        terminated, returns = self.tensor(batch.terminated), self.tensor(batch.returns)
        valid = learning.to(self.device).unsqueeze(1).expand(-1, d.batch_size)
        with torch.no_grad():
            next_values = self.target_values(next_obs)
            if d.double_dqn:
                choice = self.policy.head(self.policy.trunk(next_obs)).argmax(-1)
                next_best = next_values.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
            else:
                next_best = next_values.max(-1).values
            target = td_target(rewards, next_best, terminated, c.gamma)
        performance = target if c.guidance_signal == "td" else returns
        self.policy.learner.set_transitions(rewards, next_obs)
        features = self.policy.learner.features(obs, performance, target_obs, valid)

        def td_loss(head: nn.Module, features: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            q = head(features).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            error = (F.smooth_l1_loss(q, target, reduction="none") if d.huber
                     else F.mse_loss(q, target, reduction="none"))
            loss = masked_mean(error, valid)
            return loss, {"td_loss": loss.detach(), "q_values": masked_mean(q.detach(), valid)}

        loss, stats = self.policy.rl_loss(features, td_loss)
        self.rl_step(loss, learning)
        return {key: value.cpu().numpy() for key, value in stats.items()}

    # ----------------------------------------------------------------- state

    def state_dict(self) -> dict:
        return super().state_dict() | {"target": self.target.state_dict(),
                                       "replay": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.target.load_state_dict(state["target"])
        self.buffer.load_state_dict(state["replay"])
