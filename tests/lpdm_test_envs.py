"""Environments that break on purpose, for the sweep tests.

Imported by Gymnasium through ids of the form ``lpdm_test_envs:LpdmFailing-v0``, so that
sweep workers (fresh processes) register them too.
"""

import os

import gymnasium as gym
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


gym.register("LpdmFailing-v0", entry_point=FailingCartPole, max_episode_steps=500)
gym.register("LpdmCrashing-v0", entry_point=CrashingCartPole, max_episode_steps=500)
