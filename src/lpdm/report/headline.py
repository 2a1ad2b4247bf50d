"""The README's answer to "does it work as the paper says?", generated from the committed data
(:func:`headline`): the PPO and DQN leaderboards at the defaults, the verdicts of the claims
it names, REINFORCE's gate, the tuned study's confirmed environments so far, and the same
tuned options at a longer budget where committed. ``lpdm headline --write README.md`` keeps
it in the README between ``BEGIN`` and ``END``."""

from __future__ import annotations

import math
from pathlib import Path

from lpdm.report.analysis import BASELINE, CONTROL
from lpdm.report.claims import CLAIMS, Claim
from lpdm.report.judge import (
    Finding,
    fmt,
    fmt_estimate,
    fmt_seeds,
    fmt_steps,
    judge,
    load_runs,
    verdict_text,
)
from lpdm.report.leaderboard import BOARDS, Board, Leaderboard, Standing, compute
from lpdm.report.stats import SIGNIFICANCE

BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"
TUNED_PARTS = "docs/results/tuned/suite/parts"
LONGER_PARTS = "docs/results/tuned/long/parts"  # the same tuned options at 1M steps (O4)
# the tuned study's environments (docs/results/tuned/run.sh), in its order
TUNED_ENVS = ("CartPole-v1", "Pendulum-v1", "InvertedDoublePendulum-v4", "Hopper-v4",
              "HalfCheetah-v4")
CLOSE = 0.05  # per environment: normalised IQMs within this of bp's count as level
SUBJECT = "lpdm"

# the claims the headline gives the verdict of, by their statements in lpdm.report.claims
COMPETITIVE = "LPDM competitive with BP on the 8 benchmark environments"
STUCK = "LPDM runs get stuck less often than BP's"
GUIDED = "L_g better than L_u in 20 of 24 comparisons"
OPEN_QUESTIONS = (("with more layers (open question 1)",
                   "Open question 1: LPDM holds up at depth (no vanishing gradients)"),
                  ("on MinAtar's images with conv trunks (open question 2)",
                   "Open question 2: LPDM carries over to convolutional layers"),
                  ("under DQN (open question 3)",
                   "Open question 3: LPDM works with value-based RL"),
                  ("as a trunk transferred to a new task",
                   "Task-agnostic trunks: an LPDM trunk transfers at least as well as a BP trunk"))


def find_claim(statement: str) -> Claim:
    """The claim of ``CLAIMS`` with this statement (a renamed claim is an error here)."""
    for claim in CLAIMS:
        if claim.statement == statement:
            return claim
    raise KeyError(f"no claim {statement!r} in lpdm.report.claims.CLAIMS")


def _finding(findings: list[Finding], algo: str) -> Finding:
    return next(f for f in findings if f.algo == algo)


def headline(root: Path) -> str:
    """The paragraph, as Markdown, from the committed data under ``root``."""
    boards = {board.key: compute(root, board) for board in BOARDS if not board.tuned}
    suite = judge(find_claim(COMPETITIVE), root)
    sentences = [_suite(boards["ppo"], _finding(suite, "ppo")),
                 _frozen(boards["ppo"]), _aggregates(boards["ppo"]),
                 _claims(root), _cost(boards["ppo"]), _open_questions(root, boards["dqn"]),
                 _reinforce(_finding(suite, "reinforce"))]
    return " ".join(s for s in [*sentences, _tuned(root), _longer(root)] if s) + "\n"


def _standings(board: Leaderboard) -> tuple[Standing, Standing, Standing]:
    found = [board.standing(name) for name in (SUBJECT, BASELINE, CONTROL)]
    if any(s is None for s in found):
        raise KeyError(f"the {board.algo} leaderboard lacks one of {SUBJECT}, {BASELINE}, "
                       f"{CONTROL}")
    return found[0], found[1], found[2]


def _level_and_below(lpdm: Standing, bp: Standing) -> tuple[list[str], list[str]]:
    level, below = [], []
    for env, value in lpdm.per_env.items():
        reference = bp.per_env.get(env, math.nan)
        if not (math.isfinite(value) and math.isfinite(reference)):
            continue
        if value < reference - CLOSE:
            below.append(env)
        elif value <= reference + CLOSE:
            level.append(env)
    return level, below


def _suite(board: Leaderboard, finding: Finding) -> str:
    lpdm, bp, _ = _standings(board)
    level, below = _level_and_below(lpdm, bp)
    where = f" and level (within {CLOSE}) on {', '.join(level)}" if level else ""
    return (f"**Does it work as the paper says?** That LPDM is competitive with "
            f"backpropagation is {verdict_text(finding)} under PPO on the paper's "
            f"{lpdm.environments} environments ({fmt_seeds(board.seeds)}, the suite's budgets, the "
            "library defaults): across environments the IQM of its final scores, normalised "
            "by fixed references (0: a random policy, 1: CleanRL's or a comparable published "
            f"PPO result), is {fmt_estimate(lpdm.normalised_iqm)} against `bp`'s "
            f"{fmt_estimate(bp.normalised_iqm)}, a run of it beats a `bp` run with "
            f"probability {fmt_estimate(lpdm.versus_bp)}, and per environment its normalised "
            f"IQM is more than {CLOSE} below `bp`'s on {len(below)} of {lpdm.environments}"
            f"{where}.")


