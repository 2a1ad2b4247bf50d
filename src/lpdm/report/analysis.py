"""From runs to findings: per-setting statistics, stuck runs, and each learner against bp.

A *setting* is an environment × algorithm (× swept option values); a *group* is the runs
of one learner in one setting. Only finished runs enter the statistics; a finished run
without a score (NaN) is left out of that score's statistics only. A verdict's p-value is
corrected (Holm) over its *family*: the settings of one comparison on one score under one
algorithm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from lpdm.learners.spec import find_spec, learner_names
from lpdm.report.records import RunRecord
from lpdm.report.stats import (
    SIGNIFICANCE,
    Estimate,
    ScoreSummary,
    average_probability_of_improvement,
    fraction_estimate,
    holm,
    iqm_ratio,
    mann_whitney_p,
    mean_ratio,
    median_estimate,
    min_max_normalise,
    probability_of_improvement,
    stratified_iqm,
    summarize,
)
from lpdm.scores import trailing_means
from lpdm.suites import (
    RANDOM_POLICY,
    env_order,
    random_return,
    reference_bounds,
    reference_for,
)
from lpdm.sweeps.grid import short_variant

SCORES = ("final_score", "max_score")  # what verdicts judge: the training policy's returns
# Reported beside them: the deterministic evaluation, which can flatter a weak policy.
REPORTED_SCORES = (*SCORES, "eval_score")
TOO_FEW = "too few runs"
OUTCOMES = ("loses", "lower, not significant", "no clear difference", "higher, not significant",
            "beats", TOO_FEW)
BASELINE = "bp"
CONTROL = "frozen"
AT_DEFAULTS = "{} at defaults"  # the reference of a variant: its learner without the option


def at_defaults(learner: str) -> str:
    """The name a verdict gives the same learner in the setting without swept options."""
    return AT_DEFAULTS.format(learner)


def references(learner: str) -> tuple[str, ...]:
    """The learners ``learner``'s spec asks to be compared with beside bp and the controls
    (``lpdm-guided``: ``lpdm``, does guidance help?); none for a learner unknown here."""
    spec = find_spec(learner)
    return spec.references if spec else ()


def comparisons(learners: Iterable[str]) -> list[tuple[str, str]]:
    """``(learner, reference)`` pairs a report judges, of the learners present: every
    learner against bp; the local learners (their specs') against each control (does
    learning the trunk help at all?); and each learner against its spec's references."""
    present = sorted(learners, key=_learner_order)

    def kind(name: str, trait: str) -> bool:
        spec = find_spec(name)
        return bool(spec and getattr(spec, trait))

    pairs = [(lr, BASELINE) for lr in present if lr != BASELINE and BASELINE in present]
    pairs += [(lr, control) for control in present if kind(control, "control")
              for lr in present if kind(lr, "local")]
    pairs += [(lr, reference) for lr in present for reference in references(lr)
              if reference in present]
    return pairs


@dataclass(frozen=True)
class Setting:
    env: str
    algo: str
    variant: str

    @property
    def label(self) -> str:
        text = f"{self.env} · {self.algo}"
        return f"{text} · {short_variant(self.variant)}" if self.variant else text


@dataclass
class Group:
    """The runs of one learner in one setting, and their statistics."""

    setting: Setting
    learner: str
    runs: list[RunRecord]
    scores: dict[str, ScoreSummary] = field(default_factory=dict)  # by SCORES name
    stuck: Estimate = field(default_factory=lambda: Estimate(math.nan))  # fraction, with CI
    # environment steps until the 10-episode mean training return first reached the
    # environment's threshold, per finished run (inf: never), and their median with a CI
    steps_to_threshold: np.ndarray = field(default_factory=lambda: np.array([]))
    convergence: Estimate = field(default_factory=lambda: Estimate(math.nan))
    # P(this > reference), by reference learner and score
    versus: dict[str, dict[str, Estimate]] = field(default_factory=dict)

    @property
    def versus_bp(self) -> dict[str, Estimate]:
        return self.versus.get(BASELINE, {})

    @property
    def stuck_fraction(self) -> float:
        return self.stuck.value

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.runs if r.finished]

    def values(self, score: str) -> np.ndarray:
        """Finite ``score`` values of the finished runs ``[n]``."""
        x = np.array([getattr(r, score) for r in self.finished], dtype=np.float64)
        return x[np.isfinite(x)]

    def mean_of(self, attribute: str) -> float:
        x = np.array([getattr(r, attribute) for r in self.finished], dtype=np.float64)
        x = x[np.isfinite(x)]
        return float(x.mean()) if x.size else math.nan


