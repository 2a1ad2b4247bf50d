"""The paper's claims (arXiv 2507.11367) and what each is judged on: a declarative list that
``lpdm claims`` turns into the claims table of ``docs/reproduction.md``.

A claim names the committed data it is judged on (``sources``: archives, folders of
archives, a report's ``runs.csv``, or the page holding ``lpdm bench``'s tables, relative to
the repository root), the test that judges it (:mod:`lpdm.report.judge` computes each test
and applies its rule) and the scope the data do not say themselves (settings, readings).
The environments, seeds and budgets of a scope are read from the runs. The same claim after
equal tuning is judged on the same paths under ``docs/results/tuned/`` (or on
``tuned_sources`` where the tuned study holds the runs elsewhere) once they exist, unless it
lies outside the tuned study (``tuned=False``: the appendix variants, the open questions,
which the PPO study on the deciding environments does not rerun); where the tuned study also
ran the claim's setting at a longer budget (``longer_sources``, objection O4), that verdict
follows it in the same cell.
"""

from __future__ import annotations

from dataclasses import dataclass

HIGHER, NOT_LOWER = "higher", "not lower"  # what a comparison expects of its subject
FINAL, MAX, STEPS = "final_score", "max_score", "steps_to_threshold"  # what it compares
COST, MEMORY = "cost", "memory"  # what a benchmark ratio measures


@dataclass(frozen=True)
class Side:
    """The runs of one learner on one side of a comparison: those whose swept option values
    match ``variant`` (an :mod:`fnmatch` pattern; ``""``: the runs at the defaults)."""

    learner: str
    variant: str = ""
    name: str = ""  # how the table names it (default: the learner)

    @property
    def label(self) -> str:
        return self.name or f"`{self.learner}`"


@dataclass(frozen=True)
class Compare:
    """``subject`` against ``reference`` in every setting both ran: per setting a
    Mann-Whitney test (Holm over the settings of each algorithm), over settings the mean
    P(subject > reference) of ``measure``, which the claim expects ``HIGHER`` (above 0.5)
    or ``NOT_LOWER`` (not below 0.5)."""

    subject: Side
    reference: Side
    expect: str
    measure: str = FINAL


@dataclass(frozen=True)
class Share:
    """The claim "subject beats reference in ``claimed[0]`` of ``claimed[1]``
    comparisons": the share of settings × {final, max score} where the subject scores
    higher (P > 0.5 and a higher IQM), with a Wilson interval."""

    subject: Side
    reference: Side
    claimed: tuple[int, int]


@dataclass(frozen=True)
class RatioRange:
    """The claim "IQM(subject) / IQM(reference) lies in [low, high]", on final and max score
    in every setting."""

    subject: Side
    reference: Side
    low: float
    high: float


@dataclass(frozen=True)
class StuckLess:
    """The claim "subject's runs get stuck less often than reference's": stuck runs pooled
    over the settings of each algorithm, Fisher's exact test."""

    subject: Side
    reference: Side


@dataclass(frozen=True)
class BenchCell:
    """One number of an ``lpdm bench`` table: the ``column`` of the row matching ``where``,
    divided by the same column of the row matching ``over`` when given."""

    label: str
    table: str  # the heading's start, "(b)"
    column: str
    where: tuple[tuple[str, str], ...]
    over: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BenchRatios:
    """Ratios measured by ``lpdm bench`` against the paper's ``claimed`` ratio: a ``COST``
    (judged implementation-dependent) or a ``MEMORY`` ratio (claimed: below ``claimed``)."""

    cells: tuple[BenchCell, ...]
    claimed: float
    kind: str


Test = Compare | Share | RatioRange | StuckLess | BenchRatios


