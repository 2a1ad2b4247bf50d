"""The population collector: stop rules, episode bookkeeping, failures, draws."""

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import vector as vector_wrappers

from lpdm.algorithms.collector import Collector, Decision, Horizon, Quota, Row
from lpdm.envs import EnvRunner, PopulationRunner, VectorEnvRunners
from lpdm.networks import member_noise, seeded_generators


class Countdown(gym.Env):
    """Episodes of ``length`` steps of reward 1; observation ``[t]``, NaN from step
    ``nan_at`` on (counting every step of the environment)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int, nan_at: int | None = None) -> None:
        self.length, self.nan_at = length, nan_at
        self.t = self.total = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        self.total += 1
        obs = np.array([np.nan if self.total == self.nan_at else self.t], np.float32)
        return obs, 1.0, self.t == self.length, False, {}


def population(*envs: Countdown) -> PopulationRunner:
    runners = []
    for env in envs:
        vector = vector_wrappers.RecordEpisodeStatistics(
            gym.vector.SyncVectorEnv([lambda env=env: env]))
        runner = EnvRunner(vector)
        runner.reset(seed=0)
        runners.append(runner)
    return VectorEnvRunners(runners)


class Drawing:
    """A policy that draws one number per active member (always action 0)."""

    def __init__(self, members: int) -> None:
        self.generators = seeded_generators(list(range(members)))
        self.active: list[np.ndarray] = []
        self.steps: list[list[int]] = []

    def __call__(self, obs: np.ndarray, active: np.ndarray, steps: list[int]) -> Decision:
        self.active.append(active.copy())
        self.steps.append(steps)
        member_noise(self.generators, (1,), normal=False, active=active)
        return Decision(np.zeros(obs.shape[:2], dtype=np.int64))


def draws_made(policy: Drawing, member: int, count: int) -> bool:
    """Whether ``member``'s generator is where ``count`` draws from its seed leave it."""
    fresh = seeded_generators(list(range(len(policy.generators))))[member]
    for _ in range(count):
        torch.rand((1,), generator=fresh)
    return torch.equal(fresh.get_state(), policy.generators[member].get_state())


def test_quota_collects_each_members_steps_and_episodes_drawing_only_while_active():
    runner = population(Countdown(3), Countdown(5))
    policy, rows = Drawing(2), []
    iterations = Collector(runner, {}).collect([100, 200], policy, Quota([100, 4], episodes=2),
                                               rows.append)
    # member 0: two episodes of 3 (6 steps, one autoreset dummy between); member 1: its budget
    assert [i.steps for i in iterations] == [6, 4]
    assert iterations[0].episodes == [(103, 3.0, 3), (106, 3.0, 3)]
    assert iterations[1].episodes == []
    active = np.array(policy.active)
    assert active[:, 0].sum() == 7 and active[:, 1].sum() == 4
    assert draws_made(policy, 0, 7) and draws_made(policy, 1, 4)
    assert policy.steps[4] == [103, 204]  # after member 0's dummy step, member 1 waiting
    transitions = [[t for row in rows for k, t in row.transitions() if k == m] for m in (0, 1)]
    assert [len(t) for t in transitions] == [6, 4]
    assert [t.ended for t in transitions[0]] == [False, False, True] * 2
    assert [float(t.obs[0]) for t in transitions[0]] == [0, 1, 2, 0, 1, 2]
    assert [float(t.next_obs[0]) for t in transitions[0]] == [1, 2, 3, 1, 2, 3]


def test_a_failing_member_stops_alone_with_its_step():
    failures: dict[int, str] = {}
    runner = population(Countdown(4), Countdown(4, nan_at=3))
    policy = Drawing(2)
    iterations = Collector(runner, failures).collect([0, 10], policy, Quota([6, 6]),
                                                     lambda row: None)
    assert failures == {1: "environment returned NaN in observation 0 at step 13"}
    assert [i.steps for i in iterations] == [6, 2]
    assert np.array(policy.active)[:, 1].sum() == 3  # never stepped after its failure
    assert iterations[0].episodes == [(4, 4.0, 4)]


def test_a_horizon_pads_every_member_to_the_same_rows():
    runner = population(Countdown(10), Countdown(10))
    rows: list[Row] = []
    iterations = Collector(runner, {}).collect([0, 0], Drawing(2), Horizon(5, np.array([5, 2])),
                                               rows.append)
    assert [row.index for row in rows] == [0, 1, 2, 3, 4]
    assert [row.active.tolist() for row in rows] == [[True, True]] * 2 + [[True, False]] * 3
    assert all(row.steps[1] is None for row in rows[2:])
    assert [i.steps for i in iterations] == [5, 2]
