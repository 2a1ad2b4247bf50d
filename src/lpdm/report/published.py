"""Published results of other backpropagation-free methods, and our nearest learner beside
them on the leaderboard.

A :class:`PublishedResult` is a score another paper reports for its own method (read off its
figures, so approximate), with the budget it was read at and the learner of ours that
follows that method. :func:`compare` puts our learner's committed runs (and ``bp``'s) on the
same environment beside it. It is a reference point, not a reproduction: the other method's
architecture, settings and environment versions are its own, and the budgets may differ
(the table gives both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lpdm.report.analysis import BASELINE, Group
from lpdm.report.stats import Estimate, probability_of_improvement, summarize
from lpdm.suites import on_minatar

NO_RUNS = Estimate(math.nan)
ARTIFICIAL_DOPAMINE = "Artificial Dopamine (Guan et al., NeurIPS 2024, arXiv 2411.03604)"


@dataclass(frozen=True)
class PublishedResult:
    """``score`` (an episodic return) that ``method`` reaches on ``env`` by ``steps``
    environment steps, read off the paper's figures; ``learner`` is ours that follows it,
    compared on the ``algo`` board."""

    method: str
    algo: str
    env: str
    learner: str
    score: float
    steps: int
    where: str  # which figure, and how the value was read


PUBLISHED: tuple[PublishedResult, ...] = (
    # the values issue 26 quotes from the paper's figures (classic control and MinAtar)
    PublishedResult(ARTIFICIAL_DOPAMINE, "dqn", "CartPole-v1", "layerwise", 500.0, 300_000,
                    "its classic-control learning curves"),
    PublishedResult(ARTIFICIAL_DOPAMINE, "dqn", "LunarLander-v3", "layerwise", 260.0,
                    1_000_000, "its classic-control learning curves (its LunarLander version)"),
    PublishedResult(ARTIFICIAL_DOPAMINE, "dqn", "MinAtar/Breakout-v1", "layerwise", 28.0,
                    5_000_000, "its MinAtar learning curves (its DQN: about 33)"),
)


@dataclass(frozen=True)
class Comparison:
    """A published result and, where committed, our learner's and ``bp``'s runs on its
    environment under its algorithm: IQM final and max scores with 95% intervals, the
    budget they ran (steps) and P(learner > ``bp``) on the final score."""

    published: PublishedResult
    runs: int = 0
    steps: int = 0
    final: Estimate = NO_RUNS
    maximum: Estimate = NO_RUNS
    bp_final: Estimate = NO_RUNS
    versus_bp: Estimate = NO_RUNS


def compare(algo: str, groups: list[Group], minatar: bool = False) -> tuple[Comparison, ...]:
    """Every published result on the ``algo`` board (of MinAtar's games, with ``minatar``,
    else of the other environments) beside the finished runs in ``groups`` (the board's
    groups at the defaults)."""
    found = {(g.setting.env, g.learner): g for g in groups}
    comparisons = []
    for result in (r for r in PUBLISHED if r.algo == algo and on_minatar(r.env) == minatar):
        mine, bp = found.get((result.env, result.learner)), found.get((result.env, BASELINE))
        if mine is None or not mine.values("final_score").size:
            comparisons.append(Comparison(result))
            continue
        finals = mine.values("final_score")
        bp_finals = bp.values("final_score") if bp is not None else finals[:0]
        comparisons.append(Comparison(
            result, runs=len(mine.finished), steps=max(r.total_steps for r in mine.finished),
            final=summarize(finals).iqm, maximum=summarize(mine.values("max_score")).iqm,
            bp_final=summarize(bp_finals).iqm if bp_finals.size else Estimate(math.nan),
            versus_bp=(probability_of_improvement(finals, bp_finals) if bp_finals.size
                       else Estimate(math.nan))))
    return tuple(comparisons)