@dataclass(frozen=True)
class Verdict:
    """A learner against a reference learner in one setting, on one score."""

    setting: Setting
    learner: str
    reference: str
    score: str
    outcome: str  # one of OUTCOMES, judged on the adjusted p-value
    poi: Estimate  # P(learner > reference)
    p_value: float  # two-sided Mann-Whitney U test, uncorrected
    iqm: Estimate
    reference_iqm: Estimate
    p_adjusted: float = math.nan  # Holm-adjusted over the verdict's family
    tests: int = 1  # the number of tests in that family

    @property
    def family(self) -> tuple[str, str, str, str]:
        """The tests corrected together: one comparison on one score under one algorithm."""
        return self.learner, self.reference, self.score, self.setting.algo


@dataclass(frozen=True)
class Ratio:
    """IQM of one learner over the IQM of another, in one setting, on one score."""

    setting: Setting
    learner: str
    reference: str
    score: str
    ratio: Estimate  # with a bootstrap CI (each learner's runs resampled on their own)


@dataclass(frozen=True)
class TimeRatio:
    """Wall time per iteration of one learner over bp's, in one setting."""

    setting: Setting
    learner: str
    ratio: Estimate  # mean over mean, each learner's runs resampled on their own


@dataclass(frozen=True)
class Aggregate:
    """One learner under one algorithm over every environment (normalised scores)."""

    algo: str
    variant: str
    learner: str
    environments: int
    normalised_iqm: Estimate
    versus_bp: Estimate | None  # mean over environments of P(learner > bp)
    versus_frozen: Estimate | None = None  # mean over environments of P(learner > frozen)


MIN_MAX, FIXED, RANDOM_TO_BEST = "min-max", "fixed references", "random policy to best run"


@dataclass(frozen=True)
class Normalisation:
    """How one algorithm's final scores are mapped onto one scale across environments:
    ``bounds[env] = (score mapped to 0, score mapped to 1)``."""

    algo: str
    # FIXED (random policy to reference score), RANDOM_TO_BEST (random policy to the best
    # final score here) or MIN_MAX (over the runs here)
    kind: str
    bounds: dict[str, tuple[float, float]]
    missing: tuple[str, ...] = ()  # environments without a reference, unless FIXED

    def describe(self) -> str:
        """What 0 and 1 mean, and why this normalisation (without the algorithm's name)."""
        if self.kind == FIXED:
            sources = sorted({reference_for(env, self.algo).source for env in self.bounds})
            return ("fixed references, (score − random) / (reference − random) per "
                    f"environment, 0 being the {RANDOM_POLICY} and 1 the reference score "
                    f"({'; '.join(sources)}; values in lpdm.suites), so adding a learner or a "
                    "run moves no normalised score")
        if self.kind == RANDOM_TO_BEST:
            return ("(score − random) / (best − random) per environment, 0 being the "
                    f"{RANDOM_POLICY} and 1 the best final score of any run here (every "
                    f"learner and algorithm), since {', '.join(self.missing)} "
                    f"{'has' if len(self.missing) == 1 else 'have'} no reference score for "
                    f"{self.algo}; ratios between learners do not move when runs are added "
                    "(the random return is fixed), the normalised values move with the best "
                    "run")
        return (f"min-max over this report's final scores per environment (every learner and "
                f"algorithm), since {', '.join(self.missing)} "
                f"{'has' if len(self.missing) == 1 else 'have'} no reference score for "
                f"{self.algo}; adding a learner or a run can move every normalised score")


def scale_label(normalisation: Normalisation) -> str:
    """What 0 and 1 of a normalised score are, for a figure's axis."""
    return {FIXED: "0: random policy, 1: reference",
            RANDOM_TO_BEST: "0: random policy, 1: best run"}.get(normalisation.kind,
                                                                   "min-max per environment")


