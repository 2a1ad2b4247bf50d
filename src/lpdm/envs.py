"""Environments: any Gymnasium id with a flat Box observation, vectorized, normalised.

Vector environments run in Gymnasium 1.x's default next-step autoreset mode: the step
that ends an episode returns the true final observation, and the *next* call to
``step`` ignores its action and returns the reset observation with zero reward.
:class:`EnvRunner` marks that dummy transition ``valid=False`` so that algorithms can
skip it, and the final observation of a truncated episode is available for bootstrapping.

A population's environments are one :class:`BatchedRunner`: all members' environments
stepped in one loop, with what Gymnasium's ``SyncVectorEnv`` and vector wrappers compute
for each member (:func:`make_vector_env`) done once per population step, bit for bit.
Evaluation, ``--async-envs`` and ``--video`` keep a wrapped vector environment per member.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import sys
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import vector as vector_wrappers

from lpdm.config import Config
from lpdm.errors import EnvError

OBS_CLIP = 10.0
REWARD_CLIP = 10.0


class EnvFailure(RuntimeError):
    """An environment returned something a run cannot go on with (NaN, inf); one line."""


def quiet_gymnasium() -> None:
    """Silence Gymnasium's deprecation chatter (e.g. about the -v4 MuJoCo versions)."""
    warnings.filterwarnings("ignore", module=r"gymnasium(\.|$)")
    warnings.filterwarnings("ignore", module=r"glfw(\.|$)")  # MuJoCo probing for a display
    gym.logger.min_level = 40
    _quiet_mujoco()


# MuJoCo's warning that Gymnasium's own -v4 model files (HalfCheetah's) use a deprecated
# attribute: nothing a user can act on, and printed at every environment made.
_MUJOCO_NOISE = "compiler attribute 'settotalmass' is deprecated"


def _forward_mujoco_warning(message: str) -> None:
    if _MUJOCO_NOISE not in message:
        print(f"MuJoCo warning: {message}", file=sys.stderr, flush=True)


@functools.cache
def _quiet_mujoco() -> None:
    """Route MuJoCo's warnings to stderr without the deprecation noise of the -v4 models,
    and never into ``MUJOCO_LOG.TXT`` in the working directory of every run."""
    if importlib.util.find_spec("mujoco") is None:
        return
    import mujoco

    log = mujoco.MjLogConfig.get()
    log.logto_file = False
    log.set()
    mujoco.set_mju_user_warning(_forward_mujoco_warning)


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed derived deterministically from ``seed`` and ``keys``."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0] >> 1)


IMAGE_DTYPES = (np.bool_, np.uint8, np.float16, np.float32, np.float64)


