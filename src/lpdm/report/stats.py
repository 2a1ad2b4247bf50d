"""Statistics across runs: point estimates with 95% bootstrap confidence intervals.

Following Agarwal et al. (2021, "Deep RL at the edge of the statistical precipice"):
the interquartile mean (IQM, the mean of the middle 50% of runs), percentile bootstrap
intervals, stratified over tasks when runs of several environments are pooled (each
environment's runs are resampled on their own), and the probability of improvement
``P(X > Y) + P(X = Y) / 2``, estimated by the Mann-Whitney U statistic over ``n·m``,
whose test also gives the p-value of a difference between two learners; p-values of a
family of such tests are corrected with Holm's step-down method (:func:`holm`).
Resampling is :func:`scipy.stats.bootstrap`'s; NaN scores must be dropped by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
SIGNIFICANCE = 0.05  # two-sided level of the Mann-Whitney U test behind a verdict
RESAMPLES = 2000
SEED = 0  # reports are reproducible: the same runs give the same intervals


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval (NaN bounds when there is none)."""

    value: float
    low: float = float("nan")
    high: float = float("nan")

    @property
    def has_interval(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))


@dataclass(frozen=True)
class ScoreSummary:
    """Scores of one method on one task: ``n`` runs, spread, and estimates with CIs."""

    n: int
    mean: Estimate
    std: float  # sample standard deviation (ddof 1); NaN for a single run
    median: Estimate
    iqm: Estimate


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean along ``axis``: the mean after cutting 25% of values at each end."""
    return stats.trim_mean(x, 0.25, axis=axis)


def bootstrap(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray],
              axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of a vectorised ``statistic(*samples, axis=...)``.

    Several samples are resampled independently of each other (a stratified bootstrap when
    each sample is one task's runs). Every sample needs two or more values along ``axis``.
    """
    result = stats.bootstrap(tuple(samples), statistic, vectorized=True, axis=axis,
                             n_resamples=RESAMPLES, confidence_level=CONFIDENCE,
                             method="percentile", rng=np.random.default_rng(SEED))
    return result.confidence_interval.low, result.confidence_interval.high


