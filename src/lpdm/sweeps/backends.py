"""Where cells run: a local process pool (the default) or the tasks of a Ray cluster.

A backend runs :func:`lpdm.sweeps.cell.run_group` and hands back a
``concurrent.futures.Future`` per group of cells (a population); the scheduler never sees
which backend it uses. Every worker runs one population at a time with one torch thread.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

from lpdm.config import ConfigError
from lpdm.runs import RunError
from lpdm.sweeps.cell import run_group

ORPHAN_CHECK_SECONDS = 1.0


class Backend(Protocol):
    workers: int

    def submit(self, sweep_dir: Path, cells: list[str], configs: list[dict[str, Any]],
               retry_failed: list[bool]) -> Future:
        """Start :func:`run_group` on a worker; the future holds its results."""

    def recover(self) -> None:
        """Make the backend usable again after a worker died."""

    def close(self, interrupt: bool = False) -> None:
        """Release the workers; ``interrupt`` stops the cells still running (they resume on
        a rerun)."""


# --------------------------------------------------------------------------- local


def _exit_when_orphaned(parent: int) -> None:
    while True:
        time.sleep(ORPHAN_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(1)  # the sweep process died (e.g. kill -9): stop, releasing the cell lock


def _init_worker(parent: int) -> None:
    import torch

    from lpdm.envs import quiet_gymnasium
    from lpdm.signals import interrupt_on_signals

    torch.set_num_threads(1)
    quiet_gymnasium()
    # SIGINT only: the sweep interrupts its workers with it; the pool may terminate them
    interrupt_on_signals(terminate=False)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


class LocalBackend:
    """A pool of ``workers`` spawned processes on this machine.

    Workers stop within a second of the sweep process dying, however it dies, so that a
    killed sweep leaves no cell running behind it.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(os.getpid(),))

    def submit(self, sweep_dir: Path, cells: list[str], configs: list[dict[str, Any]],
               retry_failed: list[bool]) -> Future:
        return self.executor.submit(run_group, str(sweep_dir), cells, configs, retry_failed)

    def recover(self) -> None:
        try:
            self.executor.submit(int)  # raises at once if a dead worker broke the pool
        except BrokenProcessPool:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._start()

    def close(self, interrupt: bool = False) -> None:
        if interrupt:  # a Ctrl-C in a terminal reached the workers already; a `kill -INT` not
            for worker in multiprocessing.active_children():
                os.kill(worker.pid, signal.SIGINT)
        self.executor.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- ray


def _token_available() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").exists())


class RayBackend:
    """Cells as Ray tasks (one CPU each) on the cluster at ``address``, or on a local Ray
    instance bound to loopback when ``address`` is None.

    Every node must have lpdm installed and see the sweep directory at the same path (a
    shared file system): the cells write their run directories there, and the cell locks
    live there.
    """

    def __init__(self, address: str | None, workers: int | None) -> None:
        if address is None:
            # Ray's single-node mode: it binds to 127.0.0.1 instead of the machine's address
            # (read when ray is imported).
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        if address is not None and "RAY_AUTH_MODE" not in os.environ and _token_available():
            # Clusters started by `ray start` (Ray >= 2.59) ask for the token they wrote.
            os.environ["RAY_AUTH_MODE"] = "token"
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'lpdm[ray]'") from None
        import logging

        self.ray = ray
        try:
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        except ConnectionError as error:
            raise RunError(f"cannot connect to the Ray cluster at {address}: {error} (for a "
                           "cluster with token authentication set RAY_AUTH_MODE=token)") from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(cpus, 1)
        self.task = ray.remote(num_cpus=1, max_retries=0)(run_group)

    def submit(self, sweep_dir: Path, cells: list[str], configs: list[dict[str, Any]],
               retry_failed: list[bool]) -> Future:
        return self.task.remote(str(sweep_dir), cells, configs, retry_failed).future()

    def recover(self) -> None:
        """Ray replaces dead workers itself."""

    def close(self, interrupt: bool = False) -> None:
        self.ray.shutdown()  # tasks whose driver is gone are cancelled by Ray