def check_spaces(env_id: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Raise :class:`EnvError` unless observations are a flat Box or an image (a 3-D Box of
    bool, uint8 or floats) and actions Discrete or a flat Box."""
    if not isinstance(observation_space, gym.spaces.Box) or \
            len(observation_space.shape) not in (1, 3):
        raise EnvError(f"{env_id}: observation space {observation_space} is not supported; "
                       "lpdm needs a flat (1-D) Box or an image (H, W, C) or (C, H, W)")
    if len(observation_space.shape) == 3 and observation_space.dtype not in IMAGE_DTYPES:
        raise EnvError(f"{env_id}: image observations of dtype {observation_space.dtype} are "
                       "not supported; lpdm reads bool, uint8 or float images")
    if isinstance(action_space, gym.spaces.Discrete):
        return
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return
    raise EnvError(f"{env_id}: action space {action_space} is not supported; "
                   "lpdm needs a Discrete or a flat (1-D) Box action space")


def parse_env_kwargs(text: str) -> dict[str, object]:
    """``KEY=VALUE,...`` -> keyword arguments; values are Python literals where they read as
    one (``-1``, ``0.5``, ``True``, ``'x'``), else strings."""
    kwargs: dict[str, object] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key.isidentifier():
            raise EnvError(f"--env-kwargs: expected KEY=VALUE, got {item!r}")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def register_minatar(env_id: str) -> None:
    """Register MinAtar's Gymnasium ids (``MinAtar/Breakout-v1``, ...) for ``env_id`` of
    that family, or say how to install MinAtar."""
    if not env_id.startswith("MinAtar/") or env_id in gym.registry:
        return
    try:
        import minatar.gym  # an optional extra
    except ImportError:
        raise EnvError(f"{env_id} needs MinAtar: pip install 'lpdm[minatar]'") from None
    minatar.gym.register_envs()


def _make(env_id: str, render_mode: str | None, kwargs: dict[str, object]) -> gym.Env:
    register_minatar(env_id)
    if render_mode is not None:
        kwargs = {**kwargs, "render_mode": render_mode}
    return gym.make(env_id, **kwargs)


def make_env(env_id: str, render_mode: str | None = None, env_kwargs: str = "") -> gym.Env:
    """``gym.make`` with lpdm's one-line errors for unknown ids, bad keyword arguments and
    unusable spaces."""
    quiet_gymnasium()
    kwargs = parse_env_kwargs(env_kwargs)
    try:
        env = _make(env_id, render_mode, kwargs)
    except gym.error.Error as error:
        raise EnvError(f"unknown environment {env_id!r}: {error}") from None
    except (ImportError, ModuleNotFoundError) as error:
        raise EnvError(f"{env_id}: a dependency is missing ({error})") from None
    except TypeError as error:
        raise EnvError(f"{env_id}: --env-kwargs {env_kwargs}: {error}") from None
    check_spaces(env_id, env.observation_space, env.action_space)
    return env


def env_spaces(env_id: str, env_kwargs: str = "") -> tuple[gym.Space, gym.Space]:
    """Observation and action space of ``env_id`` (checked)."""
    env = make_env(env_id, env_kwargs=env_kwargs)
    spaces = env.observation_space, env.action_space
    env.close()
    return spaces


def make_vector_env(config: Config, num_envs: int, video_dir: str | None = None
                    ) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``config.env`` with episode statistics and optional normalisation.

    Episode returns are recorded before any reward scaling, so they are the true returns.
    With ``video_dir``, every episode is rendered and saved there as MP4.
    """
    render_mode = "rgb_array" if video_dir else None
    # fail early, with a clear message, on bad ids, keyword arguments or spaces
    make_env(config.env, env_kwargs=config.envs.env_kwargs).close()
    kwargs = parse_env_kwargs(config.envs.env_kwargs)

    def factory() -> gym.Env:
        quiet_gymnasium()
        return _make(config.env, render_mode, kwargs)

    factories = [factory] * num_envs
    if config.envs.async_envs and num_envs > 1:
        envs: gym.vector.VectorEnv = gym.vector.AsyncVectorEnv(factories)
    else:
        envs = gym.vector.SyncVectorEnv(factories)
    if video_dir:
        envs = vector_wrappers.RecordVideo(envs, video_dir, episode_trigger=lambda _: True)
    envs = vector_wrappers.RecordEpisodeStatistics(envs)
    if config.envs.norm_obs and config.local.target_obs == "raw":
        envs = RecordRawObservation(envs)
    if config.envs.norm_obs:
        envs = vector_wrappers.NormalizeObservation(envs)
        envs = vector_wrappers.TransformObservation(
            envs, lambda obs: np.clip(obs, -OBS_CLIP, OBS_CLIP))
    if config.envs.norm_reward:
        envs = vector_wrappers.NormalizeReward(envs, gamma=config.gamma)
        envs = vector_wrappers.TransformReward(
            envs, lambda reward: np.clip(reward, -REWARD_CLIP, REWARD_CLIP))
    return envs


class RecordRawObservation(gym.vector.VectorObservationWrapper):
    """Keeps the observations as the environments returned them, before normalisation
    (``--target-obs raw``: the local targets are built from them)."""

    def __init__(self, envs: gym.vector.VectorEnv) -> None:
        super().__init__(envs)
        self.raw: np.ndarray | None = None

    def observations(self, observations: np.ndarray) -> np.ndarray:
        self.raw = np.array(observations, copy=True)
        return observations


# --------------------------------------------------------------------------- normalisation


def _find(envs: gym.vector.VectorEnv, kind: type) -> object | None:
    node: object = envs
    while node is not None:
        if isinstance(node, kind):
            return node
        node = getattr(node, "env", None)
    return None


def normalization_state(envs: gym.vector.VectorEnv) -> dict[str, np.ndarray | float]:
    """Running statistics of observation normalisation and reward scaling (may be empty)."""
    state: dict[str, np.ndarray | float] = {}
    obs = _find(envs, vector_wrappers.NormalizeObservation)
    if obs is not None:
        state |= {"obs_mean": obs.obs_rms.mean.copy(), "obs_var": obs.obs_rms.var.copy(),
                  "obs_count": float(obs.obs_rms.count)}
    ret = _find(envs, vector_wrappers.NormalizeReward)
    if ret is not None:
        state |= {"return_mean": float(ret.return_rms.mean),
                  "return_var": float(ret.return_rms.var),
                  "return_count": float(ret.return_rms.count)}
    return state


def load_normalization_state(envs: gym.vector.VectorEnv, state: dict, freeze: bool = False) -> None:
    """Restore :func:`normalization_state`; ``freeze`` stops further updates (evaluation)."""
    obs = _find(envs, vector_wrappers.NormalizeObservation)
    if obs is not None:
        if "obs_mean" in state:
            obs.obs_rms.mean = np.asarray(state["obs_mean"], dtype=np.float64).copy()
            obs.obs_rms.var = np.asarray(state["obs_var"], dtype=np.float64).copy()
            obs.obs_rms.count = float(state["obs_count"])
        obs.update_running_mean = not freeze
    ret = _find(envs, vector_wrappers.NormalizeReward)
    if ret is not None:
        if "return_mean" in state:
            ret.return_rms.mean = np.float64(state["return_mean"])
            ret.return_rms.var = np.float64(state["return_var"])
            ret.return_rms.count = float(state["return_count"])
        ret.update_running_mean = not freeze


# --------------------------------------------------------------------------- stepping


@dataclass
class Episode:
    env_index: int
    episodic_return: float
    length: int


@dataclass
class Step:
    """One vector step. Arrays are ``[E, ...]`` for ``E`` environments."""

    obs: np.ndarray  # the observation each action was taken in
    target_obs: np.ndarray  # what the local targets are built from there (--target-obs)
    actions: np.ndarray  # the actions as sampled (before clipping to the bounds)
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray  # False for the dummy step that only resets (next-step autoreset)
    next_obs: np.ndarray  # after a termination/truncation: the true final observation
    episodes: list[Episode]


class EnvRunner:
    """Steps a vector environment, clipping Box actions and flagging autoreset dummies."""

    def __init__(self, envs: gym.vector.VectorEnv) -> None:
        self.envs = envs
        self.num_envs = envs.num_envs
        space = envs.single_action_space
        self._bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None
        self.obs: np.ndarray | None = None
        self._raw = _find(envs, RecordRawObservation)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)

    @property
    def target_obs(self) -> np.ndarray:
        """The observations the local targets are built from: the unnormalised ones under
        ``--target-obs raw`` with ``--norm-obs``, else :attr:`obs` itself."""
        return self.obs if self._raw is None else self._raw.raw

    def reset(self, seed: int) -> np.ndarray:
        self.obs, _ = self.envs.reset(seed=seed)
        self._autoreset[:] = False
        return self.obs

    def step(self, actions: np.ndarray) -> Step:
        if self.obs is None:
            raise RuntimeError("reset the runner before stepping it")
        env_actions = actions if self._bounds is None else np.clip(actions, *self._bounds)
        target_obs = self.target_obs
        next_obs, reward, terminated, truncated, info = self.envs.step(env_actions)
        failure = _non_finite(next_obs, reward)
        if failure is not None:
            raise EnvFailure(failure)
        valid = ~self._autoreset
        episodes = []
        if "_episode" in info:
            for i in np.flatnonzero(info["_episode"]):
                episodes.append(Episode(int(i), float(info["episode"]["r"][i]),
                                        int(info["episode"]["l"][i])))
        step = Step(self.obs, target_obs, actions, np.asarray(reward, dtype=np.float64),
                    np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool),
                    valid, next_obs, episodes)
        self._autoreset = step.terminated | step.truncated
        self.obs = next_obs
        return step

    def close(self) -> None:
        self.envs.close()