def _three(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.stack([np.mean(x, axis=axis), np.median(x, axis=axis), iqm(x, axis=axis)])


def summarize(scores: np.ndarray) -> ScoreSummary:
    """Mean, median and IQM of ``scores [n]`` with 95% CIs (none for fewer than 2 runs)."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        nan = Estimate(float("nan"))
        return ScoreSummary(0, nan, float("nan"), nan, nan)
    values = _three(x)
    low = high = np.full(3, np.nan)
    if x.size >= 2:
        low, high = bootstrap([x], _three)
    mean, median, middle = (Estimate(float(v), float(lo), float(hi))
                            for v, lo, hi in zip(values, low, high, strict=True))
    std = float(np.std(x, ddof=1)) if x.size >= 2 else float("nan")
    return ScoreSummary(int(x.size), mean, std, median, middle)


def stratified_iqm(tasks: Sequence[np.ndarray]) -> Estimate:
    """IQM of the runs of all ``tasks`` pooled, with a CI stratified over tasks."""
    tasks = [np.asarray(t, dtype=np.float64) for t in tasks if len(t)]
    if not tasks:
        return Estimate(float("nan"))
    value = float(iqm(np.concatenate(tasks)))
    if min(t.size for t in tasks) < 2:
        return Estimate(value)

    def pooled(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return iqm(np.concatenate(samples, axis=axis), axis=axis)

    low, high = bootstrap(tasks, pooled)
    return Estimate(value, float(low), float(high))


def stratified_iqm_ratio(tasks: Sequence[np.ndarray], reference_tasks: Sequence[np.ndarray]
                         ) -> Estimate:
    """IQM of the runs of ``tasks`` pooled over that of ``reference_tasks`` pooled (each a
    list of one method's scores per task), with a CI that resamples each task's runs of each
    method on their own. NaN when the reference IQM is not positive; no interval when a task
    has fewer than 2 runs or a resampled reference IQM is not positive."""
    tasks = [np.asarray(t, dtype=np.float64) for t in tasks if len(t)]
    reference_tasks = [np.asarray(t, dtype=np.float64) for t in reference_tasks if len(t)]
    if not tasks or not reference_tasks:
        return Estimate(float("nan"))
    reference = float(iqm(np.concatenate(reference_tasks)))
    if not reference > 0:
        return Estimate(float("nan"))
    value = float(iqm(np.concatenate(tasks))) / reference
    if min(t.size for t in (*tasks, *reference_tasks)) < 2:
        return Estimate(value)
    split = len(tasks)

    def ratio(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        top = iqm(np.concatenate(samples[:split], axis=axis), axis=axis)
        bottom = iqm(np.concatenate(samples[split:], axis=axis), axis=axis)
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.nan)

    low, high = bootstrap([*tasks, *reference_tasks], ratio)
    return Estimate(value, float(low), float(high))


def _poi(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    u = stats.mannwhitneyu(x, y, axis=axis, method="asymptotic").statistic
    return u / (x.shape[axis] * y.shape[axis])


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> Estimate:
    """``P(X > Y) + P(X = Y) / 2`` for a run X of ``x`` and a run Y of ``y``, with a CI."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        return Estimate(float("nan"))
    value = float(_poi(x, y))
    if min(x.size, y.size) < 2:
        return Estimate(value)
    low, high = bootstrap([x, y], _poi)
    return Estimate(value, float(low), float(high))


def iqm_ratio(x: np.ndarray, y: np.ndarray) -> Estimate:
    """``IQM(x) / IQM(y)`` with a CI, the runs of ``x`` and of ``y`` resampled on their own.

    Defined only when every score of both is positive: with negative returns a ratio
    above 1 would mean worse, and near zero it is meaningless; NaN otherwise.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size == 0 or y.size == 0 or (x <= 0).any() or (y <= 0).any():
        return Estimate(float("nan"))
    value = float(iqm(x)) / float(iqm(y))  # positive scores: IQMs, resampled too, are > 0
    if min(x.size, y.size) < 2:
        return Estimate(value)

    def ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return iqm(a, axis=axis) / iqm(b, axis=axis)

    low, high = bootstrap([x, y], ratio)
    return Estimate(value, float(low), float(high))


def fraction_estimate(flags: np.ndarray) -> Estimate:
    """The fraction of true ``flags`` ``[n]`` with a percentile bootstrap CI over runs."""
    x = np.asarray(flags, dtype=np.float64)
    if x.size == 0:
        return Estimate(float("nan"))
    value = float(x.mean())
    if x.size < 2 or value in (0.0, 1.0):  # every resample gives the same fraction
        return Estimate(value, value, value) if x.size >= 2 else Estimate(value)
    low, high = bootstrap([x], np.mean)
    return Estimate(value, float(low), float(high))


def median_estimate(x: np.ndarray) -> Estimate:
    """The median of ``x`` ``[n]`` (``inf`` allowed: a run that never got there) with a
    percentile bootstrap CI over runs."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return Estimate(float("nan"))
    value = float(np.median(x))
    if x.size < 2:
        return Estimate(value)
    rng = np.random.default_rng(SEED)
    with np.errstate(invalid="ignore"):  # inf - inf between two "never" runs
        medians = np.median(x[rng.integers(0, x.size, (RESAMPLES, x.size))], axis=1)
        medians = np.where(np.isnan(medians), np.inf, medians)
        low = np.percentile(medians, 100 * (1 - CONFIDENCE) / 2, method="lower")
        high = np.percentile(medians, 100 * (1 + CONFIDENCE) / 2, method="higher")
    return Estimate(value, float(low), float(high))


def mean_ratio(x: np.ndarray, y: np.ndarray) -> Estimate:
    """``mean(x) / mean(y)`` with a CI, the runs of ``x`` and of ``y`` resampled on their own."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size == 0 or y.size == 0 or not y.mean():
        return Estimate(float("nan"))
    value = float(x.mean() / y.mean())
    if min(x.size, y.size) < 2:
        return Estimate(value)

    def ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(a, axis=axis) / np.mean(b, axis=axis)

    low, high = bootstrap([x, y], ratio)
    return Estimate(value, float(low), float(high))


def mann_whitney_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p-value of the Mann-Whitney U test of ``x`` against ``y``.

    Exact for small samples without ties, so it stays honest where a bootstrap interval of
    the probability of improvement is too narrow (3 runs against 3: p is at least 0.1).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        return float("nan")
    return float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def smallest_mann_whitney_p(n: int, m: int) -> float:
    """The smallest two-sided p-value :func:`mann_whitney_p` can give ``n`` runs against
    ``m`` (complete separation; 5 against 5: 2 / C(10, 5) = 0.0079)."""
    return mann_whitney_p(np.arange(n), np.arange(n, n + m))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values ``[k]`` of a family of tests, in the given order.

    The i-th smallest of the ``m`` finite p-values is multiplied by ``m - i + 1``, made
    non-decreasing in that order and capped at 1; a test is significant at level alpha
    after correction when its adjusted p is below alpha. NaN p-values (no test) stay NaN
    and do not count towards ``m``. (SciPy's ``false_discovery_control`` controls the false
    discovery rate (Benjamini-Hochberg), not the family-wise error rate that Holm does.)
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = (order.size - np.arange(order.size)) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def average_probability_of_improvement(pairs: Sequence[tuple[np.ndarray, np.ndarray]]
                                       ) -> Estimate:
    """Mean over tasks of the probability of improvement, with a CI stratified over tasks.

    ``pairs`` holds, per task, the scores ``(x, y)`` of the two methods compared.
    """
    pairs = [(np.asarray(x, float), np.asarray(y, float)) for x, y in pairs if len(x) and len(y)]
    if not pairs:
        return Estimate(float("nan"))
    value = float(np.mean([_poi(x, y) for x, y in pairs]))
    if min(min(x.size, y.size) for x, y in pairs) < 2:
        return Estimate(value)

    def mean_poi(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([_poi(samples[i], samples[i + 1], axis=axis)
                        for i in range(0, len(samples), 2)], axis=0)

    low, high = bootstrap([s for pair in pairs for s in pair], mean_poi)
    return Estimate(value, float(low), float(high))


def performance_profile(tasks: Sequence[np.ndarray], taus: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fraction of runs scoring above each threshold of ``taus [T]``, averaged over tasks.

    ``tasks`` holds each task's normalised scores. Returns the profile ``[T]`` and its CI
    bounds ``[T]`` (NaN when a task has fewer than 2 runs).
    """
    tasks = [np.asarray(t, dtype=np.float64) for t in tasks if len(t)]

    def profile(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        fractions = [np.mean(np.moveaxis(s, axis, -1)[..., None, :] > taus[:, None], axis=-1)
                     for s in samples]  # each [..., T]
        return np.moveaxis(np.mean(fractions, axis=0), -1, 0)  # [T, ...]: resamples last

    value = profile(*tasks)
    if not tasks or min(t.size for t in tasks) < 2:
        return value, np.full_like(taus, np.nan, dtype=float), np.full_like(taus, np.nan,
                                                                            dtype=float)
    low, high = bootstrap(tasks, profile)
    return value, low, high


def iqm_band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM across runs of ``curves [runs, points]`` with a CI per point ``[points]`` each."""
    curves = np.asarray(curves, dtype=np.float64)
    value = iqm(curves, axis=0)
    if curves.shape[0] < 2:
        return value, np.full_like(value, np.nan), np.full_like(value, np.nan)
    low, high = bootstrap([curves], iqm, axis=0)
    return value, low, high


def min_max_normalise(scores: np.ndarray, low: float, high: float) -> np.ndarray:
    """Scores mapped so that ``low`` is 0 and ``high`` 1 (all 1 when ``high == low``)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not high > low:
        return np.ones_like(scores)
    return (scores - low) / (high - low)
