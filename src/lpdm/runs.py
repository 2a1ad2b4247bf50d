"""One experiment, one run directory: written atomically, resumable, honest about its status.

A run directory holds

- ``config.json``: the resolved configuration;
- ``metrics.csv``: one row per finished training episode (``global_step``,
  ``episodic_return``, ``episodic_length``, then per-layer diagnostics);
- ``evaluations.csv``: one row per deterministic evaluation;
- ``summary.json``: ``status`` (``running``, ``finished`` or ``failed``), scores, timing;
- ``checkpoint.pt``: everything needed to continue, replaced atomically.

Checkpoints are taken at iteration boundaries every ``checkpoint_every`` steps, and at
each of them the training environments are reseeded from ``(seed, segment)``. An
interrupted run resumed from its last checkpoint therefore continues exactly as the
uninterrupted run would have (same rows, same weights, on the same machine): episodes in
progress at a checkpoint are cut in both. Rows written after the last checkpoint are
dropped on resume, since they are produced again.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from lpdm.algorithms import Algorithm, make_algorithm
from lpdm.config import Config, ConfigError, from_dict, resolve, to_dict
from lpdm.envs import (
    EnvRunner,
    derive_seed,
    env_spaces,
    load_normalization_state,
    make_vector_env,
    normalization_state,
)
from lpdm.evaluation import Evaluator, eval_score, final_score, max_score

CHECKPOINT_FORMAT = 2  # 2: progress records the step at which each episode ended
METRIC_COLUMNS = ("global_step", "episodic_return", "episodic_length")
EVALUATION_COLUMNS = ("global_step", "mean_return", "std_return", "min_return", "max_return",
                      "episodes")


class RunError(RuntimeError):
    """A run directory that cannot be used as asked; the message is one line for the user."""


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class RunDirectory:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def evaluations(self) -> Path:
        return self.path / "evaluations.csv"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    def read_config(self) -> Config:
        if not self.config.exists():
            raise RunError(f"{self.path} is not a run directory (no config.json)")
        return from_dict(json.loads(self.config.read_text()))

    def read_summary(self) -> dict:
        return json.loads(self.summary.read_text()) if self.summary.exists() else {}

    def read_metrics(self) -> list[dict[str, str]]:
        with self.metrics.open(newline="") as f:
            return list(csv.DictReader(f))

    def read_evaluations(self) -> list[dict[str, str]]:
        with self.evaluations.open(newline="") as f:
            return list(csv.DictReader(f))


class CsvLog:
    """Append-only CSV whose byte size is recorded in checkpoints, to truncate on resume."""

    def __init__(self, path: Path, columns: Iterable[str], keep_bytes: int | None) -> None:
        self.columns = list(columns)
        if keep_bytes is None:
            with path.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        else:
            with path.open("r+b") as f:
                f.truncate(keep_bytes)
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, self.columns, restval="", extrasaction="ignore")

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: _csv_value(v) for k, v in row.items()})

    def flush(self) -> int:
        self.file.flush()
        os.fsync(self.file.fileno())
        return self.file.tell()

    def close(self) -> None:
        self.file.close()


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


@dataclass
class Progress:
    """Counters that a checkpoint carries over."""

    global_step: int = 0
    segment: int = 0
    iterations: int = 0
    episodes: int = 0
    evaluations: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    wall_seconds: float = 0.0
    returns: list[float] = field(default_factory=list)
    return_steps: list[int] = field(default_factory=list)  # global step at each episode's end
    eval_steps: list[int] = field(default_factory=list)
    eval_means: list[float] = field(default_factory=list)


def _state_to_tensors(state: dict) -> dict:
    return {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def _state_to_numpy(state: dict) -> dict:
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def read_checkpoint(path: Path, device: str = "cpu") -> dict:
    """Load a checkpoint without unpickling arbitrary objects (``weights_only``)."""
    if not path.exists():
        raise RunError(f"{path.parent} has no checkpoint yet")
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path}: checkpoint format {checkpoint.get('format')} is not this "
                       f"lpdm's ({CHECKPOINT_FORMAT}); rerun it with the lpdm that started it")
    return checkpoint


@dataclass
class TrainedAgent:
    """A run's algorithm with its last checkpoint loaded, for evaluation."""

    config: Config
    algo: Algorithm
    normalization: dict
    global_step: int

    def close(self) -> None:
        self.algo.runner.close()


def load_agent(path: Path) -> TrainedAgent:
    """The agent of run directory ``path`` as of its last checkpoint."""
    directory = RunDirectory(Path(path))
    config = directory.read_config()
    checkpoint = read_checkpoint(directory.checkpoint, config.run.device)
    algo = make_algorithm(config, EnvRunner(make_vector_env(config, 1)))
    algo.load_state_dict(checkpoint["algorithm"])
    return TrainedAgent(config, algo, _state_to_numpy(checkpoint["normalization"]),
                        int(checkpoint["progress"]["global_step"]))