@dataclass(frozen=True)
class Claim:
    statement: str  # the paper's claim, or the open question, in a few words
    sources: tuple[str, ...]
    test: Test
    scope: str  # what the data do not say: readings, settings, conditions
    envs: tuple[str, ...] = ()  # judged on these environments only (default: all)
    tuned: bool = True  # whether the tuned study (issue 25) judges it again
    tuned_sources: tuple[str, ...] = ()  # its data there (default: ``sources`` under it)
    longer_sources: tuple[str, ...] = ()  # the tuned study's runs at a longer budget


LPDM, GUIDED = Side("lpdm"), Side("lpdm-guided")
BP = Side("bp")
SUITE = ("docs/results/suite/parts",)
HOPPER = ("docs/results/hopper/runs.csv",)
TUNED_HOPPER = ("docs/results/tuned/suite/parts/hopper",)  # the same budget and seeds
TUNED_HOPPER_1M = ("docs/results/tuned/long/parts/hopper-1m",)  # the same options, 1M steps
ABLATED = ("docs/results/suite/parts/cartpole-acrobot", "docs/results/suite/parts/lunarlander",
           "docs/results/suite/parts/hopper")
PERFORMANCE = ("docs/performance.md",)
SUITE_SCOPE = "library defaults, `--suite paper` budgets"
HOPPER_SCOPE = ("300k steps; local learners at the readings selected on held-out seeds "
                "10–14 (`docs/method.md`)")
ABLATION_SCOPE = "`lpdm` against `lpdm` at the defaults, `--suite paper` budgets"


def _update(algorithm: str, learner: str) -> tuple[tuple[str, str], ...]:
    return (("algorithm", algorithm), ("learner", learner))