def _name(value: float) -> str:
    return "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")


def _non_finite(obs: np.ndarray, reward: np.ndarray) -> str | None:
    """Why observations ``[E, ...]`` and rewards ``[E]`` cannot be used (NaN, inf), in
    one line, or None where they can."""
    obs = np.asarray(obs)
    if np.issubdtype(obs.dtype, np.floating) and not np.isfinite(obs).all():
        index = np.argwhere(~np.isfinite(obs))[0]
        feature = int(np.ravel_multi_index(index[1:], obs.shape[1:])) if obs.ndim > 1 else 0
        return f"environment returned {_name(obs[tuple(index)])} in observation {feature}"
    reward = np.asarray(reward, dtype=np.float64)
    if not np.isfinite(reward).all():
        return f"environment returned a reward of {_name(reward[~np.isfinite(reward)][0])}"
    return None


@dataclass(frozen=True)
class EnvSpaces:
    """The spaces of one sub-environment, as a vector environment states them."""

    single_observation_space: gym.spaces.Box
    single_action_space: gym.Space
    num_envs: int


class PopulationRunner(ABC):
    """The environments of a population of ``K`` members, ``E`` per member, each member
    with its own seeds, episode statistics and normalisation statistics; observations
    stacked ``[K, E, ...]``.

    A member whose environment fails (:class:`EnvFailure`) stops there: :meth:`step`
    reports it and never steps it again. The arrays returned are never modified later.
    """

    failed: dict[int, str]

    @property
    @abstractmethod
    def members(self) -> int:
        """``K``."""

    @property
    @abstractmethod
    def num_envs(self) -> int:
        """``E``, the environments of each member."""

    @property
    @abstractmethod
    def envs(self) -> gym.vector.VectorEnv | EnvSpaces:
        """The spaces of the members' environments (``single_observation_space`` is the
        normalised one under ``--norm-obs``)."""

    @property
    @abstractmethod
    def obs(self) -> np.ndarray:
        """The observations the next actions are taken in, ``[K, E, ...]``."""

    @property
    @abstractmethod
    def target_obs(self) -> np.ndarray:
        """What the local targets are built from there, ``[K, E, ...]``: the unnormalised
        observations under ``--target-obs raw`` with ``--norm-obs``, else :attr:`obs`."""

    @abstractmethod
    def reset(self, member: int, seed: int) -> None:
        """Start new episodes for ``member``: its environment ``i`` is seeded ``seed + i``."""

    @abstractmethod
    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[list[Step | None], dict[int, str]]:
        """Step the members in ``active`` (``[K]`` bool; default all) that have not
        failed, with ``actions`` ``[K, E, ...]``.

        Returns each member's :class:`Step` (None where it was not stepped) and the
        members that failed in this step, with why.
        """

    @abstractmethod
    def normalization_state(self, member: int) -> dict[str, np.ndarray | float]:
        """``member``'s running statistics, as :func:`normalization_state` gives them."""

    @abstractmethod
    def load_normalization_state(self, member: int, state: dict) -> None:
        """Restore ``member``'s :meth:`normalization_state`."""

    @abstractmethod
    def keep(self, members: Sequence[int]) -> None:
        """Keep only ``members`` (indices, in order), closing the others' environments:
        member ``members[j]`` becomes member ``j``, its environments, episodes and
        statistics as they were (a population compacts when members end)."""

    @abstractmethod
    def close(self) -> None:
        """Close every environment."""


