"""A population's replay buffers: one ring buffer per member, stored as ``[K, capacity, ...]``.

Each member writes only its own rows and samples only its own rows (with its own
generator). Besides the transition, a row holds the observation the local targets are
built from (``--target-obs``) and the discounted Monte-Carlo return of the transition's
episode from that step on, filled in when the episode ends (until then, the return of the
rewards seen so far). The whole buffer is part of the algorithm's state, so a killed run
resumes with exactly the buffer it had at its last checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor


class ReplaySample(NamedTuple):
    """``B`` stored transitions per member, members first."""

    obs: np.ndarray  # [K, B, *obs_shape]
    target_obs: np.ndarray  # [K, B, *target_shape]
    next_obs: np.ndarray  # [K, B, *obs_shape]; the true final observation after an episode
    actions: np.ndarray  # [K, B] int64
    rewards: np.ndarray  # [K, B] float32
    terminated: np.ndarray  # [K, B] float32: 1 where the episode terminated (no bootstrap)
    returns: np.ndarray  # [K, B] float32: discounted Monte-Carlo returns from the step on


class ReplayBuffers:
    """``capacity`` transitions per member for ``members`` members."""

    def __init__(self, members: int, capacity: int, obs_shape: tuple[int, ...],
                 target_shape: tuple[int, ...], obs_dtype: np.dtype = np.float32) -> None:
        self.capacity = capacity
        self.data = {
            "obs": np.zeros((members, capacity, *obs_shape), dtype=obs_dtype),
            "target_obs": np.zeros((members, capacity, *target_shape), dtype=obs_dtype),
            "next_obs": np.zeros((members, capacity, *obs_shape), dtype=obs_dtype),
            "actions": np.zeros((members, capacity), dtype=np.int64),
            "rewards": np.zeros((members, capacity), dtype=np.float32),
            "terminated": np.zeros((members, capacity), dtype=np.float32),
            "returns": np.zeros((members, capacity), dtype=np.float32),
        }
        self.position = np.zeros(members, dtype=np.int64)  # next row to write
        self.size = np.zeros(members, dtype=np.int64)
        self.episode_start = np.zeros(members, dtype=np.int64)  # writes since the episode began

    def add(self, member: int, obs: np.ndarray, target_obs: np.ndarray, next_obs: np.ndarray,
            action: int, reward: float, terminated: bool, episode_ended: bool,
            gamma: float) -> None:
        """Store one transition of ``member``; at an episode's end, fill in its returns."""
        row = int(self.position[member])
        d = self.data
        d["obs"][member, row], d["target_obs"][member, row] = obs, target_obs
        d["next_obs"][member, row], d["actions"][member, row] = next_obs, action
        d["rewards"][member, row], d["terminated"][member, row] = reward, float(terminated)
        self.position[member] = (row + 1) % self.capacity
        self.size[member] = min(self.size[member] + 1, self.capacity)
        self.episode_start[member] += 1
        if episode_ended:
            self._fill_returns(member, gamma)
            self.episode_start[member] = 0

    def _fill_returns(self, member: int, gamma: float) -> None:
        """Discounted returns-to-go of the rows of ``member``'s current episode still held."""
        length = int(min(self.episode_start[member], self.capacity))
        if length == 0:
            return
        rows = (int(self.position[member]) - length + np.arange(length)) % self.capacity
        rewards = self.data["rewards"][member, rows].astype(np.float64)
        discounts = gamma ** np.arange(length, dtype=np.float64)
        tail = np.cumsum((rewards * discounts)[::-1])[::-1]
        self.data["returns"][member, rows] = tail / discounts

    def sample(self, generators: Sequence[torch.Generator], batch: int,
               members: Sequence[int], gamma: float) -> ReplaySample:
        """``batch`` rows per member, uniformly from its stored rows (with replacement, as
        CleanRL's buffer), for the ``members`` listed; the others' rows are zeros."""
        index = np.zeros((len(generators), batch), dtype=np.int64)
        for k in members:
            draw = torch.randint(int(self.size[k]), (batch,), generator=generators[k])
            index[k] = draw.numpy()
            self._fill_returns(k, gamma)  # the episode in progress: rewards seen so far
        taken = np.arange(len(generators))[:, None]
        return ReplaySample(**{name: values[taken, index] for name, values in self.data.items()})

    def state_dict(self) -> dict[str, Tensor]:
        """Every array with the member dimension first, as tensors sharing the buffers'
        memory, as a module's ``state_dict`` does: a caller clones what it keeps (a member's
        checkpoint clones its own rows only, not the whole population's buffer)."""
        state = {name: torch.from_numpy(values) for name, values in self.data.items()}
        for name in ("position", "size", "episode_start"):
            state[name] = torch.from_numpy(getattr(self, name))
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for name in self.data:
            self.data[name] = state[name].numpy().copy()
        for name in ("position", "size", "episode_start"):
            setattr(self, name, state[name].numpy().copy())
