"""Environments that break on purpose, for the sweep and population tests.

Imported by Gymnasium through ids of the form ``lpdm_test_envs:LpdmFailing-v0``, so that
sweep workers (fresh processes) register them too.
"""

import os

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv

FAIL_AFTER_STEPS = 300


class FailingCartPole(CartPoleEnv):
    """CartPole that raises after a few hundred steps."""

    steps = 0

    def step(self, action):
        FailingCartPole.steps += 1
        if FailingCartPole.steps > FAIL_AFTER_STEPS:
            raise RuntimeError("this environment fails on purpose")
        return super().step(action)


class CrashingCartPole(CartPoleEnv):
    """CartPole whose process dies (as if killed, or out of memory) after a few steps."""

    def step(self, action):
        os._exit(3)


class NaNAfter(gym.Wrapper):
    """Returns NaN in observation feature 3 from its ``after``-th step on (autoresets are
    no steps)."""

    def __init__(self, env: gym.Env, after: int) -> None:
        super().__init__(env)
        self.after, self.steps = after, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps >= self.after:
            obs = np.array(obs, copy=True)
            obs[3] = np.nan
        return obs, reward, terminated, truncated, info


gym.register("LpdmFailing-v0", entry_point=FailingCartPole, max_episode_steps=500)
gym.register("LpdmCrashing-v0", entry_point=CrashingCartPole, max_episode_steps=500)