@dataclass
class Analysis:
    runs: list[RunRecord]
    groups: list[Group]
    thresholds: dict[tuple[str, str], float]  # stuck threshold per (env, algo), final score
    threshold_given: dict[tuple[str, str], bool]
    normalisation: dict[str, Normalisation]  # by algorithm
    verdicts: list[Verdict]  # every comparison, setting and score
    ratios: list[Ratio]  # guided over unguided IQM, per setting and score
    aggregates: list[Aggregate]
    time_ratios: list[TimeRatio] = field(default_factory=list)

    @property
    def comparisons(self) -> list[tuple[str, str]]:
        """The ``(learner, reference)`` pairs judged, in order."""
        return list(dict.fromkeys((v.learner, v.reference) for v in self.verdicts))

    @property
    def settings(self) -> list[Setting]:
        return list(dict.fromkeys(g.setting for g in self.groups))

    @property
    def envs(self) -> list[str]:
        return list(dict.fromkeys(s.env for s in self.settings))

    @property
    def algos(self) -> list[str]:
        return list(dict.fromkeys(r.algo for r in self.runs))

    @property
    def learners(self) -> list[str]:
        return sorted(dict.fromkeys(g.learner for g in self.groups), key=_learner_order)

    @property
    def unfinished(self) -> list[RunRecord]:
        return [r for r in self.runs if not r.finished]

    def time_ratio(self, setting: Setting, learner: str) -> Estimate | None:
        """The learner's wall time per iteration over bp's in ``setting``, if measured."""
        return next((r.ratio for r in self.time_ratios
                     if r.setting == setting and r.learner == learner), None)

    def group(self, setting: Setting, learner: str) -> Group | None:
        return next((g for g in self.groups if g.setting == setting and g.learner == learner),
                    None)


def _learner_order(learner: str) -> int:
    names = learner_names()
    return names.index(learner) if learner in names else len(names)


def make_groups(runs: Iterable[RunRecord]) -> list[Group]:
    """Runs grouped by setting and learner: environments in the paper's order (others as
    the runs come), then settings as the runs come, learners in the registry's order."""
    keyed: dict[tuple[Setting, str], list[RunRecord]] = {}
    for run in runs:
        keyed.setdefault((Setting(run.env, run.algo, run.variant), run.learner), []).append(run)
    settings = sorted(dict.fromkeys(setting for setting, _ in keyed),
                      key=lambda setting: env_order(setting.env))
    return [Group(setting, learner, keyed[setting, learner])
            for setting in settings
            for learner in sorted({lr for s, lr in keyed if s == setting}, key=_learner_order)]


def threshold_key(env: str, algo: str | None = None) -> str:
    """How ``--stuck-threshold`` names a threshold: ``ENV`` (every algorithm) or ``ENV:ALGO``."""
    return f"{env}:{algo}" if algo else env


def stuck_thresholds(groups: list[Group], given: dict[str, float]
                     ) -> dict[tuple[str, str], float]:
    """Per environment and algorithm: the given threshold (``ENV:ALGO``, else ``ENV``), or
    half-way from ``floor = min(0, lowest final score)`` to the best learner's median final
    score, over that environment and algorithm's runs (half that median when every score
    is >= 0)."""
    thresholds = {}
    for env, algo in dict.fromkeys((g.setting.env, g.setting.algo) for g in groups):
        value = given.get(threshold_key(env, algo), given.get(threshold_key(env)))
        if value is not None:
            thresholds[env, algo] = value
            continue
        mine = [g for g in groups if (g.setting.env, g.setting.algo) == (env, algo)]
        medians = [g.scores["final_score"].median.value for g in mine]
        medians = [m for m in medians if math.isfinite(m)]
        values = np.concatenate([g.values("final_score") for g in mine])
        if not medians or not values.size:
            thresholds[env, algo] = math.nan
            continue
        floor = min(0.0, float(values.min()))
        thresholds[env, algo] = floor + (max(medians) - floor) / 2
    return thresholds


def _outcome(poi: Estimate, p_value: float, iqm: Estimate, reference_iqm: Estimate) -> str:
    """Loses (beats) when the (adjusted) p-value is under SIGNIFICANCE and a run of the
    learner is more likely to score lower (higher) than a run of the reference; short of
    that, lower (higher) when that probability and the IQMs agree on it."""
    if p_value < SIGNIFICANCE and poi.value != 0.5:
        return "loses" if poi.value < 0.5 else "beats"
    if poi.value < 0.5 and iqm.value < reference_iqm.value:
        return "lower, not significant"
    if poi.value > 0.5 and iqm.value > reference_iqm.value:
        return "higher, not significant"
    return "no clear difference"


