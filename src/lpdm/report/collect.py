"""The runs a report covers: the cells of a sweep, or every run directory under a folder."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpdm.config import OPTIONS, get_value
from lpdm.runs import RunDirectory, RunError
from lpdm.sweeps.cell import is_locked
from lpdm.sweeps.grid import SWEEP_FILE, Cell, SweepSpec, expand, fixed_values, read_spec

REPORT_DIR = "report"
NOT_STARTED = "not started"


@dataclass(frozen=True)
class RunRecord:
    """One run as the report sees it; scores are NaN where the run has none."""

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
        try:
            config = RunDirectory(self.path).read_config()
        except (RunError, ValueError):
            return {}
        return {o.flag: option_text(get_value(config, o)) for o in OPTIONS.values()}

    def metrics(self) -> dict[str, np.ndarray]:
        """Every column of ``metrics.csv`` as floats ``[E]`` (NaN where a cell is empty);
        read once, as several figures ask (do not modify)."""
        return self._metrics

    @functools.cached_property
    def _metrics(self) -> dict[str, np.ndarray]:
        rows = RunDirectory(self.path).read_metrics()
        names = rows[0].keys() if rows else ("global_step", "episodic_return")
        return {name: np.array([float(r[name]) if r.get(name) not in (None, "") else np.nan
                                for r in rows]) for name in names}


def option_text(value: object) -> str:
    """An option's value as the report shows it: tuples joined by ``/``."""
    return "/".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def _record(path: Path, env: str, algo: str, learner: str, variant: str, seed: int,
            sweep: Path | None) -> RunRecord:
    run = RunDirectory(path)
    summary = run.read_summary()
    status = summary.get("status", NOT_STARTED)
    if status == "running" and not is_locked(path):
        status = "interrupted"
    steps, wall = _number(summary.get("steps")), _number(summary.get("wall_seconds"))
    return RunRecord(
        path=path, env=env, algo=algo, learner=learner, variant=variant, seed=seed,
        status=status, final_score=_number(summary.get("final_score")),
        max_score=_number(summary.get("max_score")),
        eval_score=_number(summary.get("eval_score")),
        total_steps=int(summary.get("total_steps") or 0),
        seconds_per_iteration=_number(summary.get("seconds_per_iteration")),
        update_seconds_per_iteration=_number(summary.get("update_seconds_per_iteration")),
        seconds_per_1k_steps=1000 * wall / steps if steps else math.nan,
        error=summary.get("error", ""), sweep=sweep)


def _sweep_runs(directory: Path, cells: list[Cell], extra: dict[Cell, str] | None = None
                ) -> list[RunRecord]:
    """The sweep's ``cells`` as runs, not started ones included; ``extra`` adds values to
    some cells' variants."""
    extra = extra or {}
    return [_record(directory / cell.path, cell.env, cell.algo, cell.learner,
                    ",".join(filter(None, (cell.variant, extra.get(cell, "")))), cell.seed,
                    directory) for cell in cells]


def _telling_apart(sweeps: dict[Path, SweepSpec], cells: dict[Path, list[Cell]]
                   ) -> dict[Path, dict[Cell, str]]:
    """Where cells of several sweeps would share a group (environment, algorithm, learner
    and swept values), the values that tell them apart: each sweep's fixed options that
    the others there do not share. Sweeps that differ in nothing else (more seeds) pool."""
    fixed = {s: {c: set(fixed_values(spec, c)) for c in cells[s]} for s, spec in sweeps.items()}
    by_group: dict[tuple, dict[Path, set[str]]] = {}
    for sweep, by_cell in fixed.items():
        for cell, values in by_cell.items():
            by_group.setdefault((cell.env, cell.algo, cell.learner, cell.variant), {})[sweep] = \
                values
    extra: dict[Path, dict[Cell, str]] = {s: {} for s in sweeps}
    for sweep, by_cell in fixed.items():
        for cell, values in by_cell.items():
            sharing = by_group[cell.env, cell.algo, cell.learner, cell.variant]
            if len(sharing) > 1:
                extra[sweep][cell] = ",".join(sorted(values - set.intersection(*sharing.values())))
    return extra


def collect_runs(directory: Path) -> list[RunRecord]:
    """The runs of the sweep in ``directory`` (from its ``sweep.json``, cells not started
    included); else those of every sweep found under ``directory`` and of every other run
    directory there. Sweeps whose cells would share a group are told apart by the options
    they set differently (a sweep with ``--sparse true`` beside one at the defaults)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"{directory} is not a directory")
    spec = read_spec(directory)
    if spec is not None:
        return _sweep_runs(directory, expand(spec))
    found = [f.parent for f in sorted(directory.rglob(SWEEP_FILE))
             if REPORT_DIR not in f.parent.relative_to(directory).parts]
    found = [s for s in found if not any(o in s.parents for o in found)]  # outermost
    sweeps = {s: spec for s in found if (spec := read_spec(s)) is not None}
    cells = {s: expand(spec) for s, spec in sweeps.items()}
    extra = _telling_apart(sweeps, cells)
    records = [record for s in sweeps for record in _sweep_runs(s, cells[s], extra[s])]
    for config_file in sorted(directory.rglob("config.json")):
        path = config_file.parent
        if REPORT_DIR in path.relative_to(directory).parts or \
                any(s in path.parents for s in sweeps):
            continue
        config = RunDirectory(path).read_config()
        records.append(_record(path, config.env, config.algo, config.learner, "", config.seed,
                               None))
    if not records:
        raise RunError(f"{directory} holds no runs (no sweep.json and no run directories)")
    return records