CLAIMS: tuple[Claim, ...] = (
    Claim("LPDM competitive with BP on Hopper-v4", HOPPER,
          Compare(LPDM, BP, NOT_LOWER), HOPPER_SCOPE,
          tuned_sources=TUNED_HOPPER, longer_sources=TUNED_HOPPER_1M),
    Claim("L_g competitive with BP on Hopper-v4", HOPPER,
          Compare(GUIDED, BP, NOT_LOWER), HOPPER_SCOPE,
          tuned_sources=TUNED_HOPPER, longer_sources=TUNED_HOPPER_1M),
    Claim("L_g 1.43–1.85× L_u on Hopper-v4", HOPPER,
          RatioRange(GUIDED, LPDM, 1.43, 1.85), HOPPER_SCOPE,
          tuned_sources=TUNED_HOPPER, longer_sources=TUNED_HOPPER_1M),
    Claim("LPDM gets stuck less often than BP on Hopper-v4", HOPPER,
          StuckLess(LPDM, BP), HOPPER_SCOPE,
          tuned_sources=TUNED_HOPPER, longer_sources=TUNED_HOPPER_1M),
    Claim("LPDM competitive with BP on the 8 benchmark environments", SUITE,
          Compare(LPDM, BP, NOT_LOWER), SUITE_SCOPE),
    Claim("L_g competitive with BP on the 8 benchmark environments", SUITE,
          Compare(GUIDED, BP, NOT_LOWER), SUITE_SCOPE),
    Claim("LPDM runs get stuck less often than BP's", SUITE,
          StuckLess(LPDM, BP), SUITE_SCOPE),
    Claim("L_g better than L_u in 20 of 24 comparisons", SUITE,
          Share(GUIDED, LPDM, (20, 24)), SUITE_SCOPE),
    Claim("LPDM converges more slowly on CartPole and Acrobot", SUITE,
          Compare(LPDM, BP, HIGHER, STEPS),
          f"{SUITE_SCOPE}; environment steps until the 10-episode mean return first reaches "
          "the stuck threshold", envs=("CartPole-v1", "Acrobot-v1")),
    Claim("Local learning needs less memory than backpropagation (the paper's motivation)",
          PERFORMANCE,
          BenchRatios(tuple(BenchCell(f"depth {depth}", "(d)", "lpdm / bp",
                                      (("depth", depth),))
                            for depth in ("2", "4", "8", "16")), 1.0, MEMORY),
          "`lpdm bench` table (d): peak memory of one update of a width-256 trunk, batch "
          "4096, CPU, lpdm / bp"),
    Claim("LPDM costs 1.5× BP per iteration", PERFORMANCE,
          BenchRatios((BenchCell("PPO update", "(b)", "vs bp", _update("PPO", "lpdm")),
                       BenchCell("REINFORCE update", "(b)", "vs bp",
                                 _update("REINFORCE", "lpdm")),
                       BenchCell("whole PPO iteration", "(c)", "steps/s",
                                 (("trainer", "lpdm PPO, bp"),),
                                 (("trainer", "lpdm PPO, lpdm"),))), 1.5, COST),
          "`lpdm bench` tables (b) and (c): Hopper-v4, one torch thread, lpdm / bp"),
    Claim("Sparse matching (appendix A) is about 2× faster", PERFORMANCE,
          BenchRatios((BenchCell("PPO update", "(b)", "update s", _update("PPO", "lpdm"),
                                 _update("PPO", "lpdm sparse")),
                       BenchCell("REINFORCE update", "(b)", "update s",
                                 _update("REINFORCE", "lpdm"),
                                 _update("REINFORCE", "lpdm sparse"))), 2.0, COST),
          "`lpdm bench` table (b): Hopper-v4, one torch thread, dense / sparse update time"),
    Claim("Sparse matching (appendix A) costs only a minor drop in score",
          (*ABLATED, "docs/results/suite/ablations/sparse"),
          Compare(Side("lpdm", "sparse=*", "`lpdm` sparse"), LPDM, NOT_LOWER), ABLATION_SCOPE,
          tuned=False),
    Claim("Local targets (appendix B) are a workable variant",
          (*ABLATED, "docs/results/suite/ablations/target-local"),
          Compare(Side("lpdm", "target=local", "`lpdm` local target"), LPDM, NOT_LOWER),
          ABLATION_SCOPE, tuned=False),
    Claim("Split learning rates (appendix C) are a workable variant",
          (*ABLATED, "docs/results/suite/ablations/split-lr"),
          Compare(Side("lpdm", "hidden-lr=*", "`lpdm` split rates"), LPDM, NOT_LOWER),
          ABLATION_SCOPE, tuned=False),
    Claim("Open question 1: LPDM holds up at depth (no vanishing gradients)",
          ("docs/results/depth/cartpole/archive.npz", "docs/results/depth/hopper/archive.npz"),
          Compare(Side("lpdm", "hidden-sizes=*"), Side("bp", "hidden-sizes=*"), NOT_LOWER),
          "PPO, width 128, depths 2, 4, 8 and 16 (each depth a setting), library defaults",
          tuned=False),
    Claim("Open question 2: LPDM carries over to convolutional layers",
          ("docs/results/minatar/archive.npz",), Compare(LPDM, BP, NOT_LOWER),
          "MinAtar, conv trunk, size-scaled l1 distances of the flattened maps", tuned=False),
    Claim("Open question 3: LPDM works with value-based RL",
          ("docs/results/dqn/runs.csv",), Compare(LPDM, BP, NOT_LOWER),
          "DQN at CleanRL's classic-control settings; 300k steps (LunarLander-v3 500k)",
          tuned=False),
    Claim("Task-agnostic trunks: an LPDM trunk transfers at least as well as a BP trunk",
          ("docs/results/transfer/halfcheetah/archive.npz",
           "docs/results/transfer/hopper/archive.npz"),
          Compare(Side("frozen", "init-trunk=*/lpdm", "head on an `lpdm` trunk"),
                  Side("frozen", "init-trunk=*/bp", "head on a `bp` trunk"), NOT_LOWER),
          "target: the source environment running backwards; trunk fixed, fresh head; "
          "P(> `bp`) against `bp` from scratch, P(> `frozen`) against a random trunk", tuned=False),
)
