"""Stopping: SIGINT and SIGTERM end a run or a sweep the way Ctrl-C does.

Ctrl-C raises ``KeyboardInterrupt``; runs then mark themselves interrupted and a sweep stops
its workers, and the same command resumes them from their last checkpoints. Two ways of
stopping would skip that: a process that a non-interactive shell starts in the background
(``nohup lpdm sweep ... &``, ``timeout -s INT``) inherits SIGINT *ignored*, so ``kill -INT``
did nothing, and a sweep's workers, inheriting it too, ran to the end of their cells;
schedulers (SLURM, systemd, ``timeout``) send SIGTERM, which killed the process outright.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def interrupt_on_signals(terminate: bool = True) -> None:
    """Make SIGINT (and, with ``terminate``, SIGTERM) raise ``KeyboardInterrupt`` in this
    process, whatever it inherited. Does nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if terminate:
        signal.signal(signal.SIGTERM, _interrupt)
