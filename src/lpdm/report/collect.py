"""The runs a report covers: the cells of a sweep, the runs of an archive, or every sweep,
archive and run directory under a folder; several sources merge."""

from __future__ import annotations

from pathlib import Path

from lpdm.report.archive import ARCHIVE_FILE, read_archive
from lpdm.report.records import RunRecord, read_record
from lpdm.runs import RunDirectory, RunError
from lpdm.sweeps.grid import SWEEP_FILE, Cell, SweepSpec, expand, fixed_values, read_spec

REPORT_DIR = "report"


def _sweep_runs(directory: Path, cells: list[Cell], extra: dict[Cell, str] | None = None
                ) -> list[RunRecord]:
    """The sweep's ``cells`` as runs, not started ones included; ``extra`` adds values to
    some cells' variants."""
    extra = extra or {}
    return [read_record(directory / cell.path, cell.env, cell.algo, cell.learner,
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


def collect_runs(*sources: Path) -> list[RunRecord]:
    """The runs of every source (see :func:`runs_of`), merged; a run (environment,
    algorithm, learner, variant, seed) found twice is an error."""
    records = [record for source in sources for record in runs_of(Path(source))]
    seen: dict[tuple, Path] = {}
    for run in records:
        key = (run.env, run.algo, run.learner, run.variant, run.seed)
        if key in seen:
            raise RunError(f"{run.env} {run.algo} {run.method} seed {run.seed} is both "
                           f"{seen[key]} and {run.path}: report them apart")
        seen[key] = run.path
    return records


def runs_of(source: Path) -> list[RunRecord]:
    """The runs of the sweep in ``source`` (from its ``sweep.json``, cells not started
    included), or of the archive ``source``; else those of every sweep, archive and other
    run directory found under the folder ``source``. Sweeps whose cells would share a
    group are told apart by the options they set differently (a sweep with ``--sparse
    true`` beside one at the defaults). Reports' own folders are skipped."""
    if source.is_file() and source.suffix == ".npz":
        return read_archive(source)
    if not source.is_dir():
        raise RunError(f"{source} is neither a directory nor an archive ({ARCHIVE_FILE})")
    spec = read_spec(source)
    if spec is not None:
        return _sweep_runs(source, expand(spec))

    def skipped(path: Path) -> bool:
        return REPORT_DIR in path.relative_to(source).parts or \
            any(s in path.parents for s in sweeps)

    found = [f.parent for f in sorted(source.rglob(SWEEP_FILE))
             if REPORT_DIR not in f.parent.relative_to(source).parts]
    found = [s for s in found if not any(o in s.parents for o in found)]  # outermost
    sweeps = {s: spec for s in found if (spec := read_spec(s)) is not None}
    cells = {s: expand(spec) for s, spec in sweeps.items()}
    extra = _telling_apart(sweeps, cells)
    records = [record for s in sweeps for record in _sweep_runs(s, cells[s], extra[s])]
    for archive in sorted(source.rglob(ARCHIVE_FILE)):
        if not skipped(archive.parent):
            records.extend(read_archive(archive))
    for config_file in sorted(source.rglob("config.json")):
        path = config_file.parent
        if skipped(path):
            continue
        config = RunDirectory(path).read_config()
        records.append(read_record(path, config.env, config.algo, config.learner, "",
                                   config.seed, None))
    if not records:
        raise RunError(f"{source} holds no runs (no sweep.json, no {ARCHIVE_FILE} and no run "
                       "directories)")
    return records