class TensorBoardLog:
    """Optional TensorBoard mirror of the CSV logs (``--tensorboard``)."""

    def __init__(self, path: Path, purge_step: int) -> None:
        writer_class = tensorboard_writer_class()
        self.writer = writer_class(str(path), purge_step=purge_step or None)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        self.writer.close()


def tensorboard_writer_class() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard extra: "
                          "pip install 'lpdm[tensorboard]'") from None
    return SummaryWriter


class Trainer:
    """Drives an :class:`Algorithm` to ``total_steps``, logging, evaluating, checkpointing."""

    def __init__(self, config: Config, directory: RunDirectory, progress_bar: bool) -> None:
        self.config = config
        self.dir = directory
        self.progress_bar = progress_bar
        torch.set_num_threads(config.run.threads)
        torch.manual_seed(config.seed)
        self.runner = EnvRunner(make_vector_env(config, config.envs.num_envs))
        self.algo: Algorithm = make_algorithm(config, self.runner)
        self.evaluator = Evaluator(config)
        self.state = Progress(next_eval=config.run.eval_every,
                              next_checkpoint=config.run.checkpoint_every)

    # ----------------------------------------------------------------- checkpoints

    def save_checkpoint(self, metrics: CsvLog, evaluations: CsvLog) -> None:
        s = self.state
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "progress": dict(vars(s)),
            "metrics_bytes": metrics.flush(),
            "evaluations_bytes": evaluations.flush(),
            "torch_rng": torch.get_rng_state(),
            "algorithm": self.algo.state_dict(),
            "normalization": _state_to_tensors(normalization_state(self.runner.envs)),
        }
        tmp = self.dir.checkpoint.with_name("checkpoint.pt.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, self.dir.checkpoint)

    def load_checkpoint(self) -> dict:
        checkpoint = read_checkpoint(self.dir.checkpoint, self.config.run.device)
        self.state = Progress(**checkpoint["progress"])
        torch.set_rng_state(checkpoint["torch_rng"])
        self.algo.load_state_dict(checkpoint["algorithm"])
        load_normalization_state(self.runner.envs, _state_to_numpy(checkpoint["normalization"]))
        return checkpoint

    # ----------------------------------------------------------------- loop

    def summary(self, status: str, error: str | None = None) -> dict:
        s, c = self.state, self.config

        def per_iteration(seconds: float) -> float | None:
            return round(seconds / s.iterations, 6) if s.iterations else None

        data = {
            "status": status,
            "env": c.env,
            "algo": c.algo,
            "learner": c.learner,
            "seed": c.seed,
            "steps": s.global_step,
            "total_steps": c.total_steps,
            "final_score": _finite_or_none(final_score(s.return_steps, s.returns,
                                                       c.total_steps)),
            "max_score": _finite_or_none(max_score(s.returns)),
            "eval_score": _finite_or_none(eval_score(s.eval_steps, s.eval_means, c.total_steps)),
            "episodes": s.episodes,
            "evaluations": s.evaluations,
            "iterations": s.iterations,
            "wall_seconds": round(s.wall_seconds, 3),
            "update_seconds": round(self.algo.update_seconds, 3),
            "seconds_per_iteration": per_iteration(s.wall_seconds),
            "update_seconds_per_iteration": per_iteration(self.algo.update_seconds),
        }
        if error:
            data["error"] = error
        return data

    def evaluate(self, evaluations: CsvLog) -> None:
        s = self.state
        returns = self.evaluator.run(self.algo.act, normalization_state(self.runner.envs),
                                     self.config.run.eval_episodes,
                                     derive_seed(self.config.seed, 1_000_000 + s.evaluations))
        s.evaluations += 1
        if returns.size == 0:
            return
        s.eval_steps.append(s.global_step)
        s.eval_means.append(float(returns.mean()))
        evaluations.write({"global_step": s.global_step, "mean_return": float(returns.mean()),
                           "std_return": float(returns.std()), "min_return": float(returns.min()),
                           "max_return": float(returns.max()), "episodes": int(returns.size)})

    def run(self, resume: bool) -> dict:
        c = self.config
        metric_columns = [*METRIC_COLUMNS, *self.algo.diagnostic_names()]
        checkpoint = self.load_checkpoint() if resume and self.dir.checkpoint.exists() else None
        metrics = CsvLog(self.dir.metrics, metric_columns,
                         checkpoint["metrics_bytes"] if checkpoint else None)
        evaluations = CsvLog(self.dir.evaluations, EVALUATION_COLUMNS,
                             checkpoint["evaluations_bytes"] if checkpoint else None)
        s = self.state
        board = (TensorBoardLog(self.dir.path / "tensorboard", s.global_step)
                 if c.run.tensorboard else None)
        self.runner.reset(derive_seed(c.seed, s.segment))
        write_json_atomic(self.dir.summary, self.summary("running"))
        started = time.perf_counter() - s.wall_seconds
        recent = deque(s.returns[-10:], maxlen=10)
        bar = tqdm(total=c.total_steps, initial=s.global_step, unit="step", dynamic_ncols=True,
                   disable=not self.progress_bar, desc=f"{c.env} {c.algo} {c.learner} s{c.seed}")
        try:
            while s.global_step < c.total_steps:
                iteration = self.algo.iterate(s.global_step, c.total_steps - s.global_step)
                s.global_step += iteration.steps
                s.iterations += 1
                diagnostics = self.algo.diagnostics()
                for step, episodic_return, length in iteration.episodes:
                    metrics.write({"global_step": step, "episodic_return": episodic_return,
                                   "episodic_length": length, **diagnostics})
                    s.returns.append(episodic_return)
                    s.return_steps.append(step)
                    recent.append(episodic_return)
                s.episodes += len(iteration.episodes)
                if board:
                    for step, episodic_return, length in iteration.episodes:
                        board.scalars("charts", {"episodic_return": episodic_return,
                                                 "episodic_length": length}, step)
                    board.scalars("losses", iteration.stats, s.global_step)
                    board.scalars("diagnostics", diagnostics, s.global_step)
                    board.scalars("charts", {"steps_per_second": s.global_step / max(
                        time.perf_counter() - started, 1e-9)}, s.global_step)
                bar.update(iteration.steps)
                if recent:
                    bar.set_postfix(ret=f"{np.mean(recent):.1f}", refresh=False)
                done = s.global_step >= c.total_steps
                if s.global_step >= s.next_eval or done:
                    self.evaluate(evaluations)
                    if board and s.eval_steps and s.eval_steps[-1] == s.global_step:
                        board.scalars("eval", {"mean_return": s.eval_means[-1]}, s.global_step)
                    while s.next_eval <= s.global_step:
                        s.next_eval += c.run.eval_every
                if s.global_step >= s.next_checkpoint or done:
                    while s.next_checkpoint <= s.global_step:
                        s.next_checkpoint += c.run.checkpoint_every
                    s.segment += 1
                    s.wall_seconds = time.perf_counter() - started
                    self.save_checkpoint(metrics, evaluations)
                    write_json_atomic(self.dir.summary, self.summary("running"))
                    if not done:
                        self.runner.reset(derive_seed(c.seed, s.segment))
            s.wall_seconds = time.perf_counter() - started
            summary = self.summary("finished")
        except KeyboardInterrupt:
            s.wall_seconds = time.perf_counter() - started
            write_json_atomic(self.dir.summary, self.summary(
                "failed", "interrupted; continue with: lpdm train --resume " + str(self.dir.path)))
            raise
        except Exception as error:
            s.wall_seconds = time.perf_counter() - started
            message = f"{type(error).__name__}: {error}"
            write_json_atomic(self.dir.summary, self.summary("failed", message))
            raise
        finally:
            bar.close()
            if board:
                board.close()
            metrics.close()
            evaluations.close()
            self.runner.close()
            self.evaluator.close()
        write_json_atomic(self.dir.summary, summary)
        return summary


def prepare_run(config: Config, out: Path) -> Config:
    """Create ``out`` with the resolved ``config.json``; refuses to overwrite a run."""
    directory = RunDirectory(out)
    if directory.config.exists():
        raise RunError(f"{out} already holds a run; continue it with --resume {out}, "
                       "or choose another --out")
    _, action_space = env_spaces(config.env)
    resolved = resolve(config, isinstance(action_space, gym.spaces.Discrete))
    if resolved.run.tensorboard:
        tensorboard_writer_class()
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory.config, to_dict(resolved))
    return resolved


def train(config: Config | None, out: Path, resume: bool = False,
          progress_bar: bool = True) -> dict:
    """Train into run directory ``out`` (a fresh run, or ``resume`` an interrupted one).

    Returns the final ``summary.json`` contents.
    """
    out = Path(out)
    directory = RunDirectory(out)
    if resume:
        config = directory.read_config()
        if directory.read_summary().get("status") == "finished":
            return directory.read_summary()
    else:
        if config is None:
            raise ConfigError("a configuration is needed for a new run")
        config = prepare_run(config, out)
    trainer = Trainer(config, directory, progress_bar)
    return trainer.run(resume=resume)