def _frozen(board: Leaderboard) -> str:
    lpdm, _, frozen = _standings(board)
    p = lpdm.versus_frozen
    reading = ("above 0.5: better" if p.low > 0.5 else "below 0.5: worse" if p.high < 0.5
               else "reaching 0.5: not told apart")
    return (f"Against a frozen random trunk a run of it scores higher with probability "
            f"{fmt_estimate(p)} (its interval {reading}), while the normalised IQMs are "
            f"{fmt_estimate(lpdm.normalised_iqm)} and `frozen`'s "
            f"{fmt_estimate(frozen.normalised_iqm)}.")


def _aggregates(board: Leaderboard) -> str:
    if not board.holm_floor >= SIGNIFICANCE:
        return ""
    return (f"These verdicts rest on the aggregates: at {fmt_seeds(board.seeds)} no single "
            f"environment's difference can survive a Holm correction over "
            f"{len(board.envs)} (the smallest adjusted p it can reach is "
            f"{fmt(board.holm_floor)}).")


def _claims(root: Path) -> str:
    stuck = _finding(judge(find_claim(STUCK), root), "ppo")
    guided = _finding(judge(find_claim(GUIDED), root), "ppo")
    return (f"Under PPO, that its runs get stuck less often than backpropagation's is "
            f"{verdict_text(stuck)} ({stuck.statistic}), and that reward guidance beats plain "
            f"matching in 20 of 24 comparisons is {verdict_text(guided)} "
            f"({guided.statistic}; [the suite study](docs/results/suite/README.md)).")


def _cost(board: Leaderboard) -> str:
    cost = _standings(board)[0].time_vs_bp
    if not cost.settings:
        return ""
    return (f"It takes {fmt(cost.low)}–{fmt(cost.high)}× backpropagation's time per PPO "
            f"iteration (median {fmt(cost.median)}× over {cost.settings} environments).")


def _open_questions(root: Path, dqn: Leaderboard) -> str:
    parts = []
    for where, statement in OPEN_QUESTIONS:
        findings = judge(find_claim(statement), root)
        verdicts = "; ".join(verdict_text(f) for f in findings)
        parts.append(f"{where}: {verdicts} (P(> `frozen`) {findings[0].versus_frozen})")
    lpdm, bp, _ = _standings(dqn)
    return ("Beyond the paper's claims, that LPDM holds up " + "; ".join(parts) + ". Under "
            f"DQN its normalised IQM is {fmt_estimate(lpdm.normalised_iqm)} against `bp`'s "
            f"{fmt_estimate(bp.normalised_iqm)} on {', '.join(dqn.envs)} ([depth]"
            "(docs/results/depth/README.md), [MinAtar](docs/results/minatar/README.md), "
            "[DQN](docs/results/dqn/README.md), [transfer](docs/results/transfer/README.md)).")


def _reinforce(finding: Finding) -> str:
    if not finding.why_not_judged:
        return ""
    return (f"Under REINFORCE at these settings `bp` itself is not shown above a frozen random "
            f"trunk ({finding.why_not_judged}), so REINFORCE judges none of the claims.")


def _tuned(root: Path) -> str:
    intro = ("These are verdicts at the defaults. After equal-budget tuning of every learner "
             "([the tuned study](docs/results/tuned/README.md), `lpdm tune`: 16 trials × 3 "
             "held-out seeds × 100k steps each)")
    if not (root / TUNED_PARTS).is_dir():
        return f"{intro}, no environment is confirmed yet."
    board = compute(root, Board("ppo", (TUNED_PARTS,)))
    rest = [env for env in TUNED_ENVS if env not in board.envs]
    to_come = f"; {', '.join(rest)} to come" if rest else ""
    return (f"{intro}, confirmed so far on {', '.join(board.envs)} ({fmt_seeds(board.seeds)}, the "
            f"suite's budgets{to_come}): {_standing_clause(board)}.")


def _longer(root: Path) -> str:
    """The same tuned options at the longer budget (objection O4), once committed."""
    if not (root / LONGER_PARTS).is_dir():
        return ""
    board = compute(root, Board("ppo", (LONGER_PARTS,)))
    steps = sorted({r.total_steps for r in load_runs(root, (LONGER_PARTS,)) if r.finished})
    budget = " and ".join(fmt_steps(n) for n in steps)
    return (f"With the same tuned options at {budget} steps on {', '.join(board.envs)} "
            f"({fmt_seeds(board.seeds)}; objection O4, that the suite's budgets are short): "
            f"{_standing_clause(board)}.")


def _standing_clause(board: Leaderboard) -> str:
    """LPDM's normalised IQM against bp's and frozen's, and P(lpdm > bp), P(lpdm > frozen)."""
    lpdm, bp, frozen = _standings(board)
    return (f"LPDM's normalised IQM is {fmt_estimate(lpdm.normalised_iqm)} against `bp`'s "
            f"{fmt_estimate(bp.normalised_iqm)} and `frozen`'s "
            f"{fmt_estimate(frozen.normalised_iqm)}, P(lpdm > bp) = "
            f"{fmt_estimate(lpdm.versus_bp)}, P(lpdm > frozen) = "
            f"{fmt_estimate(lpdm.versus_frozen)}")
