"""Judge a claim (:mod:`lpdm.report.claims`) on its data: the statistic, the per-environment
tests, P(> bp) and P(> frozen), and the verdict by the test's rule (``RULES``), one
:class:`Finding` per algorithm."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from lpdm.errors import RunError
from lpdm.report.analysis import CONTROL, Group, make_groups, steps_to_reach, stuck_thresholds
from lpdm.report.bench_tables import bench_table, cell_number, find_row
from lpdm.report.claims import (
    COST,
    FINAL,
    HIGHER,
    MAX,
    MEMORY,
    NOT_LOWER,
    STEPS,
    BenchRatios,
    Claim,
    Compare,
    RatioRange,
    Share,
    Side,
    StuckLess,
    Test,
)
from lpdm.report.collect import collect_runs
from lpdm.report.export import read_runs
from lpdm.report.records import RunRecord
from lpdm.report.stats import (
    SIGNIFICANCE,
    Estimate,
    ScoreSummary,
    average_probability_of_improvement,
    holm,
    iqm,
    iqm_ratio,
    mann_whitney_p,
)

CONFIRMED, REFUTED, INCONCLUSIVE = "confirmed", "refuted", "inconclusive"
# a claim of parity that the data do not contradict: no equivalence test stands behind it
NOT_REFUTED = "not refuted"
IMPLEMENTATION = "implementation-dependent"
# an algorithm under which bp does not beat a random frozen trunk cannot judge trunk learning
NOT_JUDGED = "not judged"
RULES = {
    (Compare, HIGHER): "expects the subject higher: **confirmed** when the 95% interval of "
                       "the mean P(subject > reference) lies above 0.5, **refuted** when "
                       "it lies below, else **inconclusive**",
    (Compare, NOT_LOWER): "expects the subject not lower (competitive, workable): "
                          "**refuted** when the 95% interval of the mean P(subject > "
                          "reference) lies below 0.5, else **not refuted** (not shown "
                          "lower; this is no test of equivalence)",
    Share: "a claimed share of comparisons won: **refuted** when the Wilson 95% interval "
           "of the share the subject scores higher (P > 0.5 and a higher IQM) lies below "
           "the claimed share, **confirmed** when it reaches the claimed share and lies "
           "above 0.5, else **inconclusive**",
    RatioRange: "a claimed range of IQM ratios: **confirmed** when every ratio's 95% "
                "interval overlaps the range, **refuted** when none does, else "
                "**inconclusive**",
    StuckLess: "fewer stuck runs (final score under half-way from min(0, the lowest final "
               "score) to the best learner's median, per environment × algorithm), pooled "
               "over environments: **confirmed** (**refuted**) when the subject has fewer "
               "(more) stuck runs at Fisher's exact p < 0.05, else **inconclusive**",
    (BenchRatios, COST): "a cost depends on the implementation and the machine, not only "
                         "the method: always **implementation-dependent**, saying whether "
                         "this implementation is above or below the claimed ratio",
    (BenchRatios, MEMORY): "a memory ratio claimed below a bound: **confirmed** when every "
                             "measured ratio is below it, **refuted** when none is, else "
                             "**inconclusive**",
}
GATE_RULE = ("an algorithm judges a claim only where it tells a trained trunk from a random "
             "one: when the 95% interval of the mean P(`bp` > `frozen`) on the claim's runs "
             "under it does not lie above 0.5, its verdict is **not judged** (the row keeps "
             "its numbers and says what the rule above would have read)")
ALGORITHM_NAMES = {"ppo": "PPO", "reinforce": "REINFORCE", "dqn": "DQN"}
NONE = "—"


@dataclass(frozen=True)
class Finding:
    """A claim judged under one algorithm (``""`` for a benchmark), as Markdown cells."""

    algo: str
    statistic: str
    per_env: str
    versus_bp: str
    versus_frozen: str
    verdict: str
    why_not_judged: str = ""  # a verdict NOT_JUDGED: bp against frozen, the face value


def rule_key(test: Test) -> object:
    """The key of ``test``'s rule in ``RULES``."""
    if isinstance(test, Compare):
        return Compare, test.expect
    if isinstance(test, BenchRatios):
        return BenchRatios, test.kind
    return type(test)


@functools.lru_cache(maxsize=16)
def load_runs(root: Path, sources: tuple[str, ...]) -> list[RunRecord]:
    """The runs of ``sources`` (paths under ``root``): archives, folders of archives, or a
    report's ``runs.csv`` (read once per process; do not modify)."""
    tables = [root / s for s in sources if s.endswith(".csv")]
    others = [root / s for s in sources if not s.endswith(".csv")]
    runs = [run for table in tables for run in read_runs(table)]
    return runs + (collect_runs(*others) if others else [])


