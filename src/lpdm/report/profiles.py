"""Per-layer diagnostics read from the runs' ``metrics.csv``: the columns of one layer,
their IQM across seeds, and each layer's value at the end of training (what a depth study
reads, as ``layer_profiles.png`` and ``layer_profiles.csv``)."""

from __future__ import annotations

import warnings

import numpy as np

from lpdm.report.analysis import Analysis, Setting
from lpdm.report.stats import iqm

# The diagnostics logged per layer (``<network>_l<k>_<field>``), with their plot labels.
LAYER_FIELDS = (("saturation", "saturated units (|y| > 0.99)"),
                ("distance_corr", "corr(target, output distances)"),
                ("distance_entropy", "entropy of distances / max"),
                ("grad_norm", "gradient norm at the weights"))
# Diagnostics only some learners log (their ``extra_diagnostics``), with their plot labels.
EXTRA_FIELDS = (("bp_alignment", "cosine with backprop"),)
END_OF_TRAINING = 0.1  # the fraction of a run's steps whose diagnostics are averaged


def nan_iqm(curves: np.ndarray) -> np.ndarray:
    """IQM across runs ``[runs, points] -> [points]``, ignoring NaN (a run with no value)."""
    out = np.full(curves.shape[1], np.nan)
    for j in range(curves.shape[1]):
        column = curves[:, j][np.isfinite(curves[:, j])]
        if column.size:
            out[j] = float(iqm(column))
    return out


def diagnostic_columns(run_columns: dict[str, np.ndarray], field: str) -> list[str]:
    """The first network's per-layer columns of ``field``, layer by layer."""
    names = [n for n in run_columns if n.endswith(f"_{field}") and "_l" in n]
    if not names:
        return []
    network = names[0].split("_l")[0]
    mine = [n for n in names if n.startswith(f"{network}_l")]
    return sorted(mine, key=lambda n: int(n[len(network) + 2:].split("_")[0]))


def at_end(table: dict[str, np.ndarray], name: str) -> float:
    """Mean of column ``name`` over the last ``END_OF_TRAINING`` of the run's steps."""
    steps, values = table["global_step"], table.get(name, np.array([]))
    if not values.size:
        return np.nan
    late = (steps >= (1 - END_OF_TRAINING) * np.nanmax(steps)) & np.isfinite(values)
    return float(values[late].mean()) if late.any() else np.nan


def end_of_training_profiles(analysis: Analysis) -> dict[tuple[Setting, str], np.ndarray]:
    """For each setting and learner with per-layer diagnostics: ``[layers, fields]``, each
    layer's value of each of ``LAYER_FIELDS`` at the end of training, IQM across seeds
    (layer 0 next to the input; NaN where no run logged it)."""
    profiles: dict[tuple[Setting, str], np.ndarray] = {}
    for setting in analysis.settings:
        for learner in analysis.learners:
            group = analysis.group(setting, learner)
            if group is None or not group.finished:
                continue
            tables = [run.metrics() for run in group.finished]
            columns = {field: diagnostic_columns(tables[0], field) for field, _ in LAYER_FIELDS}
            layers = len(columns["saturation"])
            if not layers:
                continue
            values = np.full((len(tables), layers, len(LAYER_FIELDS)), np.nan)
            for r, table in enumerate(tables):
                for f, (field, _) in enumerate(LAYER_FIELDS):
                    for layer, name in enumerate(columns[field][:layers]):
                        values[r, layer, f] = at_end(table, name)
            with warnings.catch_warnings():  # a layer with no value in any run
                warnings.simplefilter("ignore", RuntimeWarning)
                profiles[setting, learner] = np.stack([nan_iqm(values[:, :, f])
                                                       for f in range(len(LAYER_FIELDS))], 1)
    return profiles


__all__ = ["END_OF_TRAINING", "EXTRA_FIELDS", "LAYER_FIELDS", "at_end", "diagnostic_columns",
           "end_of_training_profiles", "nan_iqm"]
