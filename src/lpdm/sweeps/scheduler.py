"""Runs the cells of a sweep on a backend, at most ``workers`` populations at a time, with
one progress bar.

Cells that differ only in their seed run together as a population (``--population``).
Populations are handed out seed-major (every configuration's first seeds first), so that a
sweep stopped half-way already holds a comparable subset. A cell that another process
holds (a second sweep on the same directory) is put back and retried later; the sweep ends
when every cell is finished or failed.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from lpdm.config import to_dict
from lpdm.runs import RunDirectory
from lpdm.sweeps.backends import Backend
from lpdm.sweeps.cell import one_line, record_failure
from lpdm.sweeps.grid import Cell, populations

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
    """The progress bar (cells, fractional for the running ones) and one line per ended cell.

    Where the output is not a terminal (``nohup lpdm sweep ... > log &``) a bar redrawn every
    second would fill the log, so a plain status line is printed instead, at most every
    ``LOG_EVERY_SECONDS``.
    """

    LOG_EVERY_SECONDS = 300.0

    def __init__(self, total: int, finished: int, enabled: bool,
                 terminal: bool | None = None) -> None:
        self.enabled = enabled
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.total = total
        self.started = time.monotonic()
        self.logged_at = -float("inf")
        self.bar = tqdm(total=total, initial=finished, unit="cell",
                        disable=not (enabled and self.terminal),
                        dynamic_ncols=True, smoothing=0.1,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.1f}/{total} cells "
                                   "[{elapsed}<{remaining}]")

    def update(self, done: float, finished: int, running: int, failed: int, waiting: int
               ) -> None:
        text = f"finished {finished} · running {running} · failed {failed}"
        if waiting:
            text += f" · held elsewhere {waiting}"
        if not self.enabled:
            return
        if self.terminal:
            self.bar.set_description_str(text, refresh=False)
            self.bar.n = done
            self.bar.refresh()
            return
        now = time.monotonic()
        if now - self.logged_at >= self.LOG_EVERY_SECONDS:
            self.logged_at = now
            elapsed = int(now - self.started)
            print(f"[{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}] "
                  f"{text} · {100 * done / max(self.total, 1):.0f}% of {self.total} cells",
                  flush=True)

    def line(self, text: str) -> None:
        if self.enabled and self.terminal:
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


def run_cells(sweep_dir: Path, cells: list[Cell], backend: Backend, population: int = 1,
              progress: bool = True) -> SweepOutcome:
    """Run every cell of ``cells`` not finished yet; returns the outcome.

    Cells that differ only in their seed run together in populations of ``population``
    cells. The groups are fixed by the grid and ``population`` alone (finished cells keep
    their place, inert), so a rerun puts every cell beside the same co-members as the first
    run did, and a resumed cell continues exactly as it would have.
    """
    outcome = SweepOutcome(total=len(cells))
    status = {cell: cell_status(sweep_dir, cell) for cell in cells}
    counted = {cell for cell, s in status.items() if s == "finished"}  # in outcome.finished
    outcome.finished = len(counted)
    groups = [g for g in populations(cells, population)
              if any(status[c] != "finished" for c in g)]
    # seed-major: every configuration's first population before any second one
    todo: deque[list[Cell]] = deque(sorted(groups, key=lambda g: g[0].seed))
    held: list[tuple[float, list[Cell]]] = []  # groups with cells another process runs
    seen_held: set[Cell] = set()  # those are not retried if they failed over there
    running: dict[Future, list[Cell]] = {}
    display = _Display(len(cells), outcome.finished, progress)
    try:
        while todo or held or running:
            now = time.monotonic()
            todo.extend(group for at, group in held if at <= now)
            held = [(at, group) for at, group in held if at > now]
            while todo and len(running) < backend.workers:
                group = todo.popleft()
                future = backend.submit(sweep_dir, [str(c.path) for c in group],
                                        [to_dict(c.config()) for c in group],
                                        [c not in seen_held for c in group])
                running[future] = group
            if running:
                done, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            else:
                done = set()
                time.sleep(POLL_SECONDS)
            broken = False
            for future in done:
                group = running.pop(future)
                busy, died = _collect(sweep_dir, group, future, outcome, display, counted)
                broken |= died
                if busy:
                    seen_held.update(busy)
                    held.append((time.monotonic() + BUSY_RETRY_SECONDS, group))
            if broken:
                backend.recover()
            partial = sum(_fraction_done(sweep_dir, cell) for group in running.values()
                          for cell in group if cell not in counted)
            display.update(outcome.finished + partial, outcome.finished,
                           sum(len(g) for g in running.values()), len(outcome.failed),
                           sum(len(g) for _, g in held))
    finally:
        display.close()
    return outcome


def _collect(sweep_dir: Path, group: list[Cell], future: Future, outcome: SweepOutcome,
             display: _Display, counted: set[Cell]) -> tuple[list[Cell], bool]:
    """Account for an ended population: returns the cells another process held, and
    whether its worker died (the backend is broken)."""
    try:
        results = future.result()
        died = False
    except Exception as error:  # a worker died (killed, out of memory), which ends its pool
        message = (f"a worker process died while this cell ran ({one_line(error)}); "
                   "rerun the sweep to resume it")
        results = {}
        for cell in group:
            if cell_status(sweep_dir, cell) != "finished":
                record_failure(sweep_dir / cell.path, to_dict(cell.config()), message)
                results[str(cell.path)] = {"status": "failed", "skipped": False,
                                           "summary": {"error": message}}
        died = True
    busy = []
    for cell in group:
        result = results.get(str(cell.path))
        if result is None or cell in counted:
            continue  # finished before this sweep started: counted already
        if result["status"] == "busy":
            busy.append(cell)
            continue
        if result["status"] == "finished":
            counted.add(cell)
        _account(cell, result, outcome, display)
    return busy, died


def _account(cell: Cell, result: dict, outcome: SweepOutcome, display: _Display) -> None:
    path = str(cell.path)
    status, summary = result["status"], result["summary"]
    if not result["skipped"]:
        outcome.ran += 1
    if status == "finished":
        outcome.finished += 1
        outcome.failed.pop(path, None)
        if not result["skipped"]:  # else another process finished it
            display.line(f"finished {path}: max_score {_fmt(summary.get('max_score'))}, "
                         f"final_score {_fmt(summary.get('final_score'))} "
                         f"({summary.get('wall_seconds', 0):.0f}s)")
    else:
        outcome.failed[path] = summary.get("error", "unknown error")
        display.line(f"failed   {path}: {outcome.failed[path]}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
