"""Report statistics against hand-computed cases and synthetic data."""

import numpy as np
import pytest

from lpdm.report.stats import (
    average_probability_of_improvement,
    holm,
    iqm,
    iqm_band,
    iqm_ratio,
    mann_whitney_p,
    min_max_normalise,
    performance_profile,
    probability_of_improvement,
    smallest_mann_whitney_p,
    stratified_iqm,
    stratified_iqm_ratio,
    summarize,
)


@pytest.mark.parametrize(("values", "expected"), [
    ([1, 2, 3, 4, 5, 6, 7, 8], 4.5),  # cut 2 at each end: mean of 3..6
    ([1, 2, 3, 100], 2.5),  # cut 1 at each end: mean of 2, 3
    ([0, 0, 1, 1, 1, 1, 100, 100], 1.0),
    ([5, 1, 9], 5.0),  # fewer than 4 values: nothing is cut
])
def test_iqm_of_known_arrays(values, expected):
    assert iqm(np.array(values, dtype=float)) == pytest.approx(expected)


def test_summary_of_a_small_sample():
    s = summarize(np.array([2.0, 4.0, 6.0, 8.0]))
    assert s.n == 4
    assert s.mean.value == 5.0 and s.median.value == 5.0 and s.iqm.value == 5.0
    assert s.std == pytest.approx(np.sqrt(20 / 3))  # sample std, ddof 1
    for estimate in (s.mean, s.median, s.iqm):
        assert 2.0 <= estimate.low <= estimate.value <= estimate.high <= 8.0


def test_single_run_and_no_run_have_no_interval():
    one = summarize(np.array([3.0]))
    assert one.n == 1 and one.mean.value == 3.0 and one.iqm.value == 3.0
    assert not one.mean.has_interval and np.isnan(one.std)
    none = summarize(np.array([]))
    assert none.n == 0 and np.isnan(none.mean.value)


def test_interval_covers_the_true_mean_of_a_large_sample():
    x = np.random.default_rng(1).normal(3.0, 1.0, size=2000)
    s = summarize(x)
    assert s.mean.low < 3.0 < s.mean.high
    assert s.iqm.low < 3.0 < s.iqm.high  # symmetric distribution: IQM estimates the mean too
    # the width of a 95% interval of a mean is about 2 * 1.96 * sigma / sqrt(n)
    assert s.mean.high - s.mean.low == pytest.approx(2 * 1.96 / np.sqrt(2000), rel=0.2)


def test_intervals_are_reproducible():
    x = np.random.default_rng(2).normal(size=10)
    assert summarize(x) == summarize(x)


@pytest.mark.parametrize(("x", "y", "expected"), [
    ([5, 6, 7], [1, 2, 3], 1.0),
    ([1, 2, 3], [5, 6, 7], 0.0),
    ([1, 2, 3], [1, 2, 3], 0.5),
    ([2, 3, 4], [1, 3], 4.5 / 6),  # pairs: 2>1, 2<3, 3>1, 3=3 (half), 4>1, 4>3
    ([1, 3], [2], 0.5),
])
def test_probability_of_improvement_by_hand(x, y, expected):
    assert probability_of_improvement(np.array(x, float), np.array(y, float)).value == \
        pytest.approx(expected)


def test_clearly_separated_samples_have_a_certain_improvement():
    rng = np.random.default_rng(3)
    better, worse = rng.normal(10, 1, 20), rng.normal(0, 1, 20)
    poi = probability_of_improvement(better, worse)
    assert (poi.value, poi.low, poi.high) == (1.0, 1.0, 1.0)
    tie = probability_of_improvement(rng.normal(0, 1, 200), rng.normal(0, 1, 200))
    assert tie.low < 0.5 < tie.high


def test_mann_whitney_p_values_by_hand():
    # 3 runs against 3, fully separated: 2 of the C(6, 3) = 20 orderings are as extreme
    assert mann_whitney_p(np.array([1.0, 2, 3]), np.array([4.0, 5, 6])) == pytest.approx(0.1)
    # 5 against 5: 2 of C(10, 5) = 252
    assert mann_whitney_p(np.arange(5.0), np.arange(5.0) + 10) == pytest.approx(2 / 252)
    assert mann_whitney_p(np.full(3, 500.0), np.full(3, 500.0)) == 1.0


def test_stratified_bootstrap_resamples_each_task_on_its_own():
    # Each resample keeps 5 runs of each task, so the pooled IQM never moves; a bootstrap
    # over the pooled runs would mix the tasks and give a wide interval.
    tasks = [np.zeros(5), np.full(5, 10.0)]
    estimate = stratified_iqm(tasks)
    assert (estimate.value, estimate.low, estimate.high) == (5.0, 5.0, 5.0)
    # pooled 15 values, 3 cut at each end: mean of 3..9, 100, 101
    assert stratified_iqm([np.arange(10.0), np.arange(5.0) + 100]).value == pytest.approx(27.0)


