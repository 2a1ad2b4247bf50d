"""The runs a report covers: the cells of a sweep, the runs of an archive, or every sweep,
archive and run directory under a folder; several sources merge."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lpdm.report.archive import ARCHIVE_FILE, read_archive
from lpdm.report.records import RunRecord, read_record
from lpdm.rundir import RunDirectory, RunError
from lpdm.sweeps.grid import SWEEP_FILE, SweepSpec, expand, fixed_values, read_spec

REPORT_DIR = "report"


def _sweep_runs(directory: Path, spec: SweepSpec) -> list[RunRecord]:
    """The sweep's cells as runs, not started ones included, each with the options the
    sweep set to one value other than the default (what may tell it apart from another)."""
    return [read_record(directory / cell.path, cell.env, cell.algo, cell.learner, cell.variant,
                        cell.seed, directory, fixed_values(spec, cell))
            for cell in expand(spec)]


def _told_apart(origins: list[list[RunRecord]]) -> list[RunRecord]:
    """The runs of several origins (sweeps, archives), those that would share a group
    (environment, algorithm, learner and variant) with another origin's told apart: each
    origin's ``fixed`` values there that the others do not share join its variant (a sweep
    with ``--sparse true`` beside one at the defaults). Origins that differ in nothing else
    (more seeds) pool."""
    def group(run: RunRecord) -> tuple[str, str, str, str]:
        return run.env, run.algo, run.learner, run.variant

    fixed = [{group(run): set(run.fixed) for run in runs} for runs in origins]
    sharing: dict[tuple, list[set[str]]] = {}
    for groups in fixed:
        for key, values in groups.items():
            sharing.setdefault(key, []).append(values)
    told = []
    for runs, groups in zip(origins, fixed, strict=True):
        extra = {key: ",".join(sorted(values - set.intersection(*sharing[key])))
                 for key, values in groups.items() if len(sharing[key]) > 1}
        for run in runs:
            if extra.get(group(run)):
                run = replace(run, variant=",".join(filter(None, (run.variant,
                                                                   extra[group(run)]))))
            told.append(run)
    return told


def collect_runs(*sources: Path) -> list[RunRecord]:
    """The runs of every source: a sweep directory (its cells, not started ones included),
    an archive, or a folder (every sweep, archive and other run directory under it;
    reports' own folders skipped). Runs of different sweeps or archives that would share a
    group are told apart by the options they set differently (a sweep with ``--sparse
    true`` beside one at the defaults). A run (environment, algorithm, learner, variant,
    seed) found twice is an error."""
    records = _told_apart([origin for source in sources for origin in _origins(Path(source))])
    seen: dict[tuple, Path] = {}
    for run in records:
        key = (run.env, run.algo, run.learner, run.variant, run.seed)
        if key in seen:
            raise RunError(f"{run.env} {run.algo} {run.method} seed {run.seed} is both "
                           f"{seen[key]} and {run.path}: report them apart")
        seen[key] = run.path
    return records


def _origins(source: Path) -> list[list[RunRecord]]:
    """The runs of ``source`` (see :func:`collect_runs`) by origin: one list per sweep and
    per archive, and one for the run directories outside sweeps."""
    if source.is_file() and source.suffix == ".npz":
        return [read_archive(source)]
    if not source.is_dir():
        raise RunError(f"{source} is neither a directory nor an archive ({ARCHIVE_FILE})")
    spec = read_spec(source)
    if spec is not None:
        return [_sweep_runs(source, spec)]

    def skipped(path: Path) -> bool:
        return REPORT_DIR in path.relative_to(source).parts or \
            any(s in path.parents for s in sweeps)

    found = [f.parent for f in sorted(source.rglob(SWEEP_FILE))
             if REPORT_DIR not in f.parent.relative_to(source).parts]
    found = [s for s in found if not any(o in s.parents for o in found)]  # outermost
    sweeps = {s: spec for s in found if (spec := read_spec(s)) is not None}
    origins = [_sweep_runs(s, spec) for s, spec in sweeps.items()]
    origins += [read_archive(archive) for archive in sorted(source.rglob(ARCHIVE_FILE))
                if not skipped(archive.parent)]
    loose = []
    for config_file in sorted(source.rglob("config.json")):
        path = config_file.parent
        if skipped(path):
            continue
        config = RunDirectory(path).read_config()
        loose.append(read_record(path, config.env, config.algo, config.learner, "",
                                 config.seed, None))
    origins.append(loose)
    if not any(origins):
        raise RunError(f"{source} holds no runs (no sweep.json, no {ARCHIVE_FILE} and no run "
                       "directories)")
    return origins