def judge(claim: Claim, root: Path) -> list[Finding]:
    """The claim judged on its sources under ``root``, one finding per algorithm."""
    if isinstance(claim.test, BenchRatios):
        return [_bench(claim.test, root / claim.sources[0])]
    runs = [r for r in load_runs(root, claim.sources)
            if r.finished and (not claim.envs or r.env in claim.envs)]
    if not runs:
        raise RunError(f"claim {claim.statement!r}: no finished runs in {claim.sources}")
    groups = make_groups(runs)
    for group in groups:  # what the stuck thresholds read: the median final score
        finals = group.values(FINAL)
        median = Estimate(float(np.median(finals)) if finals.size else math.nan)
        group.scores = {FINAL: ScoreSummary(finals.size, Estimate(math.nan), math.nan, median,
                                            Estimate(math.nan))}
    thresholds = stuck_thresholds(groups, {})
    judges: dict[type, Callable[..., Finding]] = {
        Compare: _compare, Share: _share, RatioRange: _ratio_range, StuckLess: _stuck_less}
    findings = []
    for algo in dict.fromkeys(g.setting.algo for g in groups):
        mine = [g for g in groups if g.setting.algo == algo]
        finding = judges[type(claim.test)](claim.test, mine, thresholds)
        if finding is not None:
            findings.append(_gated(finding, claim.test.subject, mine, thresholds))
    if not findings:
        raise RunError(f"claim {claim.statement!r}: no setting holds both sides")
    return findings


# ---------------------------------------------------------------- pairing and measures


def _matches(group: Group, side: Side) -> bool:
    return group.learner == side.learner and (
        fnmatchcase(group.setting.variant, side.variant) if side.variant
        else not group.setting.variant)


def pairs(groups: list[Group], subject: Side, reference: Side) -> list[tuple[Group, Group]]:
    """``(subject, reference)`` groups of the same environment (and the same swept values
    when both sides select the same ones, as depths)."""
    def key(group: Group) -> tuple[str, ...]:
        same = subject.variant == reference.variant
        return (group.setting.env, group.setting.variant) if same else (group.setting.env,)

    references: dict[tuple[str, ...], Group] = {}
    for group in groups:
        if _matches(group, reference):
            if key(group) in references:
                raise RunError(f"{reference.learner} [{reference.variant}] matches several "
                               f"settings of {group.setting.env}")
            references[key(group)] = group
    return [(g, references[key(g)]) for g in groups
            if _matches(g, subject) and key(g) in references]


def _values(group: Group, measure: str, thresholds: dict[tuple[str, str], float]
            ) -> np.ndarray:
    """The group's ``measure`` per finished run: a score, or steps to the threshold."""
    if measure != STEPS:
        return group.values(measure)
    threshold = thresholds[group.setting.env, group.setting.algo]
    return np.array([steps_to_reach(run, threshold) for run in group.finished])


def _holm_counts(tests: list[tuple[float, float]]) -> tuple[int, int]:
    """``(higher, lower)``: of ``(P, p)`` tests, those significant after Holm over them."""
    adjusted = holm([p for _, p in tests])
    higher = sum(bool(a < SIGNIFICANCE and poi > 0.5) for (poi, _), a in zip(tests, adjusted,
                                                                            strict=True))
    lower = sum(bool(a < SIGNIFICANCE and poi < 0.5) for (poi, _), a in zip(tests, adjusted,
                                                                           strict=True))
    return higher, lower


