"""The batched environment stack of a population against Gymnasium's wrappers, member by
member: the same observations, rewards, episodes and statistics, bit for bit."""

import gymnasium as gym
import numpy as np
import pytest
from lpdm_test_envs import NaNAfter

from lpdm.config import Config, resolve, with_values
from lpdm.envs import (
    BatchedRunner,
    EnvRunner,
    PopulationRunner,
    Step,
    VectorEnvRunners,
    make_vector_env,
)

MEMBERS = 3
CASES = {  # env id, environments per member, algorithm (its normalisation defaults), options
    "cartpole": ("CartPole-v1", 4, "ppo", {}),
    "cartpole-normalised": ("CartPole-v1", 4, "ppo", {"norm_obs": True}),
    "pendulum": ("Pendulum-v1", 2, "ppo", {}),
    "pendulum-raw-targets": ("Pendulum-v1", 1, "ppo", {"target_obs": "raw"}),
    "hopper": ("Hopper-v4", 1, "ppo", {}),
    "hopper-4": ("Hopper-v4", 4, "ppo", {}),
}


def case_config(name: str) -> Config:
    env, num_envs, algo, values = CASES[name]
    config = with_values(Config(env=env, algo=algo), {"num_envs": num_envs, **values})
    return resolve(config, isinstance(gym.make(env).action_space, gym.spaces.Discrete))


def pair(config: Config) -> tuple[PopulationRunner, PopulationRunner]:
    """Gymnasium's wrappers (one vector environment per member) and the batched stack."""
    num_envs = config.envs.num_envs
    wrapped = VectorEnvRunners([EnvRunner(make_vector_env(config, num_envs))
                                for _ in range(MEMBERS)])
    return wrapped, BatchedRunner(config, MEMBERS, num_envs)


def assert_same_step(a: Step | None, b: Step | None) -> None:
    assert (a is None) == (b is None)
    if a is None:
        return
    for field in ("obs", "target_obs", "actions", "reward", "terminated", "truncated",
                  "valid", "next_obs"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and np.array_equal(x, y), field
    assert a.episodes == b.episodes


def assert_same_statistics(a: PopulationRunner, b: PopulationRunner) -> None:
    for k in range(MEMBERS):
        x, y = a.normalization_state(k), b.normalization_state(k)
        assert x.keys() == y.keys()
        for key in x:
            assert np.asarray(x[key]).dtype == np.asarray(y[key]).dtype, key
            assert np.array_equal(x[key], y[key]), key


@pytest.mark.parametrize("name", list(CASES))
def test_batched_stack_steps_as_gymnasium_wrappers_do(name):
    """300 steps of random actions, members sometimes idle (``active``), one member reset
    and one restored from saved statistics midway: everything the same, bit for bit."""
    config = case_config(name)
    wrapped, batched = pair(config)
    space = batched.envs.single_action_space
    assert batched.envs.single_observation_space == wrapped.envs.single_observation_space
    assert space == wrapped.envs.single_action_space
    rng = np.random.default_rng(0)
    for k in range(MEMBERS):
        wrapped.reset(k, 10 * k)
        batched.reset(k, 10 * k)
    episodes = 0
    for t in range(300):
        if t == 150:
            wrapped.reset(1, 123)
            batched.reset(1, 123)
        if t == 200:
            state = wrapped.normalization_state(0)
            wrapped.load_normalization_state(2, state)
            batched.load_normalization_state(2, state)
        assert np.array_equal(wrapped.obs, batched.obs)
        assert np.array_equal(wrapped.target_obs, batched.target_obs)
        if isinstance(space, gym.spaces.Discrete):
            actions = rng.integers(space.n, size=(MEMBERS, config.envs.num_envs))
        else:  # beyond the bounds at times: both clip
            actions = rng.normal(0.0, 1.5, (MEMBERS, config.envs.num_envs, *space.shape))
        active = rng.random(MEMBERS) < 0.8
        (a, failed_a), (b, failed_b) = wrapped.step(actions, active), \
            batched.step(actions, active)
        assert failed_a == failed_b == {}
        for x, y in zip(a, b, strict=True):
            assert_same_step(x, y)
            episodes += len(x.episodes) if x else 0
        if t % 50 == 0:
            assert_same_statistics(wrapped, batched)
    assert_same_statistics(wrapped, batched)
    assert episodes > 0 or name.startswith("pendulum")  # Pendulum truncates at 200 steps
    wrapped.close()
    batched.close()


def test_a_failing_member_stops_alone_and_says_why():
    config = case_config("hopper")
    wrapped, batched = pair(config)
    batched.env_grid[1][0] = NaNAfter(batched.env_grid[1][0], 20)
    for k in range(MEMBERS):
        wrapped.reset(k, k)
        batched.reset(k, k)
    rng = np.random.default_rng(1)
    for t in range(40):
        actions = rng.normal(0.0, 1.0, (MEMBERS, 1, 3))
        (a, _), (b, failures) = wrapped.step(actions), batched.step(actions)
        assert failures == ({1: "environment returned NaN in observation 3"} if t == 19 else {})
        assert (b[1] is None) == (t >= 19)
        for k in (0, 2):
            assert_same_step(a[k], b[k])
    assert batched.failed == {1: "environment returned NaN in observation 3"}
    assert np.isfinite(batched.obs).all()


def test_stepping_before_a_reset_is_refused():
    batched = BatchedRunner(case_config("cartpole"), 2, 1)
    batched.reset(0, 0)
    with pytest.raises(RuntimeError, match="reset the runner"):
        batched.step(np.zeros((2, 1), dtype=int))
    assert batched.step(np.zeros((2, 1), dtype=int), np.array([True, False]))[0][1] is None
    assert batched.step(np.zeros((2, 1), dtype=int), np.zeros(2, dtype=bool)) == \
        ([None, None], {})
