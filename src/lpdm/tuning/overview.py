"""The tuned study's overview: every tuning study under a folder (``ENV/LEARNER/``, as
``lpdm tune --out`` leaves it), one row each with the budget it spent, its best held-out
score and the options that trial chose, as the Markdown block ``lpdm tuned`` writes into a
page between ``BEGIN`` and ``END``. Read from each study's ``tune.json``, ``trials.csv``
and ``best.json``, and from the confirmation archives committed beside the studies
(``suite/parts/*/archive.npz``, and ``long/parts/*/archive.npz`` at a longer budget), so
the page cannot drift from the studies."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpdm.errors import RunError
from lpdm.learners.spec import learner_specs
from lpdm.tuning.report import REPORT_FILE, format_value
from lpdm.tuning.study import BEST_FILE, DEFINITION_FILE, TRIALS_FILE

BEGIN, END = "<!-- tuned:begin -->", "<!-- tuned:end -->"
PARTS = Path("suite/parts")  # the confirmations, beside the studies' folder
LONGER_PARTS = Path("long/parts")  # the confirmations at a longer budget (objection O4)
COMMAND = "lpdm tuned"
# the options the objections of issue 25 name, given their own columns when searched
NAMED = ("lr", "hidden_lr", "scale", "target_scale", "local_update", "guidance_strength")
IDENTITY = ("env", "algo", "learner")


@dataclass(frozen=True)
class StudyRow:
    """One tuning study: its definition, the trials that spent its budget by state, and
    its best trial (``None`` before one completed)."""

    folder: Path
    definition: dict[str, Any]
    spent: dict[str, int]  # complete, pruned, failed
    best: dict[str, Any] | None

    @property
    def total_spent(self) -> int:
        return sum(self.spent.values())


def read_study(folder: Path) -> StudyRow:
    """The study in ``folder`` (a ``tune.json`` and its ``trials.csv``)."""
    try:
        definition = json.loads((folder / DEFINITION_FILE).read_text())
        with open(folder / TRIALS_FILE, newline="") as f:
            trials = list(csv.DictReader(f))
    except (OSError, ValueError) as err:
        raise RunError(f"{folder}: not a finished tuning study ({err})") from err
    # a trial whose process died is retried and not counted; one failed by lpdm is
    failed = sum(t["state"] == "fail" and bool(t["error"]) for t in trials)
    spent = {"complete": sum(t["state"] == "complete" for t in trials),
             "pruned": sum(t["state"] == "pruned" for t in trials), "failed": failed}
    best_file = folder / BEST_FILE
    best = json.loads(best_file.read_text()) if best_file.exists() else None
    return StudyRow(folder, definition, spent, best)


def read_studies(folder: Path) -> list[StudyRow]:
    """Every study under ``folder`` (``ENV/LEARNER/tune.json``), by environment then
    learner as found."""
    found = sorted(folder.glob(f"*/*/{DEFINITION_FILE}"))
    if not found:
        raise RunError(f"{folder}: no tuning study (ENV/LEARNER/{DEFINITION_FILE}) there")
    return [read_study(path.parent) for path in found]


def overview_table(folder: Path, page_dir: Path, learners: tuple[str, ...] = (),
                   envs: tuple[str, ...] = ()) -> str:
    """The overview of the studies under ``folder`` as Markdown, its links relative to
    ``page_dir`` (the folder of the page it goes into); an environment counts as tuned once
    each of ``learners`` (default: every learner with a study under ``folder``) has spent
    its study's budget there. Those of ``envs`` (the environments planned; default: those
    with a study) without any study under ``folder`` are listed as such."""
    unknown = [name for name in learners if name not in learner_specs()]
    if unknown:
        raise RunError(f"--learners: unknown learner {unknown[0]!r} (registered: "
                       f"{', '.join(learner_specs())})")
    rows = read_studies(folder)
    where = Path(os.path.relpath(folder, page_dir)).as_posix()
    searched = {name for row in rows for name in row.definition["space"]}
    named = [name for name in NAMED if name in searched]
    columns = ["environment", "learner", "trials spent (complete, pruned, failed)",
               "best held-out score (trial)", *(f"`{n}`" for n in named), "other options"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        d = row.definition
        page = Path(os.path.relpath(row.folder / REPORT_FILE, page_dir)).as_posix()
        spent = (f"{row.total_spent} of {d['trials']} ({row.spent['complete']}, "
                 f"{row.spent['pruned']}, {row.spent['failed']})")
        values = row.best["values"] if row.best else {}
        best = (f"[{row.best['score']:.1f}]({page}) (trial {row.best['trial']})"
                if row.best else f"[none completed]({page})")
        cells = [d["env"], f"`{d['learner']}`", spent, best]
        cells += [format_value(values[n]) if n in values else "—" for n in named]
        others = [f"`{n}` {format_value(v)}" for n, v in values.items()
                  if n not in named and n not in IDENTITY]
        cells.append(", ".join(others) or "—")
        lines.append("| " + " | ".join(cells) + " |")
    flag = plan_flags(learners, envs)
    lines += ["", _budgets(rows), "",
              _confirmations(rows, folder.parent, page_dir, learners, envs),
              "",
              f"Generated by `{COMMAND} STUDIES{flag} --write PAGE` (STUDIES: `{where}/` beside "
              f"this page) from each study's `{DEFINITION_FILE}`, `{TRIALS_FILE}` and "
              f"`{BEST_FILE}`; `--check PAGE` fails when this block no longer matches them. "
              "A best held-out score is the highest of a study's trials, each a noisy mean "
              "over its seeds: it is biased upward and is a selection, not a verdict. "
              "\"—\": not searched by that study."]
    return "\n".join(lines) + "\n"


def plan_flags(learners: tuple[str, ...], envs: tuple[str, ...]) -> str:
    """`` --learners a,b --envs E,F`` as ``lpdm tuned`` takes them (each left out at its
    default)."""
    return ((f" --learners {','.join(learners)}" if learners else "")
            + (f" --envs {','.join(envs)}" if envs else ""))


def _budgets(rows: list[StudyRow]) -> str:
    """Whether every study had the same budget (trials × seeds × steps) and spent it."""
    budgets = {(r.definition["trials"], len(r.definition["seeds"]),
                r.definition["total_steps"]) for r in rows}
    unfinished = [f"{r.definition['env']} `{r.definition['learner']}`" for r in rows
                  if r.total_spent < r.definition["trials"]]
    if len(budgets) == 1:
        trials, seeds, steps = budgets.pop()
        text = (f"Every study's budget: {trials} trials, each {seeds} held-out seeds × "
                f"{steps:,} steps.")
    else:
        text = ("**The studies' budgets differ** (trials, seeds, steps): "
                + "; ".join(f"{t} × {s} × {n:,}" for t, s, n in sorted(budgets)) + ".")
    if unfinished:
        return text + f" Not yet spent in full: {', '.join(unfinished)}."
    return text + " Every study has spent it."



def _confirmations(rows: list[StudyRow], beside: Path, page_dir: Path,
                   learners: tuple[str, ...], planned: tuple[str, ...]) -> str:
    """Which environments are confirmed (an archive under ``beside/PARTS``: its learners,
    seeds and budget), which have every learner's study finished and wait for it, which are
    still being tuned (a study of one of ``learners`` unfinished or not begun; default: the
    learners of every study under the folder), which of the ``planned`` environments have no
    study yet, and which are confirmed at a longer budget as well (``beside/LONGER_PARTS``,
    once there)."""
    confirmed = _confirmed(beside / PARTS, page_dir)
    envs = list(dict.fromkeys(r.definition["env"] for r in rows))
    wanted = set(learners) or {r.definition["learner"] for r in rows}
    spent = {env for env in envs
             if {r.definition["learner"] for r in rows if r.definition["env"] == env
                 and r.total_spent >= r.definition["trials"]} >= wanted}
    waiting = [env for env in envs if env in spent and env not in confirmed]
    tuning = [env for env in envs if env not in spent]
    not_begun = [env for env in planned if env not in envs]
    begun = f" No study here yet: {', '.join(not_begun)}." if not_begun else ""
    longer = _confirmed(beside / LONGER_PARTS, page_dir)
    at_longer = f" At a longer budget: {'; '.join(longer.values())}." if longer else ""
    return (f"Confirmed: {'; '.join(confirmed.values()) or 'none yet'}. Tuned, not yet "
            f"confirmed: {', '.join(waiting) or 'none'}. Still tuning: "
            f"{', '.join(tuning) or 'none'}.{begun}{at_longer}")


def _confirmed(parts: Path, page_dir: Path) -> dict[str, str]:
    """Per environment of the archives under ``parts`` (``PART/archive.npz``), where it is
    and its learners, seeds, budget and number of finished runs."""
    from lpdm.report.collect import collect_runs
    from lpdm.report.judge import fmt_seeds

    confirmed: dict[str, str] = {}
    for archive in sorted(parts.glob("*/archive.npz")):
        runs = [r for r in collect_runs(archive) if r.finished]
        for env in dict.fromkeys(r.env for r in runs):
            mine = [r for r in runs if r.env == env]
            steps = sorted({r.total_steps for r in mine})
            confirmed[env] = (
                f"{env} (`{Path(os.path.relpath(archive.parent, page_dir)).as_posix()}`: "
                f"{', '.join(f'`{x}`' for x in sorted({r.learner for r in mine}))}, "
                f"{fmt_seeds(sorted({r.seed for r in mine}))}, "
                f"{' and '.join(f'{s:,}' for s in steps)} steps, {len(mine)} finished runs)")
    return confirmed