def test_stratified_iqm_ratio_resamples_each_task_of_each_method_on_its_own():
    # constant tasks: every resample keeps the pooled IQMs, 5 over 10
    halves = stratified_iqm_ratio([np.zeros(5), np.full(5, 10.0)],
                                  [np.zeros(5), np.full(5, 20.0)])
    assert (halves.value, halves.low, halves.high) == (0.5, 0.5, 0.5)
    rng = np.random.default_rng(0)
    spread = stratified_iqm_ratio([rng.normal(1.0, 0.2, 8)], [rng.normal(2.0, 0.2, 8)])
    assert spread.low < spread.value < spread.high and 0.3 < spread.value < 0.7
    # a reference IQM at or below zero gives no ratio
    assert np.isnan(stratified_iqm_ratio([np.ones(5)], [np.zeros(5)]).value)


def test_average_probability_of_improvement_over_tasks():
    pairs = [(np.array([5.0, 6, 7]), np.array([1.0, 2, 3])),
             (np.array([1.0, 2, 3]), np.array([1.0, 2, 3]))]
    estimate = average_probability_of_improvement(pairs)
    assert estimate.value == pytest.approx(0.75)
    assert 0.5 <= estimate.low <= 0.75 <= estimate.high <= 1.0


def test_performance_profile_by_hand():
    taus = np.array([0.0, 0.5, 0.95])
    value, low, high = performance_profile([np.array([0.1, 0.5, 0.9]), np.array([0.0, 1.0])],
                                           taus)
    # tau 0: 3/3 and 1/2; tau 0.5: 1/3 and 1/2; tau 0.95: 0/3 and 1/2 (averaged over tasks)
    np.testing.assert_allclose(value, [0.75, (1 / 3 + 0.5) / 2, 0.25])
    assert np.all(low <= value) and np.all(value <= high)


def test_iqm_band_over_runs():
    curves = np.array([[0.0, 1, 2], [0, 1, 2], [0, 1, 2], [10, 11, 12]])
    value, low, high = iqm_band(curves)
    np.testing.assert_allclose(value, [0, 1, 2])  # the outlier run is cut
    assert value.shape == low.shape == high.shape == (3,)
    single, low, high = iqm_band(curves[:1])
    np.testing.assert_allclose(single, [0, 1, 2])
    assert np.isnan(low).all() and np.isnan(high).all()


def test_min_max_normalise():
    np.testing.assert_allclose(min_max_normalise(np.array([0.0, 5, 10]), 0, 10), [0, 0.5, 1])
    np.testing.assert_allclose(min_max_normalise(np.array([-200.0, -100]), -200, -100), [0, 1])
    np.testing.assert_allclose(min_max_normalise(np.array([3.0, 3.0]), 3, 3), [1, 1])


def test_iqm_ratio_of_positive_scores_and_undefined_otherwise():
    guided, unguided = np.array([200.0, 300, 400, 500]), np.array([100.0, 150, 200, 250])
    ratio = iqm_ratio(guided, unguided)
    assert ratio.value == pytest.approx(350 / 175)
    assert ratio.low <= ratio.value <= ratio.high
    # negative returns (Acrobot): IQM -300 over -270 is 1.11, yet guided is worse
    assert np.isnan(iqm_ratio(np.array([-310.0, -300, -290]), np.array([-280.0, -270, -260])).value)
    assert np.isnan(iqm_ratio(np.array([10.0, 20, 0]), np.array([5.0, 6, 7])).value)


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06
    # (adjusted p-values never decrease in the order of the raw ones)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # capped at 1; a NaN (no test) stays NaN and does not count: m = 2
    np.testing.assert_allclose(holm([0.6, float("nan"), 0.02]), [0.6, np.nan, 0.04])
    np.testing.assert_allclose(holm([0.7, 0.8]), [1.0, 1.0])
    assert holm([]).shape == (0,)


def test_smallest_mann_whitney_p():
    # complete separation, exact two-sided: 2 / C(n + m, n)
    assert smallest_mann_whitney_p(5, 5) == pytest.approx(2 / 252)  # 0.0079
    assert smallest_mann_whitney_p(3, 3) == pytest.approx(0.1)
    # so Holm over 8 environments can never find one 5-against-5 difference
    assert smallest_mann_whitney_p(5, 5) * 8 > 0.05
