"""One experiment, one run directory: written atomically, resumable, honest about its status.

A run directory holds

- ``config.json``: the resolved configuration;
- ``metrics.csv``: one row per finished training episode (``global_step``,
  ``episodic_return``, ``episodic_length``, then per-layer diagnostics);
- ``evaluations.csv``: one row per deterministic evaluation;
- ``summary.json``: ``status`` (``running``, ``finished`` or ``failed``), scores, timing;
- ``checkpoint.pt``: everything needed to continue, replaced atomically; the one before it
  is kept as ``checkpoint.prev.pt``, so that a run whose latest checkpoint is damaged
  resumes from the one before.

Runs are trained as populations (:class:`Trainer`): the members, one run directory each,
share one process and batched networks but nothing else. A solo run is a population of
one. Each member checkpoints on its own schedule, at iteration boundaries every
``checkpoint_every`` of its steps, and at each checkpoint its training environments are
reseeded from ``(seed, segment)``; its checkpoint holds its own state only. An interrupted
member resumed from its last checkpoint therefore continues exactly as the uninterrupted
run would have (same rows, same weights, on the same machine), alone or in any population:
episodes in progress at a checkpoint are cut in both. Rows written after the last
checkpoint are dropped on resume, since they are produced again.

A member that fails (its environment returns NaN, a loss or a weight is not finite) stops
alone: its summary says ``failed`` with the cause, the other members go on.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from lpdm.algorithms import Algorithm, Iteration, make_algorithm
from lpdm.config import Config, ConfigError, resolve, to_dict
from lpdm.envs import PopulationRunner, derive_seed, env_spaces, make_population_runner
from lpdm.evaluation import Evaluator
from lpdm.networks import seeded_generators
from lpdm.rundir import RunDirectory, RunError, write_json_atomic
from lpdm.scores import eval_score, final_score, max_score

CHECKPOINT_FORMAT = 3  # 3: one member's state of a population (member dimension first)
METRIC_COLUMNS = ("global_step", "episodic_return", "episodic_length")
EVALUATION_COLUMNS = ("global_step", "mean_return", "std_return", "min_return", "max_return",
                      "episodes")


class CsvLog:
    """Append-only CSV whose byte size is recorded in checkpoints, to truncate on resume.
    Each row reaches the file as it is written (``tail -f`` follows a long run); rows are
    made durable (fsync) at checkpoints."""

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
        self.file.flush()

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
    update_seconds: float = 0.0
    returns: list[float] = field(default_factory=list)
    return_steps: list[int] = field(default_factory=list)  # global step at each episode's end
    eval_steps: list[int] = field(default_factory=list)
    eval_means: list[float] = field(default_factory=list)


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _state_to_tensors(state: dict) -> dict:
    return {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def _state_to_numpy(state: dict) -> dict:
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def _load_checkpoint(path: Path, device: str) -> dict:
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path}: checkpoint format {checkpoint.get('format')} is not this "
                       f"lpdm's ({CHECKPOINT_FORMAT}); rerun it with the lpdm that started it")
    return checkpoint


def _why(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0].strip()


def read_checkpoint(path: Path, device: str = "cpu") -> dict:
    """Load a run's latest checkpoint without unpickling arbitrary objects (``weights_only``);
    where it is damaged (a crash while it was written, a full disk), the one before it,
    saying so on stderr."""
    if not path.exists():
        raise RunError(f"{path.parent} has no checkpoint yet")
    try:
        return _load_checkpoint(path, device)
    except RunError:
        raise
    except Exception as error:  # torch.load fails in many ways on a truncated file
        damaged = f"{path} is damaged ({_why(error)})"
    previous = RunDirectory(path.parent).previous_checkpoint
    if not previous.exists():
        raise RunError(f"{damaged}, and there is no earlier checkpoint; start the run "
                       "again") from None
    try:
        checkpoint = _load_checkpoint(previous, device)
    except RunError:
        raise
    except Exception as error:
        raise RunError(f"{damaged}, and so is {previous.name} ({_why(error)}); start the run "
                       "again") from None
    step = checkpoint["progress"]["global_step"]
    print(f"lpdm: {damaged}; resuming from the checkpoint before it ({previous.name}, step "
          f"{step})", file=sys.stderr, flush=True)
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


def make_population(configs: list[Config], device_envs: int | None = None
                    ) -> tuple[Algorithm, list[torch.Generator]]:
    """A fresh population: member ``k`` has ``configs[k]``'s seed and environments.

    ``device_envs``: environments per member (default the configuration's).
    """
    generators = seeded_generators([c.seed for c in configs])
    runner = make_population_runner(configs, device_envs or configs[0].envs.num_envs)
    return make_algorithm(configs[0], runner, generators), generators


def load_agent(path: Path) -> TrainedAgent:
    """The agent of run directory ``path`` as of its last checkpoint (a population of one)."""
    directory = RunDirectory(Path(path))
    config = directory.read_config()
    checkpoint = read_checkpoint(directory.checkpoint, config.run.device)
    algo, _ = make_population([config], device_envs=1)
    algo.load_member_states([checkpoint["algorithm"]])
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


@dataclass
class Member:
    """One member of a population: its configuration, run directory, counters and logs."""

    config: Config
    dir: RunDirectory
    state: Progress
    checkpoint: dict | None = None  # loaded on resume
    active: bool = True  # False once done (finished or failed): no longer computed
    metrics: CsvLog | None = None
    evaluations: CsvLog | None = None
    board: TensorBoardLog | None = None

    @property
    def done(self) -> bool:
        return self.state.global_step >= self.config.total_steps

    def open_logs(self, metric_columns: list[str]) -> None:
        c = self.checkpoint
        self.metrics = CsvLog(self.dir.metrics, metric_columns, c["metrics_bytes"] if c else None)
        self.evaluations = CsvLog(self.dir.evaluations, EVALUATION_COLUMNS,
                                  c["evaluations_bytes"] if c else None)
        if self.config.run.tensorboard:
            self.board = TensorBoardLog(self.dir.path / "tensorboard", self.state.global_step)

    def close_logs(self) -> None:
        for log in (self.metrics, self.evaluations, self.board):
            if log is not None:
                log.close()
        self.metrics = self.evaluations = self.board = None

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
            "update_seconds": round(s.update_seconds, 3),
            "seconds_per_iteration": per_iteration(s.wall_seconds),
            "update_seconds_per_iteration": per_iteration(s.update_seconds),
        }
        if error:
            data["error"] = error
        return data

    def write_summary(self, status: str, error: str | None = None) -> dict:
        summary = self.summary(status, error)
        write_json_atomic(self.dir.summary, summary)
        return summary


class Trainer:
    """Drives a population of members to their ``total_steps``: logging, evaluating and
    checkpointing each member on its own schedule.

    ``configs`` differ only in their seeds; ``directories`` are the members' run
    directories. The algorithm holds the members still training (:attr:`live`, member
    indices in the algorithm's order): when members end (finished or failed) the
    population compacts to the others, so that a member left alone runs at the cost of a
    solo run, never at the cost of the whole population (docs/design.md §2.3).
    """

    def __init__(self, configs: list[Config], directories: list[RunDirectory],
                 progress_bar: bool, resume: bool = False, inert: list[bool] | None = None,
                 on_end: Callable[[int, dict], None] | None = None,
                 should_stop: Callable[[list[Progress]], str | None] | None = None) -> None:
        self.config = configs[0]
        self.progress_bar = progress_bar
        self.on_end = on_end
        self.should_stop = should_stop
        torch.set_num_threads(self.config.run.threads)
        self.members: list[Member] = []
        self.configs = configs
        for k, (config, directory) in enumerate(zip(configs, directories, strict=True)):
            if (inert and inert[k]) or (resume and directory.read_summary().get("status")
                                        == "finished"):
                member = Member(config, directory, Progress(), None)
                member.active = False
                self.members.append(member)
                continue
            checkpoint = (read_checkpoint(directory.checkpoint, config.run.device)
                          if resume and directory.checkpoint.exists() else None)
            state = (Progress(**checkpoint["progress"]) if checkpoint else
                     Progress(next_eval=config.run.eval_every,
                              next_checkpoint=config.run.checkpoint_every))
            self.members.append(Member(config, directory, state, checkpoint))
        # the members that train, in the algorithm's order (all of them if none does: the
        # algorithm then only stands by)
        self.live = self.active or list(range(len(configs)))
        self.algo, _ = make_population([configs[k] for k in self.live])
        fresh = self.algo.member_states(range(len(self.live)))
        self.algo.load_member_states([
            self.members[k].checkpoint["algorithm"] if self.members[k].checkpoint else fresh[j]
            for j, k in enumerate(self.live)])
        for j, k in enumerate(self.live):
            if self.members[k].checkpoint:
                self.runner.load_normalization_state(
                    j, _state_to_numpy(self.members[k].checkpoint["normalization"]))
        fresh_members = [j for j, k in enumerate(self.live) if self.members[k].active and
                         self.members[k].checkpoint is None and configs[k].network.init_trunk]
        if fresh_members:
            load_initial_trunks(self.algo, {j: configs[self.live[j]] for j in fresh_members})
        self.evaluator = Evaluator(self.config, len(self.live))

    @property
    def runner(self) -> PopulationRunner:
        return self.algo.runner

    @property
    def active(self) -> list[int]:
        return [k for k, m in enumerate(self.members) if m.active]

    def slot(self, member: int) -> int:
        """Where member ``member`` (an index of :attr:`members`) is in the algorithm."""
        return self.live.index(member)

    def compact(self) -> None:
        """Rebuild the algorithm, its environments and the evaluator for the active members
        only, each member's state, environments and statistics as they were (the members
        that ended keep their files; they are no longer computed).

        A member's numbers change at most by float rounding (docs/design.md §2.3)."""
        active = self.active
        if not active or active == self.live:
            return
        keep = [self.slot(k) for k in active]
        states = self.algo.member_states(keep)
        runner = self.algo.runner
        runner.keep(keep)
        self.algo = make_algorithm(self.configs[active[0]], runner,
                                   seeded_generators([self.configs[k].seed for k in active]))
        self.algo.load_member_states(states)
        self.evaluator.keep(keep)
        self.live = active

    # ----------------------------------------------------------------- checkpoints

    def save_checkpoint(self, slot: int) -> None:
        """Member ``slot``'s checkpoint: its own state only, written atomically."""
        member = self.members[slot]
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "progress": dict(vars(member.state)),
            "metrics_bytes": member.metrics.flush(),
            "evaluations_bytes": member.evaluations.flush(),
            "algorithm": self.algo.member_state(self.slot(slot)),
            "normalization": _state_to_tensors(
                self.runner.normalization_state(self.slot(slot))),
        }
        tmp = member.dir.checkpoint.with_name("checkpoint.pt.tmp")
        torch.save(checkpoint, tmp)
        if member.dir.checkpoint.exists():  # kept: a damaged latest resumes from it
            os.replace(member.dir.checkpoint, member.dir.previous_checkpoint)
        os.replace(tmp, member.dir.checkpoint)

    # ----------------------------------------------------------------- loop

    def evaluate(self, slots: list[int]) -> None:
        """Deterministic evaluation of the members at ``slots``, together."""
        seeds: list[int | None] = [None] * len(self.live)
        for slot in slots:
            member = self.members[slot]
            seeds[self.slot(slot)] = derive_seed(member.config.seed,
                                                 1_000_000 + member.state.evaluations)
        returns = self.evaluator.run(self.algo.act,
                                     [self.runner.normalization_state(j)
                                      for j in range(len(self.live))],
                                     self.config.run.eval_episodes, seeds)
        for slot in slots:
            member, result = self.members[slot], returns[self.slot(slot)]
            s = member.state
            s.evaluations += 1
            if result.size == 0:
                continue
            s.eval_steps.append(s.global_step)
            s.eval_means.append(float(result.mean()))
            member.evaluations.write({
                "global_step": s.global_step, "mean_return": float(result.mean()),
                "std_return": float(result.std()), "min_return": float(result.min()),
                "max_return": float(result.max()), "episodes": int(result.size)})
            if member.board:
                member.board.scalars("eval", {"mean_return": s.eval_means[-1]}, s.global_step)

    def _record(self, slot: int, iteration: Iteration, seconds: float) -> None:
        member = self.members[slot]
        s = member.state
        s.global_step += iteration.steps
        s.iterations += 1
        s.wall_seconds += seconds
        s.update_seconds += self.algo.update_seconds
        diagnostics = self.algo.diagnostics(self.slot(slot))
        for step, episodic_return, length in iteration.episodes:
            member.metrics.write({"global_step": step, "episodic_return": episodic_return,
                                  "episodic_length": length, **diagnostics})
            s.returns.append(episodic_return)
            s.return_steps.append(step)
        s.episodes += len(iteration.episodes)
        if member.board:
            for step, episodic_return, length in iteration.episodes:
                member.board.scalars("charts", {"episodic_return": episodic_return,
                                                "episodic_length": length}, step)
            member.board.scalars("losses", iteration.stats, s.global_step)
            member.board.scalars("diagnostics", diagnostics, s.global_step)
            member.board.scalars("charts", {"steps_per_second": s.global_step / max(
                s.wall_seconds, 1e-9)}, s.global_step)

    def _checkpoint_if_due(self, slot: int) -> None:
        member, s = self.members[slot], self.members[slot].state
        c = member.config
        if s.global_step >= s.next_checkpoint or member.done:
            while s.next_checkpoint <= s.global_step:
                s.next_checkpoint += c.run.checkpoint_every
            s.segment += 1
            self.save_checkpoint(slot)
            member.write_summary("running")
            if not member.done:
                self.runner.reset(self.slot(slot), derive_seed(c.seed, s.segment))

    def run(self) -> list[dict]:
        """Train every member to its end; returns their final summaries, in order."""
        metric_columns = [*METRIC_COLUMNS, *self.algo.diagnostic_names()]
        results: dict[int, dict] = {}
        bar = tqdm(total=sum(m.config.total_steps for m in self.members),
                   initial=sum(m.state.global_step for m in self.members), unit="step",
                   dynamic_ncols=True, disable=not self.progress_bar, desc=self._label(),
                   # into a log file (nohup), a line a minute rather than ten a second
                   mininterval=0.1 if sys.stderr.isatty() else 60.0)
        try:  # from the first "running" on, an interrupt marks the members interrupted
            for slot, member in enumerate(self.members):
                if not member.active:  # inert from the start: its files are not ours to touch
                    results[slot] = member.dir.read_summary()
                    continue
                member.open_logs(metric_columns)
                self.runner.reset(self.slot(slot), derive_seed(member.config.seed,
                                                               member.state.segment))
                member.write_summary("running")
            self._end_members(results, bar)
            while self.active:
                active = self.active
                live = [self.members[k] for k in self.live]
                started = time.perf_counter()
                iterations = self.algo.iterate(
                    [m.state.global_step for m in live],
                    [m.config.total_steps - m.state.global_step if m.active else 0
                     for m in live])
                self.algo.check_members()
                seconds = time.perf_counter() - started
                for slot in active:
                    self._record(slot, iterations[self.slot(slot)], seconds)
                    bar.update(iterations[self.slot(slot)].steps)
                recent = [r for k in active for r in self.members[k].state.returns[-10:]]
                if recent:
                    bar.set_postfix(ret=f"{np.mean(recent):.1f}", refresh=False)
                healthy = [k for k in active if self.slot(k) not in self.algo.failures]
                due = [k for k in healthy if self.members[k].state.global_step >=
                       self.members[k].state.next_eval or self.members[k].done]
                if due:
                    self.evaluate(due)
                    for k in due:
                        s = self.members[k].state
                        while s.next_eval <= s.global_step:
                            s.next_eval += self.members[k].config.run.eval_every
                for slot in healthy:
                    self._checkpoint_if_due(slot)
                self._end_members(results, bar)
                self.compact()
                if self.should_stop and (why := self.should_stop([m.state for m in
                                                                   self.members])):
                    self._stop_members(results, why)
        except KeyboardInterrupt:
            for member in self._running():
                member.write_summary("failed", "interrupted; continue with: lpdm train "
                                     f"--resume {_resume_target(member.dir.path)}")
            raise
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            for member in self._running():
                member.write_summary("failed", message)
            raise
        finally:
            bar.close()
            for member in self.members:
                member.close_logs()
            self.algo.runner.close()
            self.evaluator.close()
        return [results[k] for k in range(len(self.members))]

    def _stop_members(self, results: dict[int, dict], why: str) -> None:
        """End every running member now, as failed with ``why`` (a tuner pruned them)."""
        for slot in self.active:
            member = self.members[slot]
            results[slot] = member.write_summary("failed", why)
            member.active = False
            member.close_logs()

    def _running(self) -> list[Member]:
        return [self.members[k] for k in self.active]

    def _end_members(self, results: dict[int, dict], bar: tqdm) -> None:
        """Write the summaries of the members that finished or failed; they stop training."""
        for slot in self.active:
            member = self.members[slot]
            if self.slot(slot) in self.algo.failures:
                error = self.algo.failures[self.slot(slot)]
                results[slot] = member.write_summary("failed", error)
                bar.write(f"{member.dir.path}: failed: {error}")
                self.algo.retire(self.slot(slot))
            elif member.done:
                results[slot] = member.write_summary("finished")
            else:
                continue
            member.active = False
            member.close_logs()
            if self.on_end:
                self.on_end(slot, results[slot])
        bar.set_description(self._label(), refresh=False)

    def _label(self) -> str:
        c = self.config
        seeds = ",".join(str(self.members[k].config.seed) for k in self.active)
        return f"{c.env} {c.algo} {c.learner} s{seeds}"


