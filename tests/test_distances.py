"""The docs/design.md §4 contract functions against hand-computed values."""

import math

import pytest
import torch

from lpdm import (
    distance_matching_loss,
    guided_target,
    pairwise_distances,
    quantile_mask,
    sparse_distance_matching_loss,
)
from lpdm.distances import distance_entropy, output_distances, target_distances

Z = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0]])  # l1: d01=3, d02=4, d12=5


def sym(d01: float, d02: float, d12: float) -> torch.Tensor:
    return torch.tensor([[0.0, d01, d02], [d01, 0.0, d12], [d02, d12, 0.0]])


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        ("none", sym(3, 4, 5)),
        ("dim", sym(1.5, 2, 2.5)),  # mean absolute difference per feature
        ("max", sym(0.6, 0.8, 1.0)),
        ("mean", sym(0.75, 1.0, 1.25)),  # mean off-diagonal entry is 4
    ],
)
def test_l1_every_scale(scale, expected):
    assert torch.allclose(pairwise_distances(Z, "l1", scale), expected)


def test_l1_is_the_default():
    assert torch.allclose(pairwise_distances(Z), sym(1.5, 2, 2.5))


def test_l2_scales():
    raw = sym(math.sqrt(5), math.sqrt(10), math.sqrt(13))
    assert torch.allclose(pairwise_distances(Z, "l2", "none"), raw)
    # dim: root-mean-square difference per feature
    assert torch.allclose(pairwise_distances(Z, "l2", "dim"), raw / math.sqrt(2))
    assert torch.allclose(pairwise_distances(Z, "l2", "max"), raw / math.sqrt(13))
    mean = (math.sqrt(5) + math.sqrt(10) + math.sqrt(13)) / 3
    assert torch.allclose(pairwise_distances(Z, "l2", "mean"), raw / mean)


def test_cosine_scales():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])  # cos: 0, -1, 0
    raw = sym(1.0, 2.0, 1.0)
    assert torch.allclose(pairwise_distances(z, "cosine", "none"), raw)
    assert torch.allclose(pairwise_distances(z, "cosine", "dim"), raw)  # width-free already
    assert torch.allclose(pairwise_distances(z, "cosine", "max"), raw / 2)
    assert torch.allclose(pairwise_distances(z, "cosine", "mean"), raw / (4 / 3))


def test_width_scaling_makes_widths_comparable():
    x = torch.rand(64, 8)
    wide = x.repeat(1, 32)  # same points, 32 times the width
    for metric in ("l1", "l2", "cosine"):
        assert torch.allclose(pairwise_distances(x, metric), pairwise_distances(wide, metric),
                              atol=1e-5)


def test_gradients_are_finite_at_zero_distance():
    z = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]], requires_grad=True)
    for metric in ("l1", "l2", "cosine"):
        z.grad = None
        pairwise_distances(z, metric).sum().backward()
        assert torch.isfinite(z.grad).all(), metric


def test_unknown_metric_and_scale_are_rejected():
    with pytest.raises(ValueError, match="metric"):
        pairwise_distances(Z, "l3")
    with pytest.raises(ValueError, match="scale"):
        pairwise_distances(Z, "l1", "width")


def test_guided_target_hand_computed():
    d = sym(1.5, 2, 2.5)
    p = torch.tensor([0.0, 10.0, 5.0])  # v = 1 - p/10 = [1, 0, 0.5]
    assert torch.allclose(guided_target(d, p, strength=1.0), sym(2.5, 3.5, 3.0))
    assert torch.allclose(guided_target(d, p, strength=0.5), sym(2.0, 2.75, 2.75))


def test_guided_target_equal_performance_keeps_distances():
    d = sym(1.5, 2, 2.5)
    assert torch.equal(guided_target(d, torch.full((3,), 7.0)), d)


def test_guided_target_default_strength_is_one_and_diagonal_zero():
    d = torch.zeros(3, 3)
    t = guided_target(d, torch.tensor([0.0, 1.0, 1.0]))
    assert torch.allclose(t, sym(1.0, 1.0, 0.0))
    assert torch.equal(t.diagonal(), torch.zeros(3))


def test_quantile_mask_hand_computed():
    x = torch.tensor([0.0, 1.0, 3.0, 6.0, 10.0])
    d = (x[:, None] - x[None, :]).abs()
    mask = quantile_mask(d)  # low 0.25, high 0.75
    # row 0: others [1, 3, 6, 10]; q25 = 2.5, q75 = 7 -> j=1 and j=4
    assert mask[0].tolist() == [False, True, False, False, True]
    # row 2: others [3, 2, 3, 7]; sorted [2, 3, 3, 7]; q25 = 2.75, q75 = 4 -> j=1, j=4
    assert mask[2].tolist() == [False, True, False, False, True]
    assert not mask.diagonal().any()


def test_quantile_mask_linear_interpolation_matches_torch_quantile():
    d = pairwise_distances(torch.randn(9, 4))
    mask = quantile_mask(d, 0.1, 0.6)
    for i in range(9):
        others = torch.cat([d[i, :i], d[i, i + 1:]])
        lo, hi = torch.quantile(others, torch.tensor([0.1, 0.6]))
        expected = (d[i] <= lo) | (d[i] >= hi)
        expected[i] = False
        assert torch.equal(mask[i], expected)


