"""The leaderboard's figure of one algorithm: each learner's normalised IQM against ``bp``'s
and the goal, and its P(> ``bp``) and P(> ``frozen``), with their 95% intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lpdm.report.analysis import BASELINE, CONTROL, scale_label
from lpdm.report.figures import DPI, color, save_png
from lpdm.report.leaderboard import Leaderboard
from lpdm.report.leaderboard_verdict import GOAL_RATIO
from lpdm.report.stats import Estimate

ROW_INCHES = 0.42


def figure_name(key: str) -> str:
    """The PNG of the board with this key (:attr:`Board.key`), beside the page."""
    return f"{key}.png"


def _interval(ax: Axes, y: float, estimate: Estimate, colour: str, marker: str,
              label: str) -> None:
    """A point at ``estimate`` on row ``y``, with its interval when it has one."""
    error = None
    if estimate.has_interval:
        error = [[estimate.value - estimate.low], [estimate.high - estimate.value]]
    ax.errorbar(estimate.value, y, xerr=error, fmt=marker, color=colour, capsize=3,
                markersize=6, label=label)


def drawable(board: Leaderboard) -> bool:
    """Whether any learner of ``board`` has a normalised IQM to draw."""
    return any(np.isfinite(s.normalised_iqm.value) for s in board.standings)


def draw(board: Leaderboard, path: Path) -> bool:
    """Two panels, a row per learner (best first): the pooled normalised IQM (bars, 95%
    interval), with ``bp``'s IQM and the goal at ``GOAL_RATIO`` of it as lines; and the mean
    P(> ``bp``) (circles) and P(> ``frozen``) (squares). False when nothing is drawn."""
    if not drawable(board):
        return False
    standings = [s for s in board.standings if np.isfinite(s.normalised_iqm.value)]
    height = 1.4 + ROW_INCHES * len(standings)
    figure = Figure(figsize=(10, height), dpi=DPI, layout="constrained")
    scores, chances = figure.subplots(1, 2, sharey=True, width_ratios=(3, 2))
    rows = np.arange(len(standings))[::-1]  # the best on top
    labels = {"o": f"P(> {BASELINE})", "s": f"P(> {CONTROL})"}
    for y, standing in zip(rows, standings, strict=True):
        iqm = standing.normalised_iqm
        error = None
        if iqm.has_interval:
            error = [[iqm.value - iqm.low], [iqm.high - iqm.value]]
        scores.barh(y, iqm.value, 0.7, xerr=error, color=color(standing.learner), alpha=0.8,
                    capsize=3, ecolor="black")
        _interval(chances, y + 0.12, standing.versus_bp, color(BASELINE), "o",
                  labels.pop("o", "_"))
        _interval(chances, y - 0.12, standing.versus_frozen, color(CONTROL), "s",
                  labels.pop("s", "_"))
    scores.set_yticks(rows, [s.learner for s in standings])
    bp = board.standing(BASELINE)
    if bp is not None and bp.normalised_iqm.value > 0:
        scores.axvline(bp.normalised_iqm.value, color=color(BASELINE), ls="--", lw=1,
                       label="bp")
        scores.axvline(GOAL_RATIO * bp.normalised_iqm.value, color="black", ls=":", lw=1.2,
                       label=f"goal: {GOAL_RATIO:g}× bp")
        scores.legend(loc="best", fontsize=8)
    scores.axvline(0, color="grey", lw=0.6)
    scores.set_xlabel(f"IQM of normalised final score, 95% CI ({scale_label(board.normalisation)})")
    scores.set_title(f"{board.title}: {len(board.envs)} environments",
                     fontsize=10)
    chances.axvline(0.5, color="grey", lw=0.8, ls="--")
    chances.set_xlim(-0.02, 1.02)
    chances.set_xlabel("mean over environments, 95% CI")
    chances.legend(loc="best", fontsize=8)
    chances.set_title("P(a run of the learner scores higher)", fontsize=10)
    return save_png(figure, path)
