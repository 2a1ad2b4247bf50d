"""Which backpropagation-free learner to use, where, and how far it is from ``bp``: the
leaderboard's paragraph, generated from its numbers by the rules of ``RULES``.

The goal (issue 26): a BP-free learner at ``GOAL_RATIO`` or more of ``bp``'s normalised IQM
under each of ``GOAL_ALGOS``, above ``frozen`` on every environment. Under each algorithm
the paragraph names the BP-free learner that meets it (the highest ratio of those that do),
else the one that comes closest (the highest ratio) and what bounds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lpdm.report.analysis import BASELINE, CONTROL
from lpdm.report.judge import algorithm_name, fmt, fmt_estimate
from lpdm.report.leaderboard import (
    BP_FREE,
    LAYER_READINGS,
    Leaderboard,
    Standing,
    reading_text,
)
from lpdm.report.stats import SIGNIFICANCE, Estimate

GOAL_RATIO = 0.9
GOAL_ALGOS = ("ppo", "dqn")
RULES = (
    f"**meets the goal**: a BP-free learner whose pooled normalised IQM is at least "
    f"{GOAL_RATIO:g}× `bp`'s (the point estimate; on the environments both ran), that ran "
    f"on every environment of the board and is above `{CONTROL}` on each (the pooled IQM "
    "trims the lowest and highest quarter of all the board's runs together, so a learner "
    f"can meet it while below {GOAL_RATIO:g}× `bp` on an environment: **where** names them)",
    f"**above `{CONTROL}` on an environment**: P(learner > `{CONTROL}`) above 0.5 and a "
    "higher IQM of final scores there, significant or not (with few runs per environment, "
    "a Holm correction over the environments may leave no single one significant: the "
    "significant counts are given beside)",
    "**use**: the BP-free learner that meets the goal at the highest ratio to `bp`; when "
    "none does, the **closest**: the highest ratio (a higher normalised IQM where `bp` has "
    "no runs) among the learners studied on every environment of the board; those studied "
    "on fewer are listed with their ratio to `bp` on their own environments",
    "**what bounds it**: the ratio below the goal (and whether its 95% interval reaches "
    f"it), the environments where it is not above `{CONTROL}`, and its last hidden layer",
    f"**where**: the environments where its normalised IQM is at least {GOAL_RATIO:g}× "
    "`bp`'s, those where it is below that (furthest below first), both where `bp`'s is "
    "positive, and those where another BP-free learner has the higher normalised IQM",
    "**tuning moved**: on a tuned board, the pick's and `bp`'s IQM after tuning over their "
    "own at the defaults, on the environments each has both",
    f"**cannot rank trunks**: a board where the 95% interval of `bp`'s P(> `{CONTROL}`) "
    "does not lie above 0.5: its algorithm does not tell a trained trunk from a random one "
    "at these settings, so its ranking is the data's, not a verdict on the learners",
)


@dataclass(frozen=True)
class Verdict:
    """One board judged: the BP-free learner to use (None without any), whether it meets
    the goal, and the sentences that say so."""

    algo: str
    learner: str | None
    meets_goal: bool
    text: str


def meets_goal(standing: Standing, board: Leaderboard) -> bool:
    """On every environment of the board (a learner studied on fewer cannot meet it)."""
    return (standing.kind == BP_FREE and standing.ratio_to_bp.value >= GOAL_RATIO
            and standing.above_frozen_everywhere
            and board.studied_everywhere(standing))


def _rank(standing: Standing) -> tuple[float, float]:
    def value(x: float) -> float:
        return x if math.isfinite(x) else -math.inf

    return value(standing.ratio_to_bp.value), value(standing.normalised_iqm.value)


def judge_board(board: Leaderboard) -> Verdict:
    """The learner to use under ``board``'s algorithm, and why, by the rules of ``RULES``."""
    name = board.title
    local = [s for s in board.standings if s.kind == BP_FREE]
    if not local:
        return Verdict(board.algo, None, False,
                       f"Under {name} no BP-free learner has committed runs yet.")
    meeting = [s for s in local if meets_goal(s, board)]
    # the closest among those studied on every environment: a ratio on fewer environments
    # is not comparable with one on the whole board
    complete = [s for s in local if board.studied_everywhere(s)]
    pick = max(meeting or complete or local, key=_rank)
    bp = board.standing(BASELINE)
    distance = _distance(pick, bp)
    if meeting:
        others = [f"`{s.learner}`" for s in meeting if s is not pick]
        text = (f"Under {name} use `{pick.learner}`: it **meets the goal**, {distance}"
                f"{_frozen(pick, board)}"
                + (f"; {', '.join(others)} meet{'s' if len(others) == 1 else ''} it too"
                   if others else "") + ".")
    else:
        text = (f"Under {name} no BP-free learner meets the goal; the closest is "
                f"`{pick.learner}`, {distance}. What bounds it: {_bounds(pick, bp, board)}.")
    return Verdict(board.algo, pick.learner, bool(meeting),
                   _cannot_rank(bp, name) + text + _where(pick, bp, local, board)
                   + _cost(pick) + _tuning(pick, board) + _partial(local, board))


