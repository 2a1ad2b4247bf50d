"""Cell locks: ``fcntl.flock`` on ``.lock`` in a run directory, held by the worker that runs
it, so that two sweep processes sharing a directory never run a cell at the same time; the
kernel releases the lock when the worker dies, however it dies. Torch-free: the report
asks whether a run marked ``running`` is really running."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".lock"


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


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` while the block runs, waiting for it (for
    work that several processes must do one at a time, such as creating a database)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