def load_initial_trunks(algo: Algorithm, members: dict[int, Config]) -> None:
    """``--init-trunk``: copy each member's trunks from its source run's last checkpoint (the
    source's member with the same seed when the source is a directory of members)."""
    from lpdm.algorithms import NETWORK_NAMES

    names = tuple(n.name for n in algo.networks)
    for slot, config in members.items():
        source = Path(config.network.init_trunk)
        if is_population_dir(source):
            source = member_dir(source, config.seed)
        directory = RunDirectory(source)
        source_config = directory.read_config()
        if NETWORK_NAMES[source_config.algo] != names:
            theirs = ", ".join(NETWORK_NAMES[source_config.algo])
            raise RunError(f"--init-trunk: {source} trains {theirs} ({source_config.algo}), "
                           f"this run {', '.join(names)} ({config.algo})")
        saved = read_checkpoint(directory.checkpoint)["algorithm"]["networks"]
        with torch.no_grad():
            for i, network in enumerate(algo.networks):
                params = dict(network.trunk.named_parameters())
                if not params:
                    raise RunError(f"--init-trunk: a {config.learner} learner has no trunk")
                for name, param in params.items():
                    key = f"{i}.trunk.{name}"
                    if key not in saved or saved[key].shape[1:] != param.shape[1:]:
                        theirs = list(saved[key].shape[1:]) if key in saved else "none"
                        raise RunError(f"--init-trunk: {source}'s {network.name} trunk "
                                       f"{name} is {theirs}, this run's {list(param.shape[1:])}")
                    param[slot] = saved[key][0].to(param.device)
    chosen = torch.zeros(algo.members, dtype=torch.bool)
    chosen[list(members)] = True
    algo.weights_loaded(chosen)


