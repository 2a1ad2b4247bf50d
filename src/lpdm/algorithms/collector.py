"""The population collector every algorithm shares: who steps, member failure, episodes.

:meth:`Collector.collect` builds the population's experience row by row. In each row a
stop rule (:class:`Horizon`, :class:`Quota`) says which members still want a step; those
not failed are the *active* members. The algorithm's policy (an :data:`Act`) chooses
actions ``[K, E, ...]`` for every member but draws random numbers only for the active ones,
and only the active members' environments are stepped, so that how long one member waits
never shifts another's random stream. Each row goes to the algorithm's recorder (a
:data:`Record`), which keeps what it learns from; the collector itself counts each member's
valid steps, turns its finished episodes into ``(global step, return, length)`` entries of
its :class:`Iteration`, and an environment failure into the member's failure
``"{why} at step {n}"``.

The collector is the one place that steps the population's environments: stepping all
members as one vector environment, or leaving finished members out, changes it alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from lpdm.envs import PopulationRunner, Step


@dataclass
class Iteration:
    """What one collect-and-update iteration did for one member."""

    steps: int = 0  # valid environment steps collected
    episodes: list[tuple[int, float, int]] = field(default_factory=list)
    # (global step at which the episode ended, return, length)
    stats: dict[str, float] = field(default_factory=dict)  # losses etc. of the update


class Decision(NamedTuple):
    """What the policy chose in one row."""

    actions: np.ndarray  # [K, E, ...]
    extras: tuple[np.ndarray, ...] = ()  # kept with them, e.g. PPO's log-probs, values [K, E]


Act = Callable[[np.ndarray, np.ndarray, list[int]], Decision]
"""``act(obs, active, steps)``: the :class:`Decision` for observations ``obs`` ``[K, E, ...]``;
only the ``active`` (``[K]`` bool) members draw random numbers; ``steps[k]``: member
``k``'s global step count (for schedules such as DQN's ε)."""


class Transition(NamedTuple):
    """One valid step of one member's single environment (REINFORCE, DQN)."""

    obs: np.ndarray  # [*obs_shape] the observation the action was taken in
    target_obs: np.ndarray  # [*target_shape] what the local targets are built from there
    action: np.ndarray  # [] (discrete) or [A], as sampled
    reward: float
    terminated: bool
    truncated: bool
    next_obs: np.ndarray  # [*obs_shape]; after an episode's end its true final observation

    @property
    def ended(self) -> bool:
        """Whether the episode stopped here (terminated or truncated)."""
        return self.terminated or self.truncated


class Row(NamedTuple):
    """One step of the population, handed to the algorithm's :data:`Record`."""

    index: int  # the row's number in this collection, from 0
    obs: np.ndarray  # [K, E, ...] the observations the actions were chosen in
    target_obs: np.ndarray  # [K, E, ...] what the local targets are built from there
    active: np.ndarray  # [K] bool: the members stepped
    decision: Decision
    steps: list[Step | None]  # member k's step; None where not stepped (or it failed)

    def transitions(self) -> Iterator[tuple[int, Transition]]:
        """``(member, transition)`` of each member whose environment (the first; one per
        member) made a valid step: not the dummy step of an autoreset."""
        for k, step in enumerate(self.steps):
            if step is None or not step.valid[0]:
                continue
            yield k, Transition(self.obs[k, 0], self.target_obs[k, 0], step.actions[0],
                                float(step.reward[0]), bool(step.terminated[0]),
                                bool(step.truncated[0]), step.next_obs[0])


Record = Callable[[Row], None]
"""``record(row)``: keep what the algorithm learns from in one row."""


class StopRule(Protocol):
    """When collection ends, and which members want a step in each row."""

    def wants(self, row: int, steps: np.ndarray, episodes: np.ndarray) -> np.ndarray:
        """``[K]`` bool: the members that want a step in ``row``, given their valid
        ``steps`` and finished ``episodes`` (``[K]``) so far."""

    def over(self, row: int, active: np.ndarray) -> bool:
        """Whether collection ends before ``row``, whose active members are ``active``."""


@dataclass(frozen=True)
class Horizon:
    """Exactly ``rows`` rows (PPO); member ``k`` steps in the first ``limits[k]`` of them
    and its later rows are padding."""

    rows: int
    limits: np.ndarray  # [K]

    def wants(self, row: int, steps: np.ndarray, episodes: np.ndarray) -> np.ndarray:
        return self.limits > row

    def over(self, row: int, active: np.ndarray) -> bool:
        return row >= self.rows


@dataclass(frozen=True)
class Quota:
    """Until no member is active: member ``k`` collects ``steps[k]`` valid steps, or fewer
    when it has finished ``episodes`` episodes first (REINFORCE; DQN has no episode limit)."""

    steps: Sequence[int]  # [K]
    episodes: int | None = None

    def wants(self, row: int, steps: np.ndarray, episodes: np.ndarray) -> np.ndarray:
        wants = steps < np.asarray(self.steps)
        return wants if self.episodes is None else wants & (episodes < self.episodes)

    def over(self, row: int, active: np.ndarray) -> bool:
        return not active.any()


class Collector:
    """Collects experience from ``runner``'s population; ``failures`` (member -> why) is
    the algorithm's record of failed members, read to leave them out and written when an
    environment fails."""

    def __init__(self, runner: PopulationRunner, failures: dict[int, str]) -> None:
        self.runner = runner
        self.failures = failures

    def collect(self, global_steps: Sequence[int], act: Act, stop: StopRule,
                record: Record) -> list[Iteration]:
        """Step the active members row by row until ``stop`` says it is over, handing every
        row to ``record``. ``global_steps[k]``: member ``k``'s steps before. Returns one
        :class:`Iteration` per member (its steps and episodes; no stats)."""
        members = self.runner.members
        iterations = [Iteration() for _ in range(members)]
        episodes = np.zeros(members, dtype=np.int64)
        row = 0
        while True:
            collected = np.array([iteration.steps for iteration in iterations])
            alive = np.array([k not in self.failures for k in range(members)])
            active = stop.wants(row, collected, episodes) & alive
            if stop.over(row, active):
                return iterations
            now = [global_steps[k] + iterations[k].steps for k in range(members)]
            obs, target_obs = self.runner.obs, self.runner.target_obs
            decision = act(obs, active, now)
            steps, failures = self.runner.step(decision.actions, active)
            for k, why in failures.items():
                self.failures[k] = f"{why} at step {now[k] + 1}"
            for k, step in enumerate(steps):
                if step is not None:
                    self._count(iterations[k], global_steps[k], step)
                    episodes[k] += int((step.valid & (step.terminated | step.truncated)).sum())
            record(Row(row, obs, target_obs, active, decision, steps))
            row += 1

    @staticmethod
    def _count(iteration: Iteration, global_step: int, step: Step) -> None:
        """Add ``step``'s valid steps and finished episodes to a member's ``iteration``."""
        iteration.steps += int(step.valid.sum())
        for episode in step.episodes:
            iteration.episodes.append((global_step + iteration.steps, episode.episodic_return,
                                       episode.length))
