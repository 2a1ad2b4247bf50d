"""Environments: any Gymnasium id with a flat Box observation, vectorized, normalised.

Vector environments run in Gymnasium 1.x's default next-step autoreset mode: the step
that ends an episode returns the true final observation, and the *next* call to
``step`` ignores its action and returns the reset observation with zero reward.
:class:`EnvRunner` marks that dummy transition ``valid=False`` so that algorithms can
skip it, and the final observation of a truncated episode is available for bootstrapping.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import sys
import warnings
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
        _check_finite(next_obs, reward)
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


def _check_finite(obs: np.ndarray, reward: np.ndarray) -> None:
    """Raise :class:`EnvFailure` on a non-finite observation ``[E, ...]`` or reward ``[E]``."""
    obs = np.asarray(obs)
    if np.issubdtype(obs.dtype, np.floating) and not np.isfinite(obs).all():
        index = np.argwhere(~np.isfinite(obs))[0]
        feature = int(np.ravel_multi_index(index[1:], obs.shape[1:])) if obs.ndim > 1 else 0
        raise EnvFailure(f"environment returned {_name(obs[tuple(index)])} in observation "
                         f"{feature}")
    reward = np.asarray(reward, dtype=np.float64)
    if not np.isfinite(reward).all():
        bad = reward[~np.isfinite(reward)][0]
        raise EnvFailure(f"environment returned a reward of {_name(bad)}")


class PopulationRunner:
    """The environments of a population: one :class:`EnvRunner` per member (each with its
    own normalisation statistics), observations stacked ``[K, E, ...]``.

    A member whose environment fails (:class:`EnvFailure`) stops there: :meth:`step`
    reports it and never steps it again.
    """

    def __init__(self, runners: list[EnvRunner]) -> None:
        self.runners = runners
        self.failed: dict[int, str] = {}

    @property
    def members(self) -> int:
        return len(self.runners)

    @property
    def num_envs(self) -> int:
        return self.runners[0].num_envs

    @property
    def envs(self) -> gym.vector.VectorEnv:
        """The first member's vector environment (its spaces are every member's)."""
        return self.runners[0].envs

    @property
    def obs(self) -> np.ndarray:
        return np.stack([runner.obs for runner in self.runners])

    @property
    def target_obs(self) -> np.ndarray:
        return np.stack([runner.target_obs for runner in self.runners])

    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[list[Step | None], dict[int, str]]:
        """Step the members in ``active`` (default all not failed) with ``actions`` ``[K, E, ...]``.

        Returns each member's :class:`Step` (None where it was not stepped) and the
        members that failed in this step, with why.
        """
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

    def close(self) -> None:
        for runner in self.runners:
            runner.close()
