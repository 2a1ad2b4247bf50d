"""Cells of a sweep, run by a worker as one population: lock them, then skip, start or
resume their runs.

A cell is locked (:mod:`lpdm.sweeps.locks`) for as long as a worker runs it, so two sweep
processes sharing a directory never run a cell at the same time. Every start, resume,
finish and failure is appended to the sweep's ``sweep.log``.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from lpdm.config import from_dict, with_values
from lpdm.rundir import RunDirectory, write_json_atomic
from lpdm.runs import prepare_run, train_population
from lpdm.sweeps.locks import cell_lock

LOG_FILE = "sweep.log"
TRACEBACK_FILE = "traceback.txt"


def log_event(sweep_dir: Path, cell: str, event: str, detail: str = "") -> None:
    """Append one line to ``sweep.log`` (a single write, so concurrent lines do not mix)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    line = f"{stamp} {socket.gethostname()} pid={os.getpid()} {event} {cell} {detail}".rstrip()
    with (sweep_dir / LOG_FILE).open("a") as handle:
        handle.write(line + "\n")


def record_failure(directory: Path, config: dict[str, Any], error: str) -> dict:
    """Mark the run in ``directory`` failed with ``error``, keeping what its summary holds."""
    run = RunDirectory(directory)
    summary = run.read_summary() or {key: config[key] for key in ("env", "algo", "learner",
                                                                     "seed")}
    summary.update(status="failed", error=error)
    write_json_atomic(run.summary, summary)
    return summary


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".replace("\n", " ").strip()


def run_group(sweep_dir: str, cells: list[str], configs: list[dict[str, Any]],
              retry_failed: list[bool]) -> dict[str, dict[str, Any]]:
    """Run the cells ``cells`` (paths under ``sweep_dir``; configurations ``configs``, in
    ``to_dict`` form, differing only in seed) as one population.

    Each cell is locked first. A finished cell, one held by another process (``busy``) and
    a failed one not to be retried (``retry_failed``) keep their slots, inert; the others
    start, or resume from their checkpoints.

    Returns, per cell, ``{"status": "finished" | "failed" | "busy", "skipped": bool,
    "summary": ...}``. Errors are recorded in the cells' ``summary.json`` (and
    ``traceback.txt``), never raised.
    """
    root = Path(sweep_dir)
    results: dict[str, dict[str, Any]] = {}
    active = []
    with ExitStack() as locks:
        for cell, retry in zip(cells, retry_failed, strict=True):
            directory = root / cell
            if not locks.enter_context(cell_lock(directory)):
                results[cell] = {"status": "busy", "skipped": True, "summary": {}}
                continue
            summary = RunDirectory(directory).read_summary()
            if summary.get("status") == "finished" or (
                    summary.get("status") == "failed" and not retry):
                results[cell] = {"status": summary["status"], "skipped": True,
                                 "summary": summary}
                continue
            active.append(cell)
        if active:
            results |= _run_population(root, cells, configs, active)
    return {cell: results[cell] for cell in cells}


def _run_population(root: Path, cells: list[str], configs: list[dict[str, Any]],
                    active: list[str]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    directories = [root / cell for cell in cells]
    try:
        resolved = {}
        for cell, config, directory in zip(cells, configs, directories, strict=True):
            if cell not in active:
                continue
            run = RunDirectory(directory)
            if run.config.exists():
                log_event(root, cell, "resume", f"from step {run.read_summary().get('steps', 0)}")
                resolved[cell] = run.read_config()
            else:
                resolved[cell] = prepare_run(from_dict(config), directory)
                log_event(root, cell, "start")
        # an inert slot (finished, busy, failed) takes an active member's configuration
        model = resolved[active[0]]
        members = [resolved.get(cell) or with_values(model, {"seed": config["seed"]})
                   for cell, config in zip(cells, configs, strict=True)]

        def ended(slot: int, summary: dict) -> None:
            cell = cells[slot]
            if summary["status"] == "finished":
                (directories[slot] / TRACEBACK_FILE).unlink(missing_ok=True)
                log_event(root, cell, "finished", f"steps={summary['steps']} "
                          f"wall={summary['wall_seconds']:.0f}s")
            else:
                log_event(root, cell, "failed", summary.get("error", ""))
            results[cell] = {"status": summary["status"], "skipped": False, "summary": summary}

        train_population(members, directories, resume=True, progress_bar=False,
                         inert=[cell not in active for cell in cells], on_end=ended)
    except Exception as error:
        trace = traceback.format_exc()
        for cell, config, directory in zip(cells, configs, directories, strict=True):
            if cell not in active or cell in results:
                continue
            (directory / TRACEBACK_FILE).write_text(trace)
            summary = record_failure(directory, config, one_line(error))
            log_event(root, cell, "failed", summary["error"])
            results[cell] = {"status": "failed", "skipped": False, "summary": summary}
    return results
