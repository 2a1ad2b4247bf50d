"""One run as a report sees it: its place in the grid, its scores and timings, and (read
when a figure asks) its options and per-episode metrics, from its run directory or from an
archive (:mod:`lpdm.report.archive`)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lpdm.config import active_options, get_value
from lpdm.rundir import RunDirectory, RunError
from lpdm.sweeps.locks import is_locked

NOT_STARTED = "not started"


@dataclass(frozen=True)
class RunRecord:
    """One run as the report sees it; scores are NaN where the run has none.

    ``stored_options`` and ``stored_metrics`` hold what an archived run kept; a run read
    from its directory leaves them ``None`` and reads ``config.json`` and ``metrics.csv``.
    """

    path: Path
    env: str
    algo: str
    learner: str
    variant: str  # the swept option values, "" if none
    seed: int
    status: str  # finished, failed, running, interrupted, not started
    final_score: float
    max_score: float
    eval_score: float
    total_steps: int
    seconds_per_iteration: float
    update_seconds_per_iteration: float
    seconds_per_1k_steps: float
    error: str = ""
    sweep: Path | None = None  # the sweep directory the run belongs to, if any
    # the options its sweep set to one value other than the default, as a variant writes
    # them (sparse=true): what tells it apart from another sweep's run of the same group
    fixed: tuple[str, ...] = ()
    stored_options: dict[str, str] | None = field(default=None, compare=False, repr=False)
    stored_metrics: dict[str, np.ndarray] | None = field(default=None, compare=False,
                                                         repr=False)

    @property
    def method(self) -> str:
        """The learner, with the swept option values when there are any."""
        return f"{self.learner} [{self.variant}]" if self.variant else self.learner

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def training_returns(self) -> tuple[np.ndarray, np.ndarray]:
        """``(global_step [E], episodic_return [E])`` of the run's finished episodes."""
        columns = self.metrics()
        return columns["global_step"], columns["episodic_return"]

    def options(self) -> dict[str, str]:
        """The run's configuration from ``config.json``, flag -> value as text ({} if none)."""
        if self.stored_options is not None:
            return self.stored_options
        try:
            config = RunDirectory(self.path).read_config()
        except (RunError, ValueError):
            return {}
        return {o.flag: option_text(get_value(config, o)) for o in active_options(config)}

    def metrics(self) -> dict[str, np.ndarray]:
        """Every column of ``metrics.csv`` as floats ``[E]`` (NaN where a cell is empty);
        read once, as several figures ask (do not modify)."""
        return self._metrics

    @functools.cached_property
    def _metrics(self) -> dict[str, np.ndarray]:
        if self.stored_metrics is not None:
            return self.stored_metrics
        try:
            rows = RunDirectory(self.path).read_metrics()
        except OSError:  # never started
            rows = []
        names = rows[0].keys() if rows else ("global_step", "episodic_return")
        return {name: np.array([float(r[name]) if r.get(name) not in (None, "") else np.nan
                                for r in rows]) for name in names}


def option_text(value: object) -> str:
    """An option's value as the report shows it: tuples joined by ``/``."""
    return "/".join(map(str, value)) if isinstance(value, tuple) else str(value)


def relative_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` where it lies under it, else as it is."""
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def number(value: object) -> float:
    """``value`` as a float, NaN unless it is a finite number."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def read_record(path: Path, env: str, algo: str, learner: str, variant: str, seed: int,
                sweep: Path | None, fixed: tuple[str, ...] = ()) -> RunRecord:
    """The run in directory ``path`` (not started if it has no ``summary.json``)."""
    run = RunDirectory(path)
    summary = run.read_summary()
    status = summary.get("status", NOT_STARTED)
    if status == "running" and not is_locked(path):
        status = "interrupted"
    steps, wall = number(summary.get("steps")), number(summary.get("wall_seconds"))
    return RunRecord(
        path=path, env=env, algo=algo, learner=learner, variant=variant, seed=seed,
        status=status, final_score=number(summary.get("final_score")),
        max_score=number(summary.get("max_score")),
        eval_score=number(summary.get("eval_score")),
        total_steps=int(summary.get("total_steps") or 0),
        seconds_per_iteration=number(summary.get("seconds_per_iteration")),
        update_seconds_per_iteration=number(summary.get("update_seconds_per_iteration")),
        seconds_per_1k_steps=1000 * wall / steps if steps else math.nan,
        error=summary.get("error", ""), sweep=sweep, fixed=fixed)