def _verdict(group: Group, reference: Group, score: str, name: str | None = None) -> Verdict:
    """The learner of ``group`` against that of ``reference``, judged on the uncorrected
    p-value (:func:`holm_corrected` judges again on the adjusted one). ``name``: what the
    verdict calls the reference (default: its learner)."""
    x, y = group.values(score), reference.values(score)
    poi, p_value = probability_of_improvement(x, y), mann_whitney_p(x, y)
    iqm, reference_iqm = group.scores[score].iqm, reference.scores[score].iqm
    enough = min(x.size, y.size) >= 2
    outcome = _outcome(poi, p_value, iqm, reference_iqm) if enough else TOO_FEW
    return Verdict(group.setting, group.learner, name or reference.learner, score, outcome,
                   poi, p_value, iqm, reference_iqm, p_value)


def holm_corrected(verdicts: list[Verdict]) -> list[Verdict]:
    """The verdicts with Holm-adjusted p-values over each family (:attr:`Verdict.family`:
    the settings of one comparison on one score under one algorithm), judged on those."""
    families: dict[tuple[str, str, str, str], list[int]] = {}
    for i, verdict in enumerate(verdicts):
        families.setdefault(verdict.family, []).append(i)
    corrected = list(verdicts)
    for members in families.values():
        # a comparison with too few runs is no test: out of the family's count
        p_values = [math.nan if verdicts[i].outcome == TOO_FEW else verdicts[i].p_value
                    for i in members]
        tests = int(np.isfinite(p_values).sum())
        for i, adjusted in zip(members, holm(p_values), strict=True):
            v = verdicts[i]
            outcome = (v.outcome if not math.isfinite(adjusted)
                       else _outcome(v.poi, float(adjusted), v.iqm, v.reference_iqm))
            corrected[i] = replace(v, p_adjusted=float(adjusted), tests=tests, outcome=outcome)
    return corrected


def analyse(runs: list[RunRecord], given_thresholds: dict[str, float] | None = None
            ) -> Analysis:
    """Statistics of every group, stuck fractions, verdicts, ratios and cross-environment
    aggregates."""
    given_thresholds = given_thresholds or {}
    groups = make_groups(runs)
    for group in groups:
        group.scores = {score: summarize(group.values(score)) for score in REPORTED_SCORES}
    thresholds = stuck_thresholds(groups, given_thresholds)
    verdicts, ratios = [], []
    for group in groups:
        finals = group.values("final_score")
        threshold = thresholds[group.setting.env, group.setting.algo]
        if finals.size and math.isfinite(threshold):
            group.stuck = fraction_estimate(finals < threshold)
        if math.isfinite(threshold) and group.finished:
            group.steps_to_threshold = np.array([steps_to_reach(r, threshold)
                                                 for r in group.finished])
            group.convergence = median_estimate(group.steps_to_threshold)
    time_ratios = []
    by_key = {(g.setting, g.learner): g for g in groups}
    for setting in dict.fromkeys(g.setting for g in groups):
        mine = {g.learner: g for g in groups if g.setting == setting}
        defaults = Setting(setting.env, setting.algo, "")
        pairs = [(mine[learner], mine[reference], reference)
                 for learner, reference in comparisons(mine)]
        if setting.variant:  # does the swept option change each learner?
            pairs += [(group, by_key[defaults, learner], at_defaults(learner))
                      for learner, group in mine.items() if (defaults, learner) in by_key]
        for group, other, reference in pairs:
            for score in SCORES:
                verdict = _verdict(group, other, score, reference)
                group.versus.setdefault(reference, {})[score] = verdict.poi
                if group.values(score).size and other.values(score).size:
                    verdicts.append(verdict)
        for learner in mine:  # e.g. guided over unguided distance matching
            for reference in (r for r in references(learner) if r in mine):
                for score in SCORES:
                    ratios.append(Ratio(setting, learner, reference, score, iqm_ratio(
                        mine[learner].values(score), mine[reference].values(score))))
        if BASELINE in mine:
            bp_runs = mine[BASELINE].finished
            bp_times = _finite([r.seconds_per_iteration for r in bp_runs])
            for learner, group in mine.items():
                # runs of different sweeps ran under different loads: no ratio between them
                if learner != BASELINE and len({r.sweep for r in bp_runs + group.finished}) <= 1:
                    times = _finite([r.seconds_per_iteration for r in group.finished])
                    time_ratios.append(TimeRatio(setting, learner, mean_ratio(times, bp_times)))
    normalisation = normalisations(groups)
    given = {(env, algo): threshold_key(env, algo) in given_thresholds
             or threshold_key(env) in given_thresholds for env, algo in thresholds}
    return Analysis(runs, groups, thresholds, given, normalisation, holm_corrected(verdicts),
                    ratios, _aggregates(groups, normalisation), time_ratios)