def _test(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(P(x > y), Mann-Whitney p)``."""
    u = scipy_stats.mannwhitneyu(x, y, method="asymptotic").statistic
    return float(u / (x.size * y.size)), mann_whitney_p(x, y)


def _mean_poi(groups: list[Group], subject: Side, reference: Side, measure: str,
              thresholds: dict[tuple[str, str], float]) -> tuple[Estimate, list]:
    """Mean over settings of P(subject > reference), and each setting's ``(P, p)``."""
    samples = [(_values(s, measure, thresholds), _values(r, measure, thresholds))
               for s, r in pairs(groups, subject, reference)]
    samples = [(x, y) for x, y in samples if x.size and y.size]
    if not samples:
        return Estimate(math.nan), []
    return (average_probability_of_improvement(samples),
            [_test(x, y) for x, y in samples])


def _versus(groups: list[Group], subject: Side, learner: str,
            thresholds: dict[tuple[str, str], float]) -> str:
    """Mean P(subject > ``learner``) on final score: against the runs with the subject's
    swept values where that learner has them (depths), else at the defaults."""
    if subject.learner == learner and not subject.variant:
        return NONE
    reference = Side(learner, subject.variant)
    if subject.learner == learner or not any(_matches(g, reference) for g in groups):
        reference = Side(learner)
    estimate, _ = _mean_poi(groups, subject, reference, FINAL, thresholds)
    return fmt_estimate(estimate) if math.isfinite(estimate.value) else NONE


def _finding(groups: list[Group], subject: Side, thresholds: dict[tuple[str, str], float],
             statistic: str, per_env: str, verdict: str) -> Finding:
    return Finding(groups[0].setting.algo, statistic, per_env,
                   _versus(groups, subject, "bp", thresholds),
                   _versus(groups, subject, CONTROL, thresholds), verdict)


def _gated(finding: Finding, subject: Side, groups: list[Group],
           thresholds: dict[tuple[str, str], float]) -> Finding:
    """``finding``, or NOT_JUDGED when ``bp`` does not beat ``frozen`` on these runs (with
    the subject's swept values where both have them, as depths; else at the defaults)."""
    bp, frozen = Side("bp", subject.variant), Side(CONTROL, subject.variant)
    if not all(any(_matches(g, side) for g in groups) for side in (bp, frozen)):
        bp, frozen = Side("bp"), Side(CONTROL)
    mean, _ = _mean_poi(groups, bp, frozen, FINAL, thresholds)
    if not mean.has_interval or mean.low > 0.5:
        return finding
    why = (f"P(`bp` > `frozen`) {fmt_estimate(mean)}; at face value {finding.verdict}")
    return dataclasses.replace(finding, verdict=NOT_JUDGED, why_not_judged=why)


def verdict_text(finding: Finding) -> str:
    """The verdict in bold, with why it is not judged when it is not."""
    why = f" ({finding.why_not_judged})" if finding.why_not_judged else ""
    return f"**{finding.verdict}**{why}"


# ---------------------------------------------------------------- the tests


def _compare(test: Compare, groups: list[Group], thresholds: dict[tuple[str, str], float]
             ) -> Finding | None:
    mean, tests = _mean_poi(groups, test.subject, test.reference, test.measure, thresholds)
    if not tests:
        return None
    higher, lower = _holm_counts(tests)
    what = " of steps to the threshold" if test.measure == STEPS else ""
    statistic = (f"mean P({test.subject.label} > {test.reference.label}){what} "
                 f"{fmt_estimate(mean)}")
    per_env = f"higher in {higher}, lower in {lower} of {len(tests)}"
    return _finding(groups, test.subject, thresholds, statistic, per_env,
                    _compare_verdict(test.expect, mean))


def _compare_verdict(expect: str, mean: Estimate) -> str:
    if not mean.has_interval:
        return INCONCLUSIVE
    if mean.high < 0.5:
        return REFUTED
    if expect == NOT_LOWER:
        return NOT_REFUTED
    return CONFIRMED if mean.low > 0.5 else INCONCLUSIVE


def _share(test: Share, groups: list[Group], thresholds: dict[tuple[str, str], float]
           ) -> Finding | None:
    found = pairs(groups, test.subject, test.reference)
    if not found:
        return None
    higher = lower = 0
    significant = [0, 0]
    for score in (FINAL, MAX):
        tests = []
        for s, r in found:
            x, y = s.values(score), r.values(score)
            poi, p = _test(x, y)
            tests.append((poi, p))
            higher += bool(poi > 0.5 and iqm(x) > iqm(y))
            lower += bool(poi < 0.5 and iqm(x) < iqm(y))
        for i, count in enumerate(_holm_counts(tests)):
            significant[i] += count
    total = 2 * len(found)
    interval = scipy_stats.binomtest(higher, total).proportion_ci(method="wilson")
    share = Estimate(higher / total, interval.low, interval.high)
    claimed = test.claimed[0] / test.claimed[1]
    if share.high < claimed:
        verdict = REFUTED
    elif share.low > 0.5:
        verdict = CONFIRMED
    else:
        verdict = INCONCLUSIVE
    statistic = (f"{test.subject.label} higher in {higher} of {total} comparisons "
                 f"({fmt_estimate(share)}; claimed {fmt(claimed)}), lower in {lower}")
    per_env = (f"higher in {significant[0]}, lower in {significant[1]} of {total} "
               "(final and max score)")
    return _finding(groups, test.subject, thresholds, statistic, per_env, verdict)


def _ratio_range(test: RatioRange, groups: list[Group],
                 thresholds: dict[tuple[str, str], float]) -> Finding | None:
    found = pairs(groups, test.subject, test.reference)
    if not found:
        return None
    several = len(found) > 1
    parts, overlaps, counts = [], [], np.zeros(2, dtype=int)
    for score in (FINAL, MAX):
        tests = []
        for s, r in found:
            x, y = s.values(score), r.values(score)
            tests.append(_test(x, y))
            ratio = iqm_ratio(x, y)
            if ratio.has_interval:
                overlaps.append(ratio.low <= test.high and ratio.high >= test.low)
            where = f"{s.setting.env} " if several else ""
            parts.append(f"{where}{score.removesuffix('_score')} {fmt_estimate(ratio)}")
        counts += _holm_counts(tests)
    if overlaps and all(overlaps):
        verdict = CONFIRMED
    elif overlaps and not any(overlaps):
        verdict = REFUTED
    else:
        verdict = INCONCLUSIVE
    statistic = (f"IQM {test.subject.label} / {test.reference.label}: " + ", ".join(parts)
                 + f" (claimed {fmt(test.low)}–{fmt(test.high)})")
    per_env = (f"higher in {counts[0]}, lower in {counts[1]} of {2 * len(found)} (final "
               "and max score)")
    return _finding(groups, test.subject, thresholds, statistic, per_env, verdict)


def _stuck_less(test: StuckLess, groups: list[Group],
                thresholds: dict[tuple[str, str], float]) -> Finding | None:
    found = pairs(groups, test.subject, test.reference)
    if not found:
        return None

    def stuck(group: Group) -> tuple[int, int]:
        finals = group.values(FINAL)
        threshold = thresholds[group.setting.env, group.setting.algo]
        return int((finals < threshold).sum()), int(finals.size)

    ks, ns = np.array([[*stuck(s), *stuck(r)] for s, r in found]).sum(0).reshape(2, 2).T
    table = [[ks[0], ns[0] - ks[0]], [ks[1], ns[1] - ks[1]]]
    p = float(scipy_stats.fisher_exact(table).pvalue)
    rates = ks / ns
    if p < SIGNIFICANCE and rates[0] != rates[1]:
        verdict = CONFIRMED if rates[0] < rates[1] else REFUTED
    else:
        verdict = INCONCLUSIVE
    statistic = (f"stuck: {test.subject.label} {_stuck_text(ks[0], ns[0])}, "
                 f"{test.reference.label} {_stuck_text(ks[1], ns[1])}; Fisher p {fmt_p(p)}")
    envs = len({s.setting.env for s, _ in found})
    per_env = f"pooled over {envs} environment{'s' if envs > 1 else ''}"
    return _finding(groups, test.subject, thresholds, statistic, per_env, verdict)


def _stuck_text(k: int, n: int) -> str:
    interval = scipy_stats.binomtest(int(k), int(n)).proportion_ci(method="wilson")
    return (f"{k}/{n} ({100 * k / n:.0f}% [{100 * interval.low:.0f}%, "
            f"{100 * interval.high:.0f}%])")


def _bench(test: BenchRatios, page: Path) -> Finding:
    parts, values = [], []
    for cell in test.cells:
        rows = bench_table(page, cell.table)
        value = cell_number(find_row(rows, dict(cell.where), cell.table)[cell.column])
        if cell.over:
            value /= cell_number(find_row(rows, dict(cell.over), cell.table)[cell.column])
        values.append(value)
        parts.append(f"{cell.label}: {value:.2f}×")
    below = sum(v < test.claimed for v in values)
    claimed = f"{test.claimed:g}×"
    if test.kind == COST:
        verdict = (f"{IMPLEMENTATION}: here below the claimed {claimed} in {below} of "
                   f"{len(values)}")
    elif below == len(values):
        verdict = CONFIRMED
    else:
        verdict = REFUTED if below == 0 else INCONCLUSIVE
    bound = "below " if test.kind == MEMORY else ""
    statistic = ", ".join(parts) + f" (claimed {bound}{claimed})"
    return Finding("", statistic, NONE, NONE, NONE, verdict)


# ---------------------------------------------------------------- formatting


def fmt(value: float) -> str:
    """A number to 2 decimals (3 significant digits for large values)."""
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def fmt_seeds(seeds: Sequence[int]) -> str:
    """Seeds as a page writes them: ``seeds 0–4`` when consecutive, else listed."""
    seeds = sorted(seeds)
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}–{seeds[-1]}"
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def fmt_steps(count: int) -> str:
    """A step count as a page writes it: ``300k``, ``1M``, ``1.5M``."""
    return f"{count / 1e6:g}M" if count >= 1_000_000 else f"{count / 1e3:g}k"


def fmt_estimate(estimate: Estimate) -> str:
    if not math.isfinite(estimate.value):
        return "n/a"
    if not estimate.has_interval:
        return fmt(estimate.value)
    return f"{fmt(estimate.value)} [{fmt(estimate.low)}, {fmt(estimate.high)}]"


def fmt_p(p: float) -> str:
    """``"= 0.069"``, or ``"< 0.001"``."""
    return f"= {p:.2g}" if p >= 0.001 else "< 0.001"


def algorithm_name(algo: str) -> str:
    return ALGORITHM_NAMES.get(algo, algo)
