"""A study's figures: the optimisation history and the parameter importances, drawn with
matplotlib's object API into ``OUT/history.png`` and ``OUT/importances.png``
(optuna-dashboard on the database shows the same, live)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

HISTORY_FILE = "history.png"
IMPORTANCE_FILE = "importances.png"


def draw_figures(study: Any, out: Path, best: Any | None) -> dict[str, float]:
    """Both figures, each once there is something to draw (``best``: the best trial);
    returns the parameter importances drawn ({} when none)."""
    scored = [t for t in study.trials if t.value is not None]
    if not scored:
        return {}
    figure = Figure(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    axes = figure.subplots()
    numbers = np.array([t.number for t in scored])
    values = np.array([t.value for t in scored])
    axes.scatter(numbers, values, s=18, color="#1f77b4", label="trial")
    axes.step(numbers, np.maximum.accumulate(values), where="post", color="#d62728",
              label="best so far")
    axes.set(xlabel="trial", ylabel="score (mean final score over seeds)",
             title=f"{study.study_name}" + (f" · best {best.value:.1f} (trial {best.number})"
                                            if best else ""))
    axes.legend(frameon=False)
    figure.savefig(out / HISTORY_FILE)
    importances = parameter_importances(study)
    if importances:
        figure = Figure(figsize=(6.4, 0.5 + 0.35 * len(importances)), dpi=100,
                        layout="constrained")
        axes = figure.subplots()
        names = list(importances)[::-1]
        axes.barh(names, [importances[n] for n in names], color="#ff7f0e")
        axes.set(xlabel="importance (fANOVA, share of the score's variance)",
                 title=study.study_name)
        figure.savefig(out / IMPORTANCE_FILE)
    return importances


def parameter_importances(study: Any) -> dict[str, float]:
    """Optuna's parameter importances of the completed trials ({} with fewer than two)."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2 or not complete[0].params:
        return {}
    try:
        with warnings.catch_warnings():  # "importances will be equal" with few trials
            warnings.simplefilter("ignore", UserWarning)
            return optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # too few distinct values to attribute anything
        return {}