def _kept_failures(failed: dict[int, str], members: Sequence[int]) -> dict[int, str]:
    """``failed`` renumbered for the kept ``members``."""
    return {j: failed[k] for j, k in enumerate(members) if k in failed}


def make_population_runner(configs: list[Config], num_envs: int) -> PopulationRunner:
    """The environments of a population, member ``k`` seeded by ``configs[k]``'s seed
    through :meth:`PopulationRunner.reset`: one batched stack (:class:`BatchedRunner`), or
    one vector environment per member with ``--async-envs``."""
    if configs[0].envs.async_envs and num_envs > 1:
        return VectorEnvRunners([EnvRunner(make_vector_env(c, num_envs)) for c in configs])
    return BatchedRunner(configs[0], len(configs), num_envs)


class VectorEnvRunners(PopulationRunner):
    """One :class:`EnvRunner` per member over its own wrapped vector environment."""

    def __init__(self, runners: list[EnvRunner]) -> None:
        self.runners = runners
        self.failed = {}

    @property
    def members(self) -> int:
        return len(self.runners)

    @property
    def num_envs(self) -> int:
        return self.runners[0].num_envs

    @property
    def envs(self) -> gym.vector.VectorEnv:
        return self.runners[0].envs

    @property
    def obs(self) -> np.ndarray:
        return np.stack([runner.obs for runner in self.runners])

    @property
    def target_obs(self) -> np.ndarray:
        return np.stack([runner.target_obs for runner in self.runners])

    def reset(self, member: int, seed: int) -> None:
        self.runners[member].reset(seed)

    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[list[Step | None], dict[int, str]]:
        steps: list[Step | None] = []
        failures = {}
        for k, runner in enumerate(self.runners):
            if k in self.failed or (active is not None and not active[k]):
                steps.append(None)
                continue
            try:
                steps.append(runner.step(actions[k]))
            except EnvFailure as error:
                self.failed[k] = failures[k] = str(error)
                steps.append(None)
        return steps, failures

    def normalization_state(self, member: int) -> dict[str, np.ndarray | float]:
        return normalization_state(self.runners[member].envs)

    def load_normalization_state(self, member: int, state: dict) -> None:
        load_normalization_state(self.runners[member].envs, state)

    def keep(self, members: Sequence[int]) -> None:
        for k, runner in enumerate(self.runners):
            if k not in members:
                runner.close()
        self.runners = [self.runners[k] for k in members]
        self.failed = _kept_failures(self.failed, members)

    def close(self) -> None:
        for runner in self.runners:
            runner.close()


