"""A study's page, ``OUT/report.md``: its definition, the budget spent, the best trial's
options beside the search space and their importances, the figures, and every trial.
Written by each worker after each trial, from the database, so it never goes stale."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lpdm.rundir import write_text_atomic
from lpdm.tuning.figures import HISTORY_FILE, IMPORTANCE_FILE

if TYPE_CHECKING:
    from lpdm.tuning.study import TuneSpec

REPORT_FILE = "report.md"


def write_report(out: Path, spec: TuneSpec, rows: list[dict[str, Any]], spent: int,
                 best: Any | None, importances: dict[str, float]) -> None:
    """Write ``OUT/report.md`` from the trials table's ``rows``, the number of trials that
    spent the budget (``study.counted``) and the ``best`` trial."""
    lines = [f"# Tuning study `{spec.name}`", "", *_definition(spec), "",
             _budget(spec, rows, spent), ""]
    if best is None:
        lines += ["No trial has completed yet.", ""]
    else:
        lines += [f"**Best:** trial {best.number}, score {best.value:.1f}; "
                  "`lpdm train --config best.json` trains its options.", "",
                  "| option | search space | best | importance |", "|---|---|---|---|"]
        lines += [f"| `{name}` | {_space(dist)} | {format_value(best.params.get(name))} | "
                  f"{format_value(importances[name]) if name in importances else '—'} |"
                  for name, dist in spec.space.items()]
        lines += ["", "Importance: Optuna's fANOVA share of the completed trials' score "
                  "variance (none with fewer than two completed trials).", ""]
    for figure, caption in ((HISTORY_FILE, "score of every trial and the best so far"),
                            (IMPORTANCE_FILE, "parameter importances")):
        if (out / figure).exists():
            lines += [f"![{spec.name}: {caption}]({figure})", ""]
    lines += ["## Trials", "", "A pruned trial's score is the last mean recent return it "
              "reported to the pruner; seconds are its wall time.", "",
              *_trials_table(spec, rows), ""]
    write_text_atomic(out / REPORT_FILE, "\n".join(lines))


def _definition(spec: TuneSpec) -> list[str]:
    seeds = ", ".join(map(str, spec.seeds))
    fixed = ", ".join(f"`{k}` = {format_value(v)}" for k, v in spec.fixed.items())
    return [f"{spec.env} × {spec.algo.upper()} × `{spec.learner}`: {spec.trials} trials, each "
            f"a population of the held-out seeds {seeds} trained for {spec.total_steps:,} "
            "steps and scored by the mean of their final scores (the mean training return "
            "of the episodes that end in the last 10% of steps); options drawn by TPE "
            f"(sampler seed {spec.sampler_seed}), pruner `{spec.pruner}`."
            + (f" Fixed options: {fixed}." if fixed else "")]


def _budget(spec: TuneSpec, rows: list[dict[str, Any]], spent: int) -> str:
    states = [r["state"] for r in rows]
    failed = sum(r["state"] == "fail" and bool(r["error"]) for r in rows)
    died = sum(r["state"] == "fail" and not r["error"] for r in rows)
    others = {s: states.count(s) for s in ("running", "waiting", "surplus") if s in states}
    uncounted = [f"{died} whose process died (retried with the same options)"] if died else []
    uncounted += [f"{n} {s}" for s, n in others.items()]
    return (f"**Budget:** {spent} of {spec.trials} trials spent: "
            f"{states.count('complete')} complete, {states.count('pruned')} pruned, {failed} "
            "failed (with their cause below)"
            + (f"; not counted: {', '.join(uncounted)}." if uncounted else "."))


def _trials_table(spec: TuneSpec, rows: list[dict[str, Any]]) -> list[str]:
    names = list(spec.space)
    table = ["| trial | state | score | " + " | ".join(f"`{n}`" for n in names)
             + " | seconds | note |", "|---:|---|---:|" + "---|" * len(names) + "---:|---|"]
    for r in rows:
        note = r["error"] or (f"retry of trial {r['retry_of']}" if r["retry_of"] != "" else "")
        score = "" if math.isnan(r["score"]) else f"{r['score']:.1f}"
        seconds = "" if math.isnan(r["seconds"]) else f"{r['seconds']:.0f}"
        table.append(f"| {r['trial']} | {r['state']} | {score} | "
                     + " | ".join(format_value(r.get(f"param_{n}")) for n in names)
                     + f" | {seconds} | {note} |")
    return table


def _space(dist: dict[str, Any]) -> str:
    if dist["type"] == "categorical":
        return "one of " + ", ".join(format_value(c) for c in dist["choices"])
    scale = ", log" if dist.get("log") else ""
    return f"{dist['type']} in [{format_value(dist['low'])}, {format_value(dist['high'])}]{scale}"


def format_value(v: Any) -> str:
    """An option's value as a page shows it: floats to 3 significant digits."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
