"""Deterministic evaluation episodes (``eval_score``, docs/design.md §5)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from lpdm.config import Config
from lpdm.envs import (
    BatchedRunner,
    EnvFailure,
    EnvRunner,
    derive_seed,
    load_normalization_state,
    make_vector_env,
)


class VideoError(RuntimeError):
    """Episodes cannot be recorded here; the message says why, in one line."""


class Evaluator:
    """Deterministic episodes of each member, each on its own environment with its own
    (frozen) normalisation; the members evaluated together step in lockstep, so that one
    batched forward pass chooses all their actions.

    The members' environments are one batched stack (:class:`BatchedRunner`, frozen),
    except with ``video_dir``: then each member has its own wrapped vector environment,
    which records its episodes. Both give the same returns (``tests/test_resume.py``).
    """

    def __init__(self, config: Config, members: int = 1, video_dir: str | None = None) -> None:
        self.config = config
        self.video = video_dir is not None
        self.stack: BatchedRunner | None = None
        self.runners: list[EnvRunner] = []
        if self.video:
            _check_video_support()
            self.runners = [EnvRunner(make_vector_env(config, 1, video_dir=video_dir))
                            for _ in range(members)]
        else:
            self.stack = BatchedRunner(config, members, 1, frozen=True)

    def run(self, act: Callable[[np.ndarray], np.ndarray], normalizations: Sequence[dict],
            episodes: int, seeds: Sequence[int | None]) -> list[np.ndarray]:
        """Episode returns ``[episodes]`` of each member whose seed is not None.

        ``act`` maps observations ``[K, 1, ...]`` to actions ``[K, 1, ...]``; member ``k``'s
        episode ``j`` is seeded by ``(seeds[k], j)``.
        """
        members = [k for k, seed in enumerate(seeds) if seed is not None]
        returns: list[list[float]] = [[] for _ in seeds]
        for k in members:
            self._load(k, normalizations[k])
            if episodes:
                self._reset(k, derive_seed(seeds[k], 0))
        running = [k for k in members if episodes]
        while running:
            ended = self._step(act(self._observations(running)), running)
            for k, episodic_return in ended.items():
                returns[k].append(episodic_return)
                if len(returns[k]) == episodes:
                    running.remove(k)
                else:
                    self._reset(k, derive_seed(seeds[k], len(returns[k])))
        return [np.asarray(r, dtype=np.float64) for r in returns]

    def _load(self, member: int, normalization: dict) -> None:
        if self.stack is not None:
            self.stack.load_normalization_state(member, normalization)
        else:
            load_normalization_state(self.runners[member].envs, normalization, freeze=True)

    def _observations(self, running: list[int]) -> np.ndarray:
        """``[K, 1, ...]``: each member's current observation (zeros for one never reset)."""
        if self.stack is not None:
            return self.stack.obs
        blank = np.zeros_like(self.runners[running[0]].obs)
        return np.stack([runner.obs if runner.obs is not None else blank
                         for runner in self.runners])

    def _step(self, actions: np.ndarray, running: list[int]) -> dict[int, float]:
        """Step the ``running`` members; the return of each episode that ended, by member."""
        if self.stack is None:
            ended = {}
            for k in running:
                step = self.runners[k].step(actions[k])
                if step.episodes:
                    ended[k] = step.episodes[0].episodic_return
            return ended
        active = np.zeros(self.stack.members, dtype=bool)
        active[running] = True
        steps, failures = self.stack.step(actions, active)
        if failures:
            raise EnvFailure(next(iter(failures.values())))
        return {k: steps[k].episodes[0].episodic_return for k in running
                if steps[k] is not None and steps[k].episodes}

    def _reset(self, member: int, seed: int) -> None:
        if not self.video:
            self.stack.reset(member, seed)
            return
        try:
            self.runners[member].reset(seed)
        except Exception as error:  # rendering backends fail in many ways
            raise VideoError(f"cannot render {self.config.env}: {type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}"
                             f"{_render_hint(self.config.env)}") from None

    def keep(self, members: Sequence[int]) -> None:
        """Keep only ``members``' environments, in that order (the population compacted)."""
        if self.stack is not None:
            self.stack.keep(members)
            return
        for k, runner in enumerate(self.runners):
            if k not in members:
                runner.close()
        self.runners = [self.runners[k] for k in members]

    def close(self) -> None:
        if self.stack is not None:
            self.stack.close()
        for runner in self.runners:
            runner.close()


def _check_video_support() -> None:
    # pygame-rendered environments need no window: keep SDL off any display or sound device
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    try:
        import moviepy  # noqa: F401  (Gymnasium's RecordVideo writes MP4 with it)
    except ImportError:
        raise VideoError("--video needs moviepy: pip install 'lpdm[video]'") from None


def _render_hint(env_id: str) -> str:
    import gymnasium as gym

    entry = str(gym.spec(env_id).entry_point)
    if "mujoco" in entry:
        return ("; MuJoCo renders through OpenGL: on a machine without a display set "
                "MUJOCO_GL=egl (GPU) or MUJOCO_GL=osmesa (with the OSMesa library installed)")
    return ""