def _cannot_rank(bp: Standing | None, name: str) -> str:
    """The warning that opens a board whose bp is not shown above frozen, else ``""``."""
    if bp is None or not bp.versus_frozen.has_interval or bp.versus_frozen.low > 0.5:
        return ""
    return (f"Under {name} `bp` itself is not shown above `{CONTROL}` (P(> `{CONTROL}`) "
            f"{fmt_estimate(bp.versus_frozen)}): at these settings {name} **cannot rank "
            "trunks**, so what follows is the data's ranking, not a verdict. ")


def _distance(pick: Standing, bp: Standing | None) -> str:
    """How far it is from bp: the ratio of normalised IQMs, the IQMs, and P(> bp)."""
    iqm = f"normalised IQM {fmt_estimate(pick.normalised_iqm)}"
    if bp is None:
        return f"{iqm} (no `bp` runs to compare with)"
    ratio = pick.ratio_to_bp
    if not math.isfinite(ratio.value):
        return f"{iqm} (no ratio: `bp`'s is {fmt_estimate(bp.normalised_iqm)})"
    return (f"at {_times(ratio)} `bp`'s normalised IQM "
            f"({fmt_estimate(pick.normalised_iqm)} against {fmt_estimate(bp.normalised_iqm)}), "
            f"P(> `bp`) {fmt_estimate(pick.versus_bp)}")


def _frozen(pick: Standing, board: Leaderboard) -> str:
    """How often it is above frozen, and significantly so."""
    compared = len(pick.compared_with_frozen)
    if not compared:
        return f", with no `{CONTROL}` runs to compare with"
    every = "all " if len(pick.higher_than_frozen) == compared else ""
    text = (f", above `{CONTROL}` on {every}{len(pick.higher_than_frozen)} of {compared} "
            f"environments ({_significant(pick, board)})")
    return text


def _significant(pick: Standing, board: Leaderboard) -> str:
    text = (f"significantly higher after Holm on {len(pick.beats_frozen)}, lower on "
            f"{len(pick.loses_to_frozen)}")
    if not pick.beats_frozen and board.holm_floor >= SIGNIFICANCE:
        text += (f"; at these run counts no environment can be, the smallest adjusted p being "
                 f"{fmt(board.holm_floor)}")
    return text


def _bounds(pick: Standing, bp: Standing | None, board: Leaderboard) -> str:
    parts = []
    ratio = pick.ratio_to_bp
    if math.isfinite(ratio.value) and ratio.value < GOAL_RATIO:
        reach = ("its 95% interval lies below" if ratio.has_interval and ratio.high < GOAL_RATIO
                 else "though its 95% interval reaches it" if ratio.has_interval
                 else "without an interval")
        parts.append(f"it is short of the {GOAL_RATIO:g}× goal ({reach})")
    elif not math.isfinite(ratio.value):
        parts.append("no ratio to `bp` (no `bp` runs, or `bp`'s normalised IQM is not "
                     "positive)")
    if not pick.above_frozen_everywhere:
        missed = [env for env in pick.compared_with_frozen if env not in pick.higher_than_frozen]
        compared = len(pick.compared_with_frozen)
        if compared:
            parts.append(f"it is above `{CONTROL}` on only {len(pick.higher_than_frozen)} of "
                         f"{compared} environments (not on {', '.join(missed)}; "
                         f"{_significant(pick, board)})")
        else:
            parts.append(f"no `{CONTROL}` runs to compare with")
    if layer := _last_layer(pick, bp):
        parts.append(layer)
    return "; ".join(parts)


def _last_layer(pick: Standing, bp: Standing | None) -> str:
    """What its last hidden layer ends as, beside ``bp``'s (empty where no run kept it)."""
    readings = []
    for reading in LAYER_READINGS:
        if reading.layer != -1 or (value := pick.layer_readings.get(reading.key)) is None:
            continue
        theirs = bp.layer_readings.get(reading.key) if bp is not None else None
        readings.append(f"{reading.label} {reading_text(reading, value)}" + (
            f" (`bp`: {reading_text(reading, theirs)})" if theirs is not None else ""))
    return ("its policy's last hidden layer ends training at " + ", ".join(readings)
            if readings else "")


