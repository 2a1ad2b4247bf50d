"""Machine-readable results: ``scores.csv`` (one row per setting and learner), ``runs.csv``
(written, and read back for studies that committed no archive), and ``layer_profiles.csv``
(one row per setting, learner and layer)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np

from lpdm.errors import RunError
from lpdm.report.analysis import REPORTED_SCORES, SCORES, Analysis
from lpdm.report.profiles import LAYER_FIELDS, end_of_training_profiles
from lpdm.report.records import RunRecord, number, relative_path
from lpdm.report.stats import Estimate

SCORE_FIELDS = ("n", "mean", "mean_low", "mean_high", "std", "median", "median_low",
                "median_high", "iqm", "iqm_low", "iqm_high")


def _cell(value: object) -> object:
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def _estimate(prefix: str, value: Estimate | None) -> dict[str, object]:
    if value is None:
        return {}
    return {prefix: value.value, f"{prefix}_low": value.low, f"{prefix}_high": value.high}


def score_rows(analysis: Analysis) -> list[dict[str, object]]:
    """One row per setting and learner: score statistics, stuck runs, timings, and against
    each reference P(learner > reference) with the raw and Holm-adjusted p-values."""
    verdicts = {(v.setting, v.learner, v.reference, v.score): v for v in analysis.verdicts}
    rows = []
    for group in analysis.groups:
        s = group.setting
        row: dict[str, object] = {
            "env": s.env, "algo": s.algo, "variant": s.variant, "learner": group.learner,
            "runs": len(group.runs), "finished": len(group.finished)}
        for score in REPORTED_SCORES:
            summary = group.scores[score]
            row[f"{score}_n"] = summary.n
            row[f"{score}_std"] = summary.std
            for name in ("mean", "median", "iqm"):
                row |= _estimate(f"{score}_{name}", getattr(summary, name))
        row["stuck_threshold"] = analysis.thresholds.get((s.env, s.algo), math.nan)
        row |= _estimate("stuck_fraction", group.stuck)
        row |= _estimate("steps_to_threshold_median", group.convergence)
        reached = np.isfinite(group.steps_to_threshold)
        row["reached_threshold"] = int(reached.sum()) if reached.size else ""
        row |= _estimate("time_per_iteration_vs_bp", analysis.time_ratio(s, group.learner))
        for reference, by_score in group.versus.items():
            for score in SCORES:
                name = re.sub(r"[^\w-]+", "_", reference)  # "lpdm at defaults": lpdm_at_defaults
                row |= _estimate(f"poi_vs_{name}_{score}", by_score.get(score))
                verdict = verdicts.get((s, group.learner, reference, score))
                if verdict is not None:  # the raw p, and Holm's over the verdict's family
                    row[f"p_vs_{name}_{score}"] = verdict.p_value
                    row[f"p_holm_vs_{name}_{score}"] = verdict.p_adjusted
                    row[f"holm_tests_vs_{name}_{score}"] = verdict.tests
        for attribute in ("seconds_per_iteration", "update_seconds_per_iteration",
                          "seconds_per_1k_steps"):
            row[attribute] = group.mean_of(attribute)
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


def write_scores(path: Path, analysis: Analysis) -> None:
    write_csv(path, score_rows(analysis))


def write_runs(path: Path, analysis: Analysis, source: Path) -> None:
    rows = [{"path": relative_path(r.path, source), "env": r.env, "algo": r.algo,
             "learner": r.learner,
             "variant": r.variant, "seed": r.seed, "status": r.status,
             "final_score": r.final_score, "max_score": r.max_score,
             "eval_score": r.eval_score,
             "seconds_per_iteration": r.seconds_per_iteration, "error": r.error}
            for r in analysis.runs]
    write_csv(path, rows)


RUN_FIELDS = ("path", "env", "algo", "learner", "variant", "seed", "status", "final_score",
              "max_score", "eval_score", "seconds_per_iteration", "error")


def read_runs(path: Path) -> list[RunRecord]:
    """The runs of a report's ``runs.csv``: their scores and status, without training
    returns, options or timings other than the time per iteration (scores kept to the 6
    significant digits the file holds)."""
    def value(text: str) -> float:
        return number(float(text)) if text else math.nan

    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or set(RUN_FIELDS) - set(rows[0]):
        raise RunError(f"{path} is not a report's runs.csv (columns {', '.join(RUN_FIELDS)})")
    empty = {"global_step": np.array([]), "episodic_return": np.array([])}
    return [RunRecord(path=path.parent / row["path"], env=row["env"], algo=row["algo"],
                      learner=row["learner"], variant=row["variant"], seed=int(row["seed"]),
                      status=row["status"], final_score=value(row["final_score"]),
                      max_score=value(row["max_score"]), eval_score=value(row["eval_score"]),
                      total_steps=0, seconds_per_iteration=value(row["seconds_per_iteration"]),
                      update_seconds_per_iteration=math.nan, seconds_per_1k_steps=math.nan,
                      error=row["error"], stored_options={}, stored_metrics=empty)
            for row in rows]


def write_layer_profiles(path: Path, analysis: Analysis) -> bool:
    """Each layer's diagnostics at the end of training, IQM across seeds (the numbers of
    ``layer_profiles.png``); layer 1 is next to the input. False (nothing written) when no
    run logged per-layer diagnostics."""
    profiles = end_of_training_profiles(analysis)
    rows = [{"env": s.env, "algo": s.algo, "variant": s.variant, "learner": learner,
             "layer": layer + 1, "layers": profile.shape[0],
             **{field: profile[layer, f] for f, (field, _) in enumerate(LAYER_FIELDS)}}
            for (s, learner), profile in profiles.items() for layer in range(profile.shape[0])]
    if rows:
        write_csv(path, rows)
    return bool(rows)