def _finite(values: list[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


def steps_to_reach(run: RunRecord, threshold: float) -> float:
    """Environment steps until the run's 10-episode mean training return first reached
    ``threshold`` (inf if it never did)."""
    steps, returns = run.training_returns()
    reached = np.flatnonzero(trailing_means(returns) >= threshold)
    return float(steps[reached[0]]) if reached.size else math.inf


def normalisations(groups: list[Group]) -> dict[str, Normalisation]:
    """Per algorithm: fixed references (random policy to reference score, ``lpdm.suites``)
    when every environment of that algorithm's runs has them; else, where every one has a
    measured random return below its best final score here, the random return to that best
    score (MinAtar: no reference score, but a ratio to ``bp`` that no added run moves); else
    min-max per environment over every final score here (all learners and algorithms)."""
    finals: dict[str, list[np.ndarray]] = {}
    for g in groups:
        finals.setdefault(g.setting.env, []).append(g.values("final_score"))
    observed = {env: (float(v.min()), float(v.max())) for env, parts in finals.items()
                if (v := np.concatenate(parts)).size}
    result = {}
    for algo in dict.fromkeys(g.setting.algo for g in groups):
        envs = list(dict.fromkeys(g.setting.env for g in groups if g.setting.algo == algo))
        fixed = {env: reference_bounds(env, algo) for env in envs}
        known = {env: bounds for env, bounds in fixed.items() if bounds is not None}
        missing = tuple(env for env in envs if env not in known)
        if not missing:
            result[algo] = Normalisation(algo, FIXED, known)
        elif (to_best := _random_to_best(envs, observed)) is not None:
            result[algo] = Normalisation(algo, RANDOM_TO_BEST, to_best, missing)
        else:
            result[algo] = Normalisation(algo, MIN_MAX, {env: observed[env] for env in envs
                                                         if env in observed}, missing)
    return result


def _random_to_best(envs: list[str], observed: dict[str, tuple[float, float]]
                    ) -> dict[str, tuple[float, float]] | None:
    """``(random return, best final score)`` per environment of ``envs`` (``observed``:
    its lowest and highest final scores); None unless every one has a measured random return
    (``lpdm.suites``) below its best score."""
    bounds = {}
    for env in envs:
        random = random_return(env)
        if random is None or env not in observed or observed[env][1] <= random:
            return None
        bounds[env] = (random, observed[env][1])
    return bounds


def normalised_finals(group: Group, normalisation: dict[str, Normalisation]) -> np.ndarray:
    """The group's final scores on its algorithm's normalised scale (:func:`normalisations`)."""
    scale = normalisation.get(group.setting.algo)
    if scale is None or group.setting.env not in scale.bounds:
        return np.array([])
    return min_max_normalise(group.values("final_score"), *scale.bounds[group.setting.env])


def _mean_poi(groups: list[Group], mine: list[Group], reference: str) -> Estimate | None:
    """Mean over ``mine``'s settings of P(its learner > ``reference``), None without pairs."""
    pairs = []
    for g in mine:
        other = next((r for r in groups if r.setting == g.setting and r.learner == reference),
                     None)
        if other is not None and g.learner != reference:
            pairs.append((g.values("final_score"), other.values("final_score")))
    return average_probability_of_improvement(pairs) if pairs else None


def _aggregates(groups: list[Group], normalisation: dict[str, Normalisation]
                ) -> list[Aggregate]:
    """Per algorithm, variant and learner over all environments, when there are several."""
    if len({g.setting.env for g in groups}) < 2:
        return []
    aggregates = []
    keys = dict.fromkeys((g.setting.algo, g.setting.variant, g.learner) for g in groups)
    for algo, variant, learner in keys:
        mine = [g for g in groups if (g.setting.algo, g.setting.variant, g.learner)
                == (algo, variant, learner)]
        tasks = [normalised_finals(g, normalisation) for g in mine]
        aggregates.append(Aggregate(algo, variant, learner, len(mine), stratified_iqm(tasks),
                                    _mean_poi(groups, mine, BASELINE),
                                    _mean_poi(groups, mine, CONTROL)))
    return aggregates