def _where(pick: Standing, bp: Standing | None, local: list[Standing],
           board: Leaderboard) -> str:
    """Where it comes near bp, and where another BP-free learner scores higher."""
    text = ""
    if bp is not None:
        compared = [env for env in board.envs if bp.per_env.get(env, 0) > 0
                    and math.isfinite(pick.per_env.get(env, math.nan))]
        near = [env for env in compared if pick.per_env[env] >= GOAL_RATIO * bp.per_env[env]]
        far = sorted((env for env in compared if env not in near),
                     key=lambda env: pick.per_env[env] - bp.per_env[env])
        below = ", ".join(f"{env} ({fmt(pick.per_env[env])} against {fmt(bp.per_env[env])})"
                          for env in far)
        text += (f" `{pick.learner}` is within {GOAL_RATIO:g}× of `bp`'s normalised IQM on "
                 f"{', '.join(near) if near else 'no environment'}"
                 + (f", and under {GOAL_RATIO:g}× on {below}" if far else "") + ".")
    better: dict[str, list[str]] = {}
    for env in board.envs:
        scored = [s for s in local if math.isfinite(s.per_env.get(env, math.nan))]
        best = max(scored, key=lambda s: s.per_env[env], default=None)
        if best is not None and best is not pick and \
                best.per_env[env] > pick.per_env.get(env, -math.inf):
            better.setdefault(best.learner, []).append(env)
    for learner, envs in better.items():
        text += f" `{learner}` scores higher on {', '.join(envs)}."
    return text


def _tuning(pick: Standing, board: Leaderboard) -> str:
    """On a tuned board: what tuning changed for the pick and for bp, against their runs at
    the defaults."""
    effects = {e.learner: e for e in board.tuning_effects}
    parts = [f"`{e.learner}`'s normalised IQM to {_times(e.ratio)} its own at the defaults "
             f"(significantly higher on {len(e.higher)} of {len(e.envs)} environments, lower "
             f"on {len(e.lower)})"
             for learner in (pick.learner, BASELINE) if (e := effects.get(learner))]
    return f" Tuning moved {' and '.join(parts)}." if parts else ""


def _times(ratio: Estimate) -> str:
    """A ratio as the paragraph writes it: ``0.99× [0.93, 1.07]``."""
    interval = f" [{fmt(ratio.low)}, {fmt(ratio.high)}]" if ratio.has_interval else ""
    return f"{fmt(ratio.value)}×{interval}"


def _partial(local: list[Standing], board: Leaderboard) -> str:
    """The BP-free learners studied on fewer environments, with their ratio to bp there."""
    partial = [s for s in local if not board.studied_everywhere(s)]
    if not partial:
        return ""
    parts = [f"`{s.learner}` ({s.environments} of {len(board.envs)}: "
             f"{fmt_estimate(s.ratio_to_bp)}× `bp` there)" for s in partial]
    return (" Studied on fewer environments so far, so not ranked against those above: "
            + ", ".join(parts) + ".")


def _cost(pick: Standing) -> str:
    cost = pick.time_vs_bp
    if not cost.settings:
        return ""
    spread = (f", {fmt(cost.low)}–{fmt(cost.high)}" if cost.settings > 1 else "")
    return (f" `{pick.learner}` takes {fmt(cost.median)}× `bp`'s time per iteration (median over "
            f"{cost.settings} environment{'s' if cost.settings > 1 else ''}{spread}).")


def summary(boards: list[Leaderboard]) -> str:
    """The paragraph: the goal, where it is met, then each board's verdict."""
    verdicts = [judge_board(board) for board in boards]
    # the goal is asked of the suite at the defaults; a tuned board, and MinAtar's, give
    # their own verdicts
    goal = [v for v, b in zip(verdicts, boards, strict=True)
            if b.algo in GOAL_ALGOS and not b.tuned and not b.minatar]
    met = [algorithm_name(v.algo) for v in goal if v.meets_goal]
    unmet = [algorithm_name(a) for a in GOAL_ALGOS if algorithm_name(a) not in met]
    asked = " and under ".join(algorithm_name(a) for a in GOAL_ALGOS)
    if not met:
        status = "It is not met"
    else:
        status = f"It is met under {' and '.join(met)}" + (
            f", not under {' or '.join(unmet)}" if unmet else "")
    head = (f"The goal: a BP-free learner at {GOAL_RATIO:g}× or more of `bp`'s normalised IQM "
            f"under {asked}, above `{CONTROL}` on every environment. {status}.")
    return " ".join([head, *(v.text for v in verdicts)])
