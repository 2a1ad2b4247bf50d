"""A report's archive (``archive.npz``): every run's record, options and training returns in
one compressed file, so that a study's results outlive its run directories.

``lpdm report`` writes one beside every report and reads one like a sweep: a report of a
folder that holds archives, or of several sources (``lpdm report A B --out X``), merges
them. A long study run over several sessions or machines commits each part's archive and
reports them together at the end.

Kept exactly: every field of :class:`RunRecord` (the scores and timings every table and
verdict is computed from) and the options from ``config.json``. Kept as float32: each
finished episode's global step and return, every episode of a run of up to
``MAX_EPISODES``, else every k-th (the learning curves and steps to a threshold are then
read from that subsample). Kept approximately: the policy network's per-layer diagnostics
(``LAYER_FIELDS`` and a learner's own, ``EXTRA_FIELDS``, such as ``dfa``'s alignment with
backpropagation; not the critic's, nor the local losses, which nothing reads), at
``DIAGNOSTIC_ROWS`` evenly spaced episodes per run, each episode in between holding the last
kept value (what the diagnostics and layer-profile figures read). A few kB per run (about
20 kB for a 16-layer network).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lpdm.errors import RunError
from lpdm.report.profiles import EXTRA_FIELDS, LAYER_FIELDS, diagnostic_columns
from lpdm.report.records import NOT_STARTED, RunRecord, relative_path

ARCHIVE_FILE = "archive.npz"
FORMAT = 2
MAX_EPISODES = 2000
DIAGNOSTIC_ROWS = 100
FIELDS = ("env", "algo", "learner", "variant", "seed", "status", "final_score", "max_score",
          "eval_score", "total_steps", "seconds_per_iteration", "update_seconds_per_iteration",
          "seconds_per_1k_steps", "error")


def _forward_fill(values: np.ndarray) -> np.ndarray:
    """``values [E, C]`` with each NaN replaced by the last finite value above it."""
    rows = np.where(np.isnan(values), 0, np.arange(len(values))[:, None])
    np.maximum.accumulate(rows, axis=0, out=rows)  # the last finite row at or above each
    return np.take_along_axis(values, rows, axis=0)


def write_archive(path: Path, runs: list[RunRecord], source: Path) -> None:
    """Write ``runs`` (paths relative to ``source``) into the archive ``path``."""
    entries, arrays = [], {}
    for i, run in enumerate(runs):
        metrics = run.metrics() if run.status != NOT_STARTED else {}
        entry = {name: getattr(run, name) for name in FIELDS}
        entry.update(path=relative_path(run.path, source),
                     sweep=None if run.sweep is None else relative_path(run.sweep, source),
                     fixed=list(run.fixed), options=run.options(), diagnostics=[])
        steps = metrics.get("global_step", np.array([]))
        every = max(1, -(-steps.size // MAX_EPISODES))  # ceil
        kept = np.arange(steps.size)[::-1][::every][::-1]  # every k-th, the last included
        arrays[f"lengths_{i}"] = np.diff(steps[kept], prepend=0).astype(np.int32)
        arrays[f"returns_{i}"] = metrics.get("episodic_return", np.array([]))[kept] \
            .astype(np.float32)
        fields = [field for field, _ in (*LAYER_FIELDS, *EXTRA_FIELDS)]
        names = [n for field in fields for n in diagnostic_columns(metrics, field)]
        if names and kept.size:
            table = _forward_fill(np.stack([metrics[n] for n in names], 1))[kept]
            rows = np.unique(np.linspace(0, kept.size - 1, DIAGNOSTIC_ROWS).round()
                             .astype(int))
            entry["diagnostics"] = names
            arrays[f"diagnostic_rows_{i}"] = rows
            arrays[f"diagnostics_{i}"] = table[rows].astype(np.float32)
        entries.append(entry)
    index = json.dumps({"format": FORMAT, "runs": entries})
    np.savez_compressed(path, index=np.array(index), **arrays)


def read_archive(path: Path) -> list[RunRecord]:
    """The runs of the archive ``path``; their paths and sweeps lie under its folder."""
    root = path.parent
    try:
        with np.load(path, allow_pickle=False) as data:
            index = json.loads(str(data["index"]))
            if index.get("format") != FORMAT:
                raise RunError(f"{path}: archive format {index.get('format')}, this lpdm "
                               f"reads format {FORMAT}")
            return [_record(root, entry, i, data) for i, entry in enumerate(index["runs"])]
    except (OSError, ValueError, KeyError) as error:
        raise RunError(f"{path} is not an lpdm archive ({error})") from None


def _record(root: Path, entry: dict, i: int, data: np.lib.npyio.NpzFile) -> RunRecord:
    steps = np.cumsum(data[f"lengths_{i}"], dtype=np.float64)
    metrics = {"global_step": steps,
               "episodic_return": data[f"returns_{i}"].astype(np.float64)}
    if entry["diagnostics"]:
        rows, kept = data[f"diagnostic_rows_{i}"], data[f"diagnostics_{i}"].astype(np.float64)
        # each episode holds the last kept value at or before it
        which = np.searchsorted(rows, np.arange(steps.size), side="right") - 1
        for c, name in enumerate(entry["diagnostics"]):
            metrics[name] = kept[which, c]
    return RunRecord(path=root / entry["path"], **{name: entry[name] for name in FIELDS},
                     sweep=None if entry["sweep"] is None else root / entry["sweep"],
                     fixed=tuple(entry.get("fixed", ())),  # older archives kept none
                     stored_options=entry["options"], stored_metrics=metrics)