def _resume_target(path: Path) -> Path:
    """The directory to resume: a population's (the parent of ``sSEED`` members) or the run's."""
    return path.parent if is_population_dir(path.parent) else path


def prepare_run(config: Config, out: Path) -> Config:
    """Create ``out`` with the resolved ``config.json``; refuses to overwrite a run."""
    directory = RunDirectory(out)
    if directory.config.exists():
        raise RunError(f"{out} already holds a run; continue it with --resume {out}, "
                       "or choose another --out")
    observation_space, action_space = env_spaces(config.env, config.envs.env_kwargs)
    resolved = resolve(config, isinstance(action_space, gym.spaces.Discrete),
                       tuple(observation_space.shape))
    if resolved.run.tensorboard:
        tensorboard_writer_class()
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory.config, to_dict(resolved))
    return resolved


def member_dir(out: Path, seed: int) -> Path:
    """The run directory of the member with ``seed`` in the population directory ``out``."""
    return Path(out) / f"s{seed}"


def is_population_dir(path: Path) -> bool:
    """Whether ``path`` holds members (``sSEED/config.json``) rather than being a run."""
    path = Path(path)
    return not (path / "config.json").exists() and any(path.glob("s*/config.json"))


def population_members(path: Path) -> list[Path]:
    """The member run directories of the population directory ``path``, by seed."""
    found = [p.parent for p in Path(path).glob("s*/config.json") if p.parent.name[1:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[1:]))