class MemberMeanStd:
    """Gymnasium's ``RunningMeanStd`` for each of ``K`` members at once: ``mean`` and
    ``var`` ``[K, *shape]``, ``count`` ``[K]``, updated by whole batches of members.

    Bit for bit Gymnasium's arithmetic, dtypes included: the statistics of its
    ``NormalizeObservation`` start as float32 (``single``) and turn float64 at the first
    update from float64 observations, or when restored; its counts are Python floats,
    which NumPy casts to the dtype of the array they meet. float64 ``mean``/``var`` hold
    the float32 values of ``single`` members exactly.
    """

    def __init__(self, members: int, shape: tuple[int, ...], single: bool) -> None:
        self.mean = np.zeros((members, *shape))
        self.var = np.ones((members, *shape))
        self.count = np.full(members, 1e-4)
        self.single = np.full(members, single)

    def _groups(self, members: np.ndarray
                ) -> list[tuple[np.ndarray | slice, np.ndarray, type]]:
        """``members`` ``[M]`` split by dtype: (positions in ``members``, members, dtype)."""
        single = self.single[members]
        if single.all() or not single.any():  # one dtype, the usual case: no copies
            return [(slice(None), members, np.float32 if single.all() else np.float64)]
        return [(np.flatnonzero(single), members[single], np.float32),
                (np.flatnonzero(~single), members[~single], np.float64)]

    def update(self, members: np.ndarray, batch: np.ndarray) -> None:
        """Update ``members`` ``[M]`` (indices) with their batches ``[M, n, *shape]``."""
        for where, rows, dtype in self._groups(members):
            x = batch[where]
            mean, var, count = _update_from_moments(
                self.mean[rows].astype(dtype, copy=False), self.var[rows].astype(dtype, copy=False),
                self.count[rows],
                np.mean(x, axis=1), np.var(x, axis=1), x.shape[1])
            self.mean[rows], self.var[rows], self.count[rows] = mean, var, count
            self.single[rows] = mean.dtype == np.float32

    def normalize(self, members: np.ndarray, batch: np.ndarray, epsilon: float) -> np.ndarray:
        """``(batch - mean) / sqrt(var + epsilon)`` as float32, ``[M, n, *shape]``."""
        out = np.empty(batch.shape, dtype=np.float32)
        for where, rows, dtype in self._groups(members):
            mean = self.mean[rows, None].astype(dtype, copy=False)
            var = self.var[rows, None].astype(dtype, copy=False)
            out[where] = (batch[where] - mean) / np.sqrt(var + dtype(epsilon))
        return out

    def state(self, member: int) -> tuple[np.ndarray, np.ndarray, float]:
        """``member``'s mean, var (in its dtype) and count."""
        dtype = np.float32 if self.single[member] else np.float64
        return self.mean[member].astype(dtype), self.var[member].astype(dtype), \
            float(self.count[member])

    def keep(self, members: Sequence[int]) -> None:
        """Keep only ``members``' statistics, in that order."""
        index = np.asarray(members, dtype=int)
        self.mean, self.var = self.mean[index], self.var[index]
        self.count, self.single = self.count[index], self.single[index]

    def load(self, member: int, mean: np.ndarray | float, var: np.ndarray | float,
             count: float) -> None:
        """Restore ``member``'s statistics (float64 from then on, as in Gymnasium)."""
        self.mean[member], self.var[member], self.count[member] = mean, var, count
        self.single[member] = False


