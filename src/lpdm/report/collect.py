"""The runs a report covers: the cells of a sweep, or every run directory under a folder."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpdm.config import OPTIONS, get_value
from lpdm.runs import RunDirectory, RunError
from lpdm.sweeps.cell import is_locked
from lpdm.sweeps.grid import SWEEP_FILE, Cell, expand, fixed_values, read_spec

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
        """Every column of ``metrics.csv`` as floats ``[E]`` (NaN where a cell is empty)."""
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


def _sweep_runs(directory: Path, extra: dict[Cell, str] | None = None
                ) -> list[RunRecord] | None:
    """The cells of the sweep in ``directory``, not started ones included (None: no sweep);
    ``extra`` adds values to some cells' variants."""
    spec = read_spec(directory)
    if spec is None:
        return None
    extra = extra or {}
    return [_record(directory / cell.path, cell.env, cell.algo, cell.learner,
                    ",".join(filter(None, (cell.variant, extra.get(cell, "")))), cell.seed,
                    directory) for cell in expand(spec)]


def _telling_apart(sweeps: list[Path]) -> dict[Path, dict[Cell, str]]:
    """Where cells of several sweeps would share a group (environment, algorithm, learner
    and swept values), the values that tell them apart: each sweep's fixed options that
    the others there do not share. Sweeps that differ in nothing else (more seeds) pool."""
    cells = {s: [(c, set(fixed_values(read_spec(s), c))) for c in expand(read_spec(s))]
             for s in sweeps}
    def group(cell: Cell) -> tuple[str, str, str, str]:
        return cell.env, cell.algo, cell.learner, cell.variant

    by_group: dict[tuple, dict[Path, set[str]]] = {}
    for sweep, pairs in cells.items():
        for cell, fixed in pairs:
            by_group.setdefault(group(cell), {})[sweep] = fixed
    extra: dict[Path, dict[Cell, str]] = {s: {} for s in sweeps}
    for sweep, pairs in cells.items():
        for cell, fixed in pairs:
            sharing = by_group[group(cell)]
            if len(sharing) > 1:
                common = set.intersection(*sharing.values())
                extra[sweep][cell] = ",".join(sorted(fixed - common))
    return extra


def collect_runs(directory: Path) -> list[RunRecord]:
    """The runs of the sweep in ``directory`` (from its ``sweep.json``, cells not started
    included); else those of every sweep found under ``directory`` and of every other run
    directory there. Sweeps whose cells would share a group are told apart by the options
    they set differently (a sweep with ``--sparse true`` beside one at the defaults)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"{directory} is not a directory")
    sweep = _sweep_runs(directory)
    if sweep is not None:
        return sweep
    sweeps = [f.parent for f in sorted(directory.rglob(SWEEP_FILE))
              if REPORT_DIR not in f.parent.relative_to(directory).parts]
    sweeps = [s for s in sweeps if not any(o in s.parents for o in sweeps)]  # outermost
    extra = _telling_apart(sweeps)
    records = [record for s in sweeps for record in _sweep_runs(s, extra[s]) or []]
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