def train_population(configs: list[Config], outs: list[Path], resume: bool = False,
                     progress_bar: bool = True, inert: list[bool] | None = None,
                     on_end: Callable[[int, dict], None] | None = None,
                     should_stop: Callable[[list[Progress]], str | None] | None = None
                     ) -> list[dict]:
    """Train the members ``configs`` (differing only in seed) into run directories ``outs``,
    as one population.

    ``resume`` continues them from their checkpoints (``configs`` then are the resolved
    ones of ``config.json``). Finished members, and those marked ``inert``, are
    neither trained nor written. ``on_end(k, summary)`` is called when member
    ``k`` ends; ``should_stop(progress)``, after every iteration, may end the members still
    running with a reason (as failed). Returns every member's ``summary.json`` contents, in
    order.
    """
    outs = [Path(o) for o in outs]
    if not resume:
        configs = [prepare_run(c, o) for c, o in zip(configs, outs, strict=True)]
    _check_population(configs)
    trainer = Trainer(configs, [RunDirectory(o) for o in outs], progress_bar, resume,
                      inert, on_end, should_stop)
    return trainer.run()


def _check_population(configs: list[Config]) -> None:
    """Members must differ in their seed only."""
    first = to_dict(configs[0]) | {"seed": None}
    for config in configs[1:]:
        if to_dict(config) | {"seed": None} != first:
            raise RunError("the members of a population must differ in their seed only")
    seeds = [c.seed for c in configs]
    if len(set(seeds)) != len(seeds):
        raise RunError(f"a population needs distinct seeds, got {seeds}")


def train(config: Config | None, out: Path, resume: bool = False,
          progress_bar: bool = True) -> dict:
    """Train into run directory ``out`` (a fresh run, or ``resume`` an interrupted one): a
    population of one. Returns the final ``summary.json`` contents."""
    if not resume and config is None:
        raise ConfigError("a configuration is needed for a new run")
    configs = [RunDirectory(Path(out)).read_config()] if resume else [config]
    return train_population(configs, [Path(out)], resume, progress_bar)[0]
