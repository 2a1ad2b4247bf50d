"""Runs the cells of a sweep on a backend, at most ``workers`` at a time, with one progress bar.

Cells are handed out seed-major (every configuration's seed 0 first), so that a sweep
stopped half-way already holds a comparable subset. A cell that another process holds
(a second sweep on the same directory) is put back and retried later; the sweep ends
when every cell is finished or failed.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from lpdm.config import to_dict
from lpdm.runs import RunDirectory
from lpdm.sweeps.backends import Backend
from lpdm.sweeps.cell import is_locked, one_line, record_failure
from lpdm.sweeps.grid import Cell

BUSY_RETRY_SECONDS = 2.0
POLL_SECONDS = 1.0


@dataclass
class SweepOutcome:
    """How the cells stand when the sweep ends."""

    total: int
    finished: int = 0
    ran: int = 0  # cells this process ran to an end (finished or failed)
    failed: dict[str, str] = field(default_factory=dict)  # cell path -> error


def cell_status(sweep_dir: Path, cell: Cell) -> str:
    """``finished``, ``failed``, ``interrupted`` (killed or stopped part-way) or ``pending``."""
    summary = RunDirectory(sweep_dir / cell.path).read_summary()
    status = summary.get("status", "pending")
    if status == "running" or (status == "failed"
                               and summary.get("error", "").startswith("interrupted")):
        return "interrupted"
    return status


class _Display:
    """The progress bar (cells, fractional for the running ones) and one line per ended cell."""

    def __init__(self, total: int, finished: int, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = tqdm(total=total, initial=finished, unit="cell", disable=not enabled,
                        dynamic_ncols=True, smoothing=0.1,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.1f}/{total} cells "
                                   "[{elapsed}<{remaining}]")

    def update(self, done: float, finished: int, running: int, failed: int, waiting: int
               ) -> None:
        text = f"finished {finished} · running {running} · failed {failed}"
        if waiting:
            text += f" · held elsewhere {waiting}"
        self.bar.set_description_str(text, refresh=False)
        self.bar.n = done
        self.bar.refresh()

    def line(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        self.bar.close()


def _fraction_done(sweep_dir: Path, cell: Cell) -> float:
    """Progress of a running cell from its ``summary.json`` (updated at checkpoints)."""
    summary = RunDirectory(sweep_dir / cell.path).read_summary()
    steps, total = summary.get("steps", 0), summary.get("total_steps", 0)
    return min(steps / total, 1.0) if total else 0.0


def run_cells(sweep_dir: Path, cells: list[Cell], backend: Backend, progress: bool = True
              ) -> SweepOutcome:
    """Run every cell of ``cells`` not finished yet; returns the outcome."""
    outcome = SweepOutcome(total=len(cells))
    todo: deque[Cell] = deque()
    for cell in sorted(cells, key=lambda c: c.seed):
        if cell_status(sweep_dir, cell) == "finished":
            outcome.finished += 1
        else:
            todo.append(cell)
    held: list[tuple[float, Cell]] = []  # (retry time, cell) of cells another process runs
    seen_held: set[Cell] = set()  # those are not retried if they failed over there
    running: dict[Future, Cell] = {}
    display = _Display(len(cells), outcome.finished, progress)
    try:
        while todo or held or running:
            now = time.monotonic()
            todo.extend(cell for at, cell in held if at <= now)
            held = [(at, cell) for at, cell in held if at > now]
            while todo and len(running) < backend.workers:
                cell = todo.popleft()
                if is_locked(sweep_dir / cell.path):
                    held.append((now + BUSY_RETRY_SECONDS, cell))
                    seen_held.add(cell)
                    continue
                future = backend.submit(sweep_dir, str(cell.path), to_dict(cell.config()),
                                        retry_failed=cell not in seen_held)
                running[future] = cell
            if running:
                done, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            else:
                done = set()
                time.sleep(POLL_SECONDS)
            broken = False
            for future in done:
                cell = running.pop(future)
                broken |= _collect(sweep_dir, cell, future, outcome, held, display)
                seen_held.update(cell for _, cell in held)
            if broken:
                backend.recover()
            partial = sum(_fraction_done(sweep_dir, cell) for cell in running.values())
            display.update(outcome.finished + partial, outcome.finished, len(running),
                           len(outcome.failed), len(held))
    finally:
        display.close()
    return outcome


def _collect(sweep_dir: Path, cell: Cell, future: Future, outcome: SweepOutcome,
             held: list[tuple[float, Cell]], display: _Display) -> bool:
    """Account for one ended cell; returns True if its worker died (the backend is broken)."""
    path = str(cell.path)
    try:
        result = future.result()
    except Exception as error:  # a worker died (killed, out of memory), which ends its pool
        message = (f"a worker process died while this cell ran ({one_line(error)}); "
                   "rerun the sweep to resume it")
        record_failure(sweep_dir / cell.path, to_dict(cell.config()), message)
        result = {"status": "failed", "skipped": False, "summary": {"error": message}}
        broken = True
    else:
        broken = False
    status, summary = result["status"], result["summary"]
    if status == "busy":
        held.append((time.monotonic() + BUSY_RETRY_SECONDS, cell))
        return broken
    if not result["skipped"]:
        outcome.ran += 1
    if status == "finished":
        outcome.finished += 1
        outcome.failed.pop(path, None)
        if not result["skipped"]:
            display.line(f"finished {path}: max_score {_fmt(summary.get('max_score'))}, "
                         f"final_score {_fmt(summary.get('final_score'))} "
                         f"({summary.get('wall_seconds', 0):.0f}s)")
    else:
        outcome.failed[path] = summary.get("error", "unknown error")
        display.line(f"failed   {path}: {outcome.failed[path]}")
    return broken


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
