"""One cell of a sweep, run by a worker: lock it, then skip, start or resume its run.

A cell is locked with ``fcntl.flock`` on ``.lock`` in its run directory for as long as a
worker runs it, so two sweep processes sharing a directory never run a cell at the same
time; the kernel releases the lock when the worker dies, however it dies. Every start,
resume, finish and failure is appended to the sweep's ``sweep.log``.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lpdm.config import from_dict
from lpdm.runs import RunDirectory, train, write_json_atomic

LOCK_FILE = ".lock"
LOG_FILE = "sweep.log"
TRACEBACK_FILE = "traceback.txt"


@contextmanager
def cell_lock(directory: Path) -> Iterator[bool]:
    """Hold the cell's lock while the block runs; yields False if another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked(directory: Path) -> bool:
    """Whether some process runs the cell in ``directory`` now."""
    if not (directory / LOCK_FILE).exists():
        return False
    with cell_lock(directory) as acquired:
        return not acquired


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


def run_cell(sweep_dir: str, cell: str, config: dict[str, Any], retry_failed: bool = True
             ) -> dict[str, Any]:
    """Run cell ``cell`` (a path under ``sweep_dir``) with ``config`` (``to_dict`` form).

    A finished cell is skipped, an interrupted one resumed from its checkpoint, a failed one
    resumed too unless ``retry_failed`` is False (then it is reported failed again).

    Returns ``{"status": "finished" | "failed" | "busy", "skipped": bool, "summary": ...}``;
    ``busy`` means another process holds the cell. Errors of the run are recorded in its
    ``summary.json`` (and ``traceback.txt``), never raised.
    """
    root = Path(sweep_dir)
    directory = root / cell
    run = RunDirectory(directory)
    with cell_lock(directory) as acquired:
        if not acquired:
            return {"status": "busy", "skipped": True, "summary": {}}
        summary = run.read_summary()
        if summary.get("status") == "finished" or (
                summary.get("status") == "failed" and not retry_failed):
            return {"status": summary["status"], "skipped": True, "summary": summary}
        try:
            if run.config.exists():
                log_event(root, cell, "resume", f"from step {summary.get('steps', 0)}")
                summary = train(None, directory, resume=True, progress_bar=False)
            else:
                log_event(root, cell, "start")
                summary = train(from_dict(config), directory, progress_bar=False)
        except Exception as error:
            (directory / TRACEBACK_FILE).write_text(traceback.format_exc())
            summary = record_failure(directory, config, one_line(error))
            log_event(root, cell, "failed", summary["error"])
            return {"status": "failed", "skipped": False, "summary": summary}
        (directory / TRACEBACK_FILE).unlink(missing_ok=True)  # of an earlier, failed attempt
        log_event(root, cell, "finished", f"steps={summary['steps']} "
                  f"wall={summary['wall_seconds']:.0f}s")
        return {"status": "finished", "skipped": False, "summary": summary}
