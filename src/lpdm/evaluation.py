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
    """Deterministic episodes of each member, each on its own environments with its own
    (frozen) normalisation; the members evaluated together step in lockstep, so that one
    batched forward pass chooses all their actions.

    A member's episodes run side by side, one environment each, on one batched stack for
    the population (:class:`BatchedRunner`, frozen): episode ``j`` starts from the seed it
    would have one after another, so the returns are the same (``tests/test_resume.py``).
    With ``video_dir`` each member instead has one wrapped vector environment, which
    records its episodes one after another.
    """

    def __init__(self, config: Config, members: int = 1, video_dir: str | None = None) -> None:
        self.config = config
        self.members = members
        self.video = video_dir is not None
        self.stack: BatchedRunner | None = None  # built for the number of episodes asked
        self.runners: list[EnvRunner] = []
        if self.video:
            _check_video_support()
            self.runners = [EnvRunner(make_vector_env(config, 1, video_dir=video_dir))
                            for _ in range(members)]

    def run(self, act: Callable[[np.ndarray], np.ndarray], normalizations: Sequence[dict],
            episodes: int, seeds: Sequence[int | None]) -> list[np.ndarray]:
        """Episode returns ``[episodes]`` of each member whose seed is not None.

        ``act`` maps observations ``[K, E, ...]`` to actions ``[K, E, ...]``; member ``k``'s
        episode ``j`` is seeded by ``(seeds[k], j)``.
        """
        members = [k for k, seed in enumerate(seeds) if seed is not None]
        if not members or episodes == 0:
            return [np.zeros(0) for _ in seeds]
        if self.video:
            return self._run_recorded(act, normalizations, episodes, seeds, members)
        if self.stack is None or self.stack.num_envs != episodes:
            if self.stack is not None:
                self.stack.close()
            self.stack = BatchedRunner(self.config, self.members, episodes, frozen=True)
        returns = np.full((len(seeds), episodes), np.nan)
        for k in members:
            self.stack.load_normalization_state(k, normalizations[k])
            self.stack.reset_seeded(k, [derive_seed(seeds[k], j) for j in range(episodes)])
        running = np.zeros(len(seeds), dtype=bool)
        running[members] = True
        while running.any():
            steps, failures = self.stack.step(act(self.stack.obs), running)
            if failures:
                raise EnvFailure(next(iter(failures.values())))
            for k in np.flatnonzero(running):
                for episode in steps[k].episodes:  # an environment's first episode counts
                    if np.isnan(returns[k, episode.env_index]):
                        returns[k, episode.env_index] = episode.episodic_return
                running[k] = np.isnan(returns[k]).any()
        return [returns[k] if k in members else np.zeros(0) for k in range(len(seeds))]

    def _run_recorded(self, act: Callable[[np.ndarray], np.ndarray],
                      normalizations: Sequence[dict], episodes: int,
                      seeds: Sequence[int | None], members: list[int]) -> list[np.ndarray]:
        """:meth:`run` on each member's wrapped vector environment, episodes one after
        another (what ``--video`` records)."""
        returns: list[list[float]] = [[] for _ in seeds]
        for k in members:
            load_normalization_state(self.runners[k].envs, normalizations[k], freeze=True)
            self._reset_recorded(k, derive_seed(seeds[k], 0))
        running = list(members)
        while running:
            blank = np.zeros_like(self.runners[running[0]].obs)
            actions = act(np.stack([runner.obs if runner.obs is not None else blank
                                    for runner in self.runners]))
            for k in list(running):
                step = self.runners[k].step(actions[k])
                if step.episodes:
                    returns[k].append(step.episodes[0].episodic_return)
                    if len(returns[k]) == episodes:
                        running.remove(k)
                    else:
                        self._reset_recorded(k, derive_seed(seeds[k], len(returns[k])))
        return [np.asarray(r, dtype=np.float64) for r in returns]

    def _reset_recorded(self, member: int, seed: int) -> None:
        try:
            self.runners[member].reset(seed)
        except Exception as error:  # rendering backends fail in many ways
            raise VideoError(f"cannot render {self.config.env}: {type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}"
                             f"{_render_hint(self.config.env)}") from None

    def keep(self, members: Sequence[int]) -> None:
        """Keep only ``members``' environments, in that order (the population compacted)."""
        self.members = len(members)
        if self.stack is not None:
            self.stack.keep(members)
        if self.runners:
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
