"""The per-run scores of docs/design.md §5, from a run's training returns and evaluations.

``max_score``: the highest 10-episode moving average of training returns;
``final_score``: the mean training return of the episodes ending in the last 10% of steps;
``eval_score``: the mean deterministic evaluation return over the last 10% of steps.
Plain numpy: the report reads them without torch or Gymnasium.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MOVING_AVERAGE_WINDOW = 10
FINAL_FRACTION = 0.1


def max_score(returns: Sequence[float], window: int = MOVING_AVERAGE_WINDOW) -> float:
    """Highest moving average of training returns over ``window`` episodes.

    With fewer than ``window`` episodes, the mean of all of them; NaN with none.
    """
    values = np.asarray(returns, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    if values.size < window:
        return float(values.mean())
    sums = np.convolve(values, np.ones(window), mode="valid")
    return float(sums.max() / window)


def trailing_means(returns: np.ndarray, window: int = MOVING_AVERAGE_WINDOW) -> np.ndarray:
    """``[E]``: at each episode, the mean return of the last ``window`` episodes (fewer at
    the start); with ``window`` 1 the returns themselves, NaN kept where it is."""
    returns = np.asarray(returns, dtype=np.float64)
    if window == 1:
        return returns
    sums = np.cumsum(np.concatenate([[0.0], returns]))
    counts = np.minimum(np.arange(1, returns.size + 1), window)
    ends = np.arange(1, returns.size + 1)
    return (sums[ends] - sums[ends - counts]) / counts


def late_mean(steps: Sequence[float], values: Sequence[float], total_steps: int,
              fraction: float = FINAL_FRACTION) -> float:
    """Mean of the ``values`` whose ``steps`` lie in the last ``fraction`` of training (or NaN)."""
    at = np.asarray(steps, dtype=np.float64)
    x = np.asarray(values, dtype=np.float64)
    late = at >= (1.0 - fraction) * total_steps
    return float(x[late].mean()) if late.any() else float("nan")


def final_score(episode_steps: Sequence[int], returns: Sequence[float], total_steps: int,
                fraction: float = FINAL_FRACTION) -> float:
    """Mean training return of the episodes that end in the last ``fraction`` of training.

    The same stochastic policy that :func:`max_score` measures (docs/design.md §5).
    """
    return late_mean(episode_steps, returns, total_steps, fraction)


def eval_score(eval_steps: Sequence[int], eval_means: Sequence[float], total_steps: int,
               fraction: float = FINAL_FRACTION) -> float:
    """Mean deterministic evaluation return over the last ``fraction`` of training.

    Reported beside the training scores, never instead of them: an argmax can flatter a
    weak policy (on CartPole a frozen random trunk evaluates at 500 and trains at ~75).
    """
    return late_mean(eval_steps, eval_means, total_steps, fraction)
