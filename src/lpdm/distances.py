"""Pairwise distances and the local distance-matching losses (docs/design.md §1, §4).

Pure tensor functions, no state. A batch ``Z`` has shape ``[N, d]``, or ``[K, N, d]`` for
a population (one matrix per member, never mixed); every matrix returned is ``[N, N]``
(``[K, N, N]``) with a zero diagonal. Where rows are padding (members of a population
with fewer samples), ``valid`` ``[K, N]`` marks the real ones: pairs with a padded row
take no part in a scaling, a guidance, a quantile or a loss.

Scalings (``scale``) make matrices of layers of different widths comparable:

- ``dim``: per-feature distance. For ``l1`` the sum of absolute differences is divided
  by the width ``d`` (the mean absolute difference per feature, docs/design.md §1). For ``l2``
  it is divided by ``sqrt(d)`` (the root-mean-square difference per feature): dividing
  an l2 distance by ``d`` would shrink it as ``1/sqrt(d)`` and defeat the purpose of
  the scaling. ``cosine`` is already independent of the width and is left as is.
- ``none``: the raw distance.
- ``max``: divided by the largest entry of the matrix.
- ``mean``: divided by the mean off-diagonal entry.
- ``cross``: the paper's literal ``‖D̄_X/out − D̄_Y/in‖_F``. It scales a *pair*: the raw
  distances of the target rows (width ``in``) are divided by the layer's width ``out``
  (:func:`target_distances`), the raw distances of the layer's output by ``in``
  (:func:`output_distances`); a lone matrix has no ``cross`` scaling.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

METRICS = ("l1", "l2", "cosine")
SCALES = ("dim", "none", "max", "mean", "cross")
_EPS = 1e-12


def _check(metric: str, scale: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")


def pair_mask(valid: Tensor | None, n: int, device: torch.device | str = "cpu") -> Tensor:
    """Pairs ``(i, j)``, ``i ≠ j``, of two real rows: ``[..., N, N]`` bool."""
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=device)
    if valid is None:
        return off_diagonal
    return valid.unsqueeze(-1) & valid.unsqueeze(-2) & off_diagonal


def raw_pairwise_distances(z: Tensor, metric: str = "l1") -> Tensor:
    """Unscaled distances ``[..., N, N]`` between the rows of ``z`` ``[..., N, d]``."""
    if z.dim() not in (2, 3):
        raise ValueError(f"expected a [N, d] or [K, N, d] batch, got shape {tuple(z.shape)}")
    if metric == "l1":
        from lpdm.kernels import pairwise_l1

        return pairwise_l1(z)
    if metric == "l2":
        # The direct (non-matmul) mode is exact and its gradient is zero, not NaN, at
        # zero distance (the diagonal).
        return torch.cdist(z, z, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
    if metric == "cosine":
        unit = torch.nn.functional.normalize(z, dim=-1, eps=1e-8)
        off_diagonal = 1.0 - torch.eye(z.shape[-2], dtype=z.dtype, device=z.device)
        return (1.0 - unit @ unit.transpose(-1, -2)).clamp_min(0.0) * off_diagonal
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def width_divisor(metric: str, width: int) -> float:
    """What ``scale="dim"`` divides a raw distance by, for rows of ``width`` features."""
    if metric == "l1":
        return float(width)
    if metric == "l2":
        return math.sqrt(width)
    return 1.0


def apply_scale(raw: Tensor, metric: str, scale: str, width: int,
                valid: Tensor | None = None) -> Tensor:
    """Scale a raw distance matrix ``[..., N, N]`` of rows with ``width`` features.

    ``max`` and ``mean`` look at the pairs of real rows only (``valid`` ``[..., N]``).
    """
    if scale == "none":
        return raw
    if scale == "dim":
        return raw / width_divisor(metric, width)
    if scale in ("max", "mean"):
        pairs = pair_mask(valid, raw.shape[-1], raw.device)
        kept = raw * pairs
        if scale == "max":
            divisor = kept.amax(dim=(-2, -1), keepdim=True)
        else:
            count = pairs.sum(dim=(-2, -1), keepdim=True).clamp_min(1)
            divisor = kept.sum(dim=(-2, -1), keepdim=True) / count
        return raw / divisor.clamp_min(_EPS)
    if scale == "cross":
        raise ValueError("scale 'cross' divides a target by the output's width and an output "
                         "by the target's width: use target_distances and output_distances")
    raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")


def pairwise_distances(z: Tensor, metric: str = "l1", scale: str = "dim",
                       valid: Tensor | None = None) -> Tensor:
    """Scaled pairwise distance matrix ``D(z)`` ``[..., N, N]`` of a batch ``z`` ``[..., N, d]``."""
    _check(metric, scale)
    return apply_scale(raw_pairwise_distances(z, metric), metric, scale, z.shape[-1], valid)


def target_distances(x: Tensor, metric: str, scale: str, out_width: int,
                     valid: Tensor | None = None) -> Tensor:
    """The distances ``[..., N, N]`` a layer of ``out_width`` units is asked to match, from
    rows ``x`` ``[..., N, in]``: ``D(x)``, or under ``cross`` the raw distances divided by
    ``out_width``."""
    _check(metric, scale)
    if scale == "cross":
        return raw_pairwise_distances(x, metric) / out_width
    return pairwise_distances(x, metric, scale, valid)


def output_scale_divisor(metric: str, scale: str, width: int, target_width: int | None
                         ) -> float | None:
    """What a layer output's raw distances are divided by, when it is a constant.

    ``width``: the output's; ``target_width``: that of the target's rows (needed by
    ``cross``). None for ``max``/``mean``, whose divisor depends on the matrix.
    """
    if scale == "none":
        return 1.0
    if scale == "dim":
        return width_divisor(metric, width)
    if scale == "cross":
        if target_width is None:
            raise ValueError("scale 'cross' needs target_width, the width of the rows the "
                             "target distances were computed from")
        return float(target_width)
    return None


def output_distances(raw: Tensor, metric: str, scale: str, width: int,
                     target_width: int | None = None, valid: Tensor | None = None) -> Tensor:
    """Scale the raw distances ``[..., N, N]`` of a layer output of ``width`` features."""
    divisor = output_scale_divisor(metric, scale, width, target_width)
    if divisor is not None:
        return raw / divisor
    return apply_scale(raw, metric, scale, width, valid)


def guided_target(d: Tensor, performance: Tensor, strength: float = 1.0,
                  valid: Tensor | None = None) -> Tensor:
    """Reward-guided target ``D̂ = d + v 1ᵀ + 1 vᵀ`` with a zero diagonal ``[..., N, N]``.

    ``v_i = strength · (1 - (p_i - min p) / (max p - min p))``: the sample that did worst
    gets ``v = strength`` and is pushed away from all others; ``v = 0`` when all
    performances are equal. ``performance`` is ``[..., N]``; min and max are over the real
    rows (``valid``).
    """
    p = performance.detach().to(d.dtype)
    if p.dim() == 1:
        p = p.reshape(-1) if d.dim() == 2 else p.unsqueeze(0)
    if p.shape[-1] != d.shape[-1]:
        raise ValueError(f"{p.shape[-1]} performance values for a {d.shape[-1]}-row matrix")
    if valid is None:
        low, high = p.amin(-1, keepdim=True), p.amax(-1, keepdim=True)
    else:
        low = p.masked_fill(~valid, math.inf).amin(-1, keepdim=True)
        high = p.masked_fill(~valid, -math.inf).amax(-1, keepdim=True)
    span = high - low
    v = torch.where(span > 0, strength * (1.0 - (p - low) / span.clamp_min(_EPS)),
                    torch.zeros_like(p))
    off_diagonal = 1.0 - torch.eye(d.shape[-1], dtype=d.dtype, device=d.device)
    return (d + v.unsqueeze(-1) + v.unsqueeze(-2)) * off_diagonal


def pair_gaps(values: Tensor, valid: Tensor | None = None) -> Tensor:
    """``|v_i − v_j|`` ``[..., N, N]`` of per-sample values ``[..., N]``; zero on the diagonal
    and on pairs with a padded row (``valid``)."""
    v = values.detach()
    gaps = (v.unsqueeze(-1) - v.unsqueeze(-2)).abs()
    return torch.where(pair_mask(valid, v.shape[-1], v.device), gaps, torch.zeros_like(gaps))


def matched_scale(d: Tensor, gaps: Tensor, valid: Tensor | None = None) -> Tensor:
    """``c`` ``[..., 1, 1]`` such that ``c · gaps`` has the mean of ``d`` over the pairs of
    real rows: ``mean(d) / mean(gaps)``, and 0 where every gap is 0."""
    pairs = pair_mask(valid, d.shape[-1], d.device)
    count = pairs.sum(dim=(-2, -1), keepdim=True).clamp_min(1)
    mean_d = torch.where(pairs, d, torch.zeros_like(d)).sum(dim=(-2, -1), keepdim=True) / count
    mean_gap = torch.where(pairs, gaps, torch.zeros_like(gaps)).sum(dim=(-2, -1),
                                                                    keepdim=True) / count
    return torch.where(mean_gap > 0, mean_d / mean_gap.clamp_min(_EPS), torch.zeros_like(mean_d))


def _as_rows(values: Tensor, d: Tensor, what: str) -> Tensor:
    """Per-sample ``values`` as ``[..., N]`` beside a matrix ``d`` ``[..., N, N]``."""
    v = values.detach().to(d.dtype)
    if v.dim() == 1 and d.dim() == 3:
        v = v.unsqueeze(0)
    if v.shape[-1] != d.shape[-1]:
        raise ValueError(f"{v.shape[-1]} {what} for a {d.shape[-1]}-row matrix")
    return v


def value_target(d: Tensor, values: Tensor, beta: float, valid: Tensor | None = None) -> Tensor:
    """Value-aware target ``D̂ = (1 − β)·d + β·c·|v_i − v_j|`` ``[..., N, N]``.

    ``values`` ``[..., N]`` is each sample's performance, ``c`` scales the value gaps to the
    mean of ``d`` over pairs of real rows (:func:`matched_scale`; 0 when every value is
    equal). Pairs with a padded row get ``(1 − β)·d``.
    """
    gaps = pair_gaps(_as_rows(values, d, "values"), valid)
    return (1.0 - beta) * d + beta * (matched_scale(d, gaps, valid) * gaps)


def bisimulation_target(d: Tensor, rewards: Tensor, next_distances: Tensor, beta: float,
                        gamma: float, valid: Tensor | None = None) -> Tensor:
    """Bisimulation target ``D̂ = (1 − β)·d + β·(c·|r_i − r_j| + γ·D′_ij)`` ``[..., N, N]``.

    ``rewards`` ``[..., N]``; ``next_distances`` ``[..., N, N]``: the distances of the next
    observations (a slowly updated copy's, for a layer: its own output distances); ``c``
    scales the reward gaps to the mean of ``d`` (:func:`matched_scale`). ``β = 1`` is the
    bisimulation metric's fixed-point target ``c·|r_i − r_j| + γ·D′_ij``. Pairs with a
    padded row get ``(1 − β)·d``.
    """
    gaps = pair_gaps(_as_rows(rewards, d, "rewards"), valid)
    pairs = pair_mask(valid, d.shape[-1], d.device)
    future = torch.where(pairs, next_distances.detach(), torch.zeros_like(d))
    return (1.0 - beta) * d + beta * (matched_scale(d, gaps, valid) * gaps + gamma * future)


def quantile_mask(d: Tensor, low: float = 0.25, high: float = 0.75,
                  valid: Tensor | None = None) -> Tensor:
    """Pairs worth matching: per row, the nearest and furthest neighbours. ``[..., N, N]`` bool.

    Row ``i`` keeps ``j ≠ i`` where ``d_ij`` is at or below the row's ``low`` quantile or
    at or above its ``high`` quantile, the quantiles taken over ``j ≠ i`` with linear
    interpolation (as ``torch.quantile``). The diagonal is False, and so is every pair
    with a padded row (``valid``).
    """
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
    n = d.shape[-1]
    pairs = pair_mask(valid, n, d.device)
    if n < 2:
        return pairs
    values = d.detach().masked_fill(~pairs, math.nan)
    q = torch.nanquantile(values, torch.tensor([low, high], dtype=values.dtype,
                                               device=d.device), dim=-1, keepdim=True,
                          interpolation="linear")
    near = d.detach() <= q[0]
    far = d.detach() >= q[1]
    return (near | far) & pairs


def distance_matching_loss(
    target: Tensor,
    y: Tensor,
    metric: str = "l1",
    scale: str = "dim",
    mask: Tensor | None = None,
    target_width: int | None = None,
    valid: Tensor | None = None,
) -> Tensor:
    """Frobenius norm ``||target - D(y)||_F`` (not squared), over ``mask`` when given.

    ``target`` ``[..., N, N]``, ``y`` ``[..., N, d]``, ``mask`` ``[..., N, N]`` bool.
    Returns one loss per matrix: a scalar for ``[N, N]``, ``[K]`` for a population.
    ``target_width``: the width of the rows ``target`` was computed from (``cross`` only,
    where ``D(y)`` is ``y``'s raw distances divided by it). ``valid`` ``[..., N]`` marks the
    real rows; pairs with a padded row are left out.
    """
    _check(metric, scale)
    d_y = output_distances(raw_pairwise_distances(y, metric), metric, scale, y.shape[-1],
                           target_width, valid)
    diff = target - d_y
    if valid is not None:
        pairs = pair_mask(valid, y.shape[-2], y.device)
        mask = pairs if mask is None else mask & pairs
    if mask is not None:
        diff = diff * mask
    return torch.linalg.vector_norm(diff, dim=(-2, -1))


def sparse_distance_matching_loss(
    target: Tensor,
    y: Tensor,
    mask: Tensor,
    metric: str = "l1",
    scale: str = "dim",
    target_width: int | None = None,
) -> Tensor:
    """The masked loss of :func:`distance_matching_loss` for one ``[N, d]`` batch, computing
    only the masked pairs.

    Equal in value and gradient to the dense masked loss. ``max`` and ``mean`` scalings
    need every pair for their normaliser, so for them the dense matrix is computed.
    """
    _check(metric, scale)
    if y.dim() != 2 or scale in ("max", "mean"):
        return distance_matching_loss(target, y, metric, scale, mask, target_width)
    i, j = mask.nonzero(as_tuple=True)
    yi, yj = y[i], y[j]
    if metric == "l1":
        raw = (yi - yj).abs().sum(dim=1)
    elif metric == "l2":
        raw = torch.linalg.vector_norm(yi - yj, dim=1)
    else:
        unit = torch.nn.functional.normalize(y, dim=1, eps=1e-8)
        raw = (1.0 - (unit[i] * unit[j]).sum(dim=1)).clamp_min(0.0)
    raw = raw / output_scale_divisor(metric, scale, y.shape[1], target_width)
    return torch.linalg.vector_norm(target[i, j] - raw)


def distance_entropy(d: Tensor, valid: Tensor | None = None) -> float:
    """Entropy of the normalised distance distribution, divided by its maximum: in [0, 1].

    The off-diagonal entries of ``d`` ``[N, N]`` (between real rows) are normalised to sum
    to one and their Shannon entropy is divided by ``log(M)``, M the number of entries.
    1: every pair equally far apart; near 0: the distance mass sits on a few pairs (the
    rest collapsed together). NaN when every distance is zero (total collapse). Invariant
    to scaling ``d``.
    """
    n = d.shape[-1]
    values = d.detach()[pair_mask(valid, n, d.device)].double()
    if values.numel() < 2:
        return float("nan")
    total = values.sum()
    if not total > 0:
        return float("nan")
    p = values / total
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum()
    return float(entropy / math.log(values.numel()))


def off_diagonal_correlation(a: Tensor, b: Tensor, valid: Tensor | None = None) -> float:
    """Pearson correlation of the off-diagonal entries (between real rows) of two ``[N, N]``
    matrices. NaN when either is constant there (e.g. collapsed features)."""
    n = a.shape[-1]
    pairs = pair_mask(valid, n, a.device)
    if int(pairs.sum()) < 3:
        return float("nan")
    x = a.detach()[pairs].double()
    y = b.detach()[pairs].double()
    x = x - x.mean()
    y = y - y.mean()
    denominator = torch.sqrt((x * x).sum() * (y * y).sum())
    if denominator <= 0:
        return float("nan")
    return float((x * y).sum() / denominator)
