"""The per-run scores of docs/design.md §5 against hand-computed values."""

import math

from lpdm.scores import eval_score, final_score, max_score


def test_max_score_is_the_best_ten_episode_moving_average():
    returns = [0.0] * 10 + [10.0] * 10 + [0.0] * 5
    assert max_score(returns) == 10.0
    assert max_score([1.0, 3.0]) == 2.0  # fewer than 10 episodes: their mean
    assert math.isnan(max_score([]))


def test_final_score_averages_the_training_episodes_of_the_last_tenth():
    steps = [100, 500, 899, 900, 950, 1000]
    returns = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0]
    assert final_score(steps, returns, total_steps=1000) == 20.0  # episodes ending >= 900
    assert math.isnan(final_score([100, 200], [1.0, 2.0], total_steps=1000))


def test_eval_score_averages_the_evaluations_of_the_last_tenth():
    assert eval_score([500, 950, 1000], [7.0, 100.0, 200.0], total_steps=1000) == 150.0