def _update_from_moments(mean: np.ndarray, var: np.ndarray, count: np.ndarray,
                         batch_mean: np.ndarray, batch_var: np.ndarray, batch_count: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gymnasium's ``update_mean_var_count_from_moments`` for ``M`` members: ``mean``,
    ``var``, ``batch_mean``, ``batch_var`` ``[M, *shape]``, ``count`` ``[M]`` float64
    (cast, as Python floats are, to the dtype of the array each meets)."""
    count = count.reshape(-1, *[1] * (mean.ndim - 1))
    tot_count = count + batch_count
    delta = batch_mean - mean
    new_mean = mean + delta * batch_count / tot_count.astype(delta.dtype, copy=False)
    m_a = var * count.astype(var.dtype, copy=False)
    m_b = batch_var * batch_count
    m2 = m_a + m_b + np.square(delta) * count.astype(delta.dtype, copy=False) * batch_count / \
        tot_count.astype(delta.dtype, copy=False)
    return new_mean, m2 / tot_count.astype(m2.dtype, copy=False), tot_count.reshape(-1)


class BatchedRunner(PopulationRunner):
    """All ``K x E`` environments of a population stepped in one loop, with what
    Gymnasium's ``SyncVectorEnv`` and vector wrappers of :func:`make_vector_env` do for
    each member, vectorised over the members and bit for bit the same: next-step
    autoreset, episode statistics of the raw rewards, observation normalisation (then
    clipped to ``OBS_CLIP``), reward scaling by the running std of the discounted return
    (then clipped to ``REWARD_CLIP``), each member with its own statistics.

    ``frozen``: for evaluation, the observation statistics are only those loaded
    (:meth:`load_normalization_state`), never updated, and rewards are not scaled (as
    :func:`load_normalization_state` with ``freeze`` does to the wrapped stack).
    """

    EPSILON = 1e-8  # of Gymnasium's NormalizeObservation and NormalizeReward

    def __init__(self, config: Config, members: int, num_envs: int,
                 frozen: bool = False) -> None:
        make_env(config.env, env_kwargs=config.envs.env_kwargs).close()  # fail early, clearly
        kwargs = parse_env_kwargs(config.envs.env_kwargs)
        quiet_gymnasium()
        self.env_grid: list[list[gym.Env]] = [
            [_make(config.env, None, kwargs) for _ in range(num_envs)] for _ in range(members)]
        first = self.env_grid[0][0]
        raw_space = first.observation_space
        self.norm_obs, self.norm_reward = config.envs.norm_obs, config.envs.norm_reward
        self.frozen = frozen
        self.norm_reward &= not frozen
        self.raw_targets = self.norm_obs and config.local.target_obs == "raw"
        self.gamma = config.gamma
        space = gym.spaces.Box(-np.inf, np.inf, raw_space.shape, np.float32) \
            if self.norm_obs else raw_space
        self._spaces = EnvSpaces(space, first.action_space, num_envs)
        action_space = first.action_space
        self._bounds = (action_space.low, action_space.high) \
            if isinstance(action_space, gym.spaces.Box) else None
        self.failed = {}
        shape, k_e = raw_space.shape, (members, num_envs)
        self._was_reset = np.zeros(members, dtype=bool)
        self._raw = np.zeros((*k_e, *shape), dtype=raw_space.dtype)
        self._obs = np.zeros((*k_e, *shape), dtype=space.dtype)
        self._autoreset = np.zeros(k_e, dtype=bool)
        self._episode_returns = np.zeros(k_e)
        self._episode_lengths = np.zeros(k_e, dtype=int)
        self._discounted = np.zeros(k_e, dtype=np.float32)  # NormalizeReward's accumulator
        self.obs_rms = MemberMeanStd(members, shape, single=True)
        self.return_rms = MemberMeanStd(members, (), single=False)

    @property
    def members(self) -> int:
        return len(self.env_grid)

    @property
    def num_envs(self) -> int:
        return self._spaces.num_envs

    @property
    def envs(self) -> EnvSpaces:
        return self._spaces

    @property
    def obs(self) -> np.ndarray:
        return self._obs

    @property
    def target_obs(self) -> np.ndarray:
        return self._raw if self.raw_targets else self._obs

    def reset(self, member: int, seed: int) -> None:
        self.reset_seeded(member, [seed + i for i in range(self.num_envs)])

    def reset_seeded(self, member: int, seeds: Sequence[int]) -> None:
        """Start new episodes for ``member``, its environment ``i`` seeded ``seeds[i]``."""
        raw = self._raw.copy()
        for i, (env, seed) in enumerate(zip(self.env_grid[member], seeds, strict=True)):
            raw[member, i], _ = env.reset(seed=seed)
        self._raw = raw
        self._autoreset[member] = False
        self._episode_returns[member] = 0
        self._episode_lengths[member] = 0
        self._discounted[member] = 0
        members = np.array([member])
        obs = self._obs.copy()
        obs[member] = self._observations(members, raw[members])[0]
        self._obs = obs
        self._was_reset[member] = True

    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[list[Step | None], dict[int, str]]:
        stepping = np.ones(self.members, dtype=bool) if active is None else \
            np.array(active, dtype=bool)
        stepping[list(self.failed)] = False
        if not self._was_reset[stepping].all():
            raise RuntimeError("reset the runner before stepping it")
        members = np.flatnonzero(stepping)
        env_actions = actions if self._bounds is None else np.clip(actions, *self._bounds)
        raw, reward, terminated, truncated = self._step_envs(members, env_actions)
        autoreset = self._autoreset[members]
        episodes = self._record_episodes(members, autoreset, reward, terminated, truncated)
        obs = self._observations(members, raw)
        scaled = self._scaled_rewards(members, autoreset, reward, terminated)

        steps: list[Step | None] = [None] * self.members
        failures = {}
        finite = np.isfinite(scaled).all(axis=1)
        if np.issubdtype(obs.dtype, np.floating):
            finite &= np.isfinite(obs).all(axis=tuple(range(1, obs.ndim)))
        target_obs = self.target_obs
        for j, k in enumerate(members.tolist()):
            if finite[j]:
                steps[k] = Step(self._obs[k], target_obs[k], actions[k], scaled[j],
                                terminated[j], truncated[j], ~autoreset[j], obs[j], episodes[j])
            else:  # the member stops here, its last observations kept
                self.failed[k] = failures[k] = str(_non_finite(obs[j], scaled[j]))
        going = members[finite]
        self._raw, self._obs = self._raw.copy(), self._obs.copy()
        self._raw[going], self._obs[going] = raw[finite], obs[finite]
        self._autoreset[going] = (terminated | truncated)[finite]
        return steps, failures

    def _step_envs(self, members: np.ndarray, actions: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step (or, after an episode's end, reset) the environments of ``members``
        ``[M]`` with ``actions`` ``[K, E, ...]``; raw observations ``[M, E, ...]``,
        rewards, terminations and truncations ``[M, E]`` (zero, False where reset)."""
        shape = (len(members), self.num_envs)
        raw = np.empty((*shape, *self._raw.shape[2:]), dtype=self._raw.dtype)
        reward = np.zeros(shape)
        terminated, truncated = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        for j, k in enumerate(members):
            for i, env in enumerate(self.env_grid[k]):
                if self._autoreset[k, i]:
                    raw[j, i], _ = env.reset()
                else:
                    raw[j, i], reward[j, i], terminated[j, i], truncated[j, i], _ = \
                        env.step(actions[k, i])
        return raw, reward, terminated, truncated

    def _record_episodes(self, members: np.ndarray, autoreset: np.ndarray,
                         reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray
                         ) -> list[list[Episode]]:
        """Gymnasium's ``RecordEpisodeStatistics`` for ``members`` ``[M]`` (arrays
        ``[M, E]``): the episodes each member's environments ended in this step."""
        returns = np.where(autoreset, 0.0, self._episode_returns[members] + reward)
        lengths = np.where(autoreset, 0, self._episode_lengths[members] + 1)
        self._episode_returns[members], self._episode_lengths[members] = returns, lengths
        episodes: list[list[Episode]] = [[] for _ in members]
        for j, i in zip(*np.nonzero(terminated | truncated), strict=True):
            episodes[j].append(Episode(int(i), float(returns[j, i]), int(lengths[j, i])))
        return episodes

    def _observations(self, members: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Gymnasium's ``NormalizeObservation`` and the clip, for ``members`` ``[M]``:
        raw observations ``[M, E, ...]`` -> what the members see."""
        if not self.norm_obs:
            return raw
        if not self.frozen:
            self.obs_rms.update(members, raw)
        return np.clip(self.obs_rms.normalize(members, raw, self.EPSILON), -OBS_CLIP, OBS_CLIP)

    def _scaled_rewards(self, members: np.ndarray, autoreset: np.ndarray, reward: np.ndarray,
                        terminated: np.ndarray) -> np.ndarray:
        """Gymnasium's ``NormalizeReward`` and the clip, for ``members`` ``[M]`` (arrays
        ``[M, E]``): each environment's discounted return, except at autoreset steps,
        updates its member's return statistics, whose std scales the rewards."""
        if not self.norm_reward:
            return reward
        discounted = self._discounted[members]
        live = ~autoreset
        discounted[live] = discounted[live] * self.gamma * (1 - terminated[live]) + reward[live]
        self._discounted[members] = discounted
        if live.all():  # every environment counts: one update for all members
            self.return_rms.update(members, discounted)
        else:
            whole = live.all(axis=1)
            if whole.any():
                self.return_rms.update(members[whole], discounted[whole])
            for j in np.flatnonzero(~whole & live.any(axis=1)):
                self.return_rms.update(members[j:j + 1], discounted[j, live[j]][None])
        std = np.sqrt(self.return_rms.var[members] + self.EPSILON)
        return np.clip(reward / std[:, None], -REWARD_CLIP, REWARD_CLIP)

    def normalization_state(self, member: int) -> dict[str, np.ndarray | float]:
        state: dict[str, np.ndarray | float] = {}
        if self.norm_obs:
            mean, var, count = self.obs_rms.state(member)
            state |= {"obs_mean": mean, "obs_var": var, "obs_count": count}
        if self.norm_reward:
            mean, var, count = self.return_rms.state(member)
            state |= {"return_mean": float(mean), "return_var": float(var),
                      "return_count": count}
        return state

    def load_normalization_state(self, member: int, state: dict) -> None:
        if self.norm_obs and "obs_mean" in state:
            self.obs_rms.load(member, np.asarray(state["obs_mean"], dtype=np.float64),
                              np.asarray(state["obs_var"], dtype=np.float64),
                              float(state["obs_count"]))
        if self.norm_reward and "return_mean" in state:
            self.return_rms.load(member, float(state["return_mean"]),
                                 float(state["return_var"]), float(state["return_count"]))

    def keep(self, members: Sequence[int]) -> None:
        for k, envs in enumerate(self.env_grid):
            if k not in members:
                for env in envs:
                    env.close()
        index = np.asarray(members, dtype=int)
        self.env_grid = [self.env_grid[k] for k in members]
        for name in ("_was_reset", "_raw", "_obs", "_autoreset", "_episode_returns",
                     "_episode_lengths", "_discounted"):
            setattr(self, name, getattr(self, name)[index])
        self.obs_rms.keep(members)
        self.return_rms.keep(members)
        self.failed = _kept_failures(self.failed, members)

    def close(self) -> None:
        for envs in self.env_grid:
            for env in envs:
                env.close()