def test_quantile_mask_extremes():
    d = pairwise_distances(torch.randn(6, 3))
    off = ~torch.eye(6, dtype=torch.bool)
    assert torch.equal(quantile_mask(d, 1.0, 1.0), off)  # everything at or below the max
    with pytest.raises(ValueError):
        quantile_mask(d, 0.8, 0.2)


def test_distance_matching_loss_is_the_frobenius_norm():
    # ||0 - D(Z)||_F = sqrt(2 (1.5² + 2² + 2.5²)) = 5
    assert torch.isclose(distance_matching_loss(torch.zeros(3, 3), Z), torch.tensor(5.0))
    target = sym(1.5, 2, 2.5)
    assert distance_matching_loss(target, Z).item() == pytest.approx(0.0, abs=1e-6)
    raw = distance_matching_loss(torch.zeros(3, 3), Z, scale="none")
    assert raw.item() == pytest.approx(math.sqrt(2 * (9 + 16 + 25)))


def test_distance_matching_loss_over_a_mask():
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0, 1] = True
    assert distance_matching_loss(torch.zeros(3, 3), Z, mask=mask).item() == pytest.approx(1.5)
    mask[2, 1] = True  # 1.5 and 2.5 -> sqrt(1.5² + 2.5²)
    value = distance_matching_loss(torch.zeros(3, 3), Z, mask=mask).item()
    assert value == pytest.approx(math.sqrt(1.5**2 + 2.5**2))


@pytest.mark.parametrize("metric", ["l1", "l2", "cosine"])
@pytest.mark.parametrize("scale", ["dim", "none", "max", "mean"])
def test_sparse_loss_equals_masked_dense_loss_and_gradients(metric, scale):
    torch.manual_seed(0)
    x = torch.randn(20, 5)
    target = pairwise_distances(x, metric, scale)
    mask = quantile_mask(target)
    y = torch.randn(20, 7, dtype=torch.float64).float().requires_grad_()
    dense = distance_matching_loss(target, y, metric, scale, mask)
    (dense_grad,) = torch.autograd.grad(dense, y)
    sparse = sparse_distance_matching_loss(target, y, mask, metric, scale)
    (sparse_grad,) = torch.autograd.grad(sparse, y)
    assert torch.allclose(dense, sparse, rtol=1e-5)
    assert torch.allclose(dense_grad, sparse_grad, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- cross scaling


def test_cross_scales_the_target_by_the_output_width_and_the_output_by_the_target_width():
    # the paper's ||D̄_X/out - D̄_Y/in||_F with in = 2 (Z) and out = 3 (Y)
    target = target_distances(Z, "l1", "cross", out_width=3)
    assert torch.allclose(target, sym(1.0, 4 / 3, 5 / 3))
    y = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])  # raw 1, 2, 3
    assert torch.allclose(output_distances(pairwise_distances(y, "l1", "none"), "l1", "cross",
                                           width=3, target_width=2), sym(0.5, 1.0, 1.5))
    # diff (0.5, 1/3, 1/6) off the diagonal, each twice
    expected = math.sqrt(2 * (0.5**2 + (1 / 3) ** 2 + (1 / 6) ** 2))
    loss = distance_matching_loss(target, y, "l1", "cross", target_width=2)
    assert loss.item() == pytest.approx(expected)
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0, 1] = mask[1, 2] = True
    sparse = sparse_distance_matching_loss(target, y, mask, "l1", "cross", target_width=2)
    assert sparse.item() == pytest.approx(math.sqrt(0.5**2 + (1 / 6) ** 2))


def test_cross_with_l2_and_cosine():
    raw = sym(math.sqrt(5), math.sqrt(10), math.sqrt(13))
    assert torch.allclose(target_distances(Z, "l2", "cross", out_width=4), raw / 4)
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    assert torch.allclose(target_distances(z, "cosine", "cross", out_width=2),
                          sym(1.0, 2.0, 1.0) / 2)


def test_cross_is_a_pair_scaling():
    with pytest.raises(ValueError, match="cross"):
        pairwise_distances(Z, "l1", "cross")
    with pytest.raises(ValueError, match="target_width"):
        distance_matching_loss(torch.zeros(3, 3), Z, "l1", "cross")


def test_other_scales_build_targets_as_pairwise_distances():
    for scale in ("dim", "none", "max", "mean"):
        assert torch.equal(target_distances(Z, "l1", scale, out_width=7),
                           pairwise_distances(Z, "l1", scale))


# --------------------------------------------------------------------------- entropy


def test_distance_entropy_hand_computed():
    # off-diagonal 1, 1, 1, 1, 2, 2: p = 1/8 (x4), 1/4 (x2)
    expected = (0.5 * math.log(8) + 0.5 * math.log(4)) / math.log(6)
    assert distance_entropy(sym(1.0, 1.0, 2.0)) == pytest.approx(expected)
    assert distance_entropy(3.0 * sym(1.0, 1.0, 2.0)) == pytest.approx(expected)  # scale-free
    assert distance_entropy(sym(2.0, 2.0, 2.0)) == pytest.approx(1.0)  # all equidistant
    assert math.isnan(distance_entropy(torch.zeros(3, 3)))  # total collapse
