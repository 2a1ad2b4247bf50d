"""The local update of a trunk: every hidden layer learns from its own distance-matching loss.

Layer ``l`` sees its input detached, computes ``Y_l = tanh(W_l h_{l-1} + b_l)`` and is
stepped by Adam on its own ``||target - D(Y_l)||_F``; the next layer receives ``Y_l``
detached, as computed before the step. No gradient crosses a layer boundary.

Everything is batched over the members of a population: a block is ``[K, N, in]`` (one
distance matrix per member), losses are ``[K]``, and each member's Adam steps only on its
own loss. Rows may be padding (``valid`` ``[K, N]``): pairs with a padded row take no part
in targets, losses or gradients, and a member with no real row in a block (``active``)
is not stepped at all.

For l1 distances with a constant scaling (``dim``, the default; ``none``; ``cross``), each
layer's gradient is computed in closed form, without autograd: ``dL/dD`` of the Frobenius
norm, the l1 kernel's backward (:func:`lpdm.kernels.pairwise_l1_backward`), ``tanh``'s
derivative and the products of an affine layer, in the order autograd computes them.
Dense matching gives bit for bit the weights of backpropagation; sparse matching the
same up to float rounding. Nothing is kept from one layer to the next, so memory stays
flat with depth, and autograd's per-operation cost is gone.

Other metrics and scalings backpropagate, in one of two modes that give identical weights:

- ``fused``: every layer's loss is computed with the pre-update weights, then one
  backward pass over their sum and one optimizer step. Because inputs are detached,
  each layer's gradient is exactly that of its own loss, and Adam is elementwise, so
  this equals stepping layer by layer.
- ``streaming``: layer by layer, each loss backpropagated and its graph freed before
  the next layer runs, so memory stays flat with depth.

With ``target = "global"`` a layer's target (and the sparse mask) depends only on the
batch (and, under ``cross``, on the layer's width), so it is computed once per update and
shared by the layers (:class:`LayerTargets`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lpdm.config import LocalConfig
from lpdm.distances import (
    distance_entropy,
    distance_matching_loss,
    guided_target,
    off_diagonal_correlation,
    output_distances,
    output_scale_divisor,
    pair_mask,
    quantile_mask,
    raw_pairwise_distances,
    target_distances,
)
from lpdm.kernels import pairwise_l1, pairwise_l1_backward
from lpdm.networks import Trunk
from lpdm.optim import MemberAdam

SATURATION_THRESHOLD = 0.99


@dataclass
class LayerDiagnostics:
    """Per-layer health of one update of one member: is the layer collapsing or saturating?"""

    local_loss: float
    distance_corr: float
    saturation: float
    distance_entropy: float


# Per member (None for a member that had no data), the diagnostics of each layer.
MemberDiagnostics = list[list[LayerDiagnostics] | None]


@dataclass
class LayerTarget:
    """What one layer is asked to match, per member."""

    distances: Tensor  # [K, N, N], scaled, guided when the learner is
    mask: Tensor | None  # [K, N, N] bool pairs to match (sparse, or real rows), None: all
    width: int  # of the rows the distances were computed from (``cross`` divides by it)


class LayerTargets:
    """The targets of one block's layers: ``targets(layer_input, out_width)``.

    With the global target every layer matches the distances of ``global_rows`` (the
    network input, or the raw observation under ``target_obs = "raw"``); they are computed
    once per block (once per output width under ``cross``, whose target depends on it).
    With the local target a layer matches the distances of its own input.
    """

    def __init__(self, cfg: LocalConfig, global_rows: Tensor,
                 performance: Tensor | None = None, valid: Tensor | None = None) -> None:
        self.cfg = cfg
        self.global_rows = global_rows.detach()
        self.performance = performance
        self.valid = valid
        self._global: dict[int | None, LayerTarget] = {}
        self._global_raw: Tensor | None = None

    def __call__(self, layer_input: Tensor, out_width: int) -> LayerTarget:
        if self.cfg.target != "global":
            return self._make(layer_input.detach(), out_width)
        key = out_width if self.cfg.scale == "cross" else None
        if key not in self._global:
            self._global[key] = self._make(self.global_rows, out_width)
        return self._global[key]

    def _make(self, rows: Tensor, out_width: int) -> LayerTarget:
        cfg, valid = self.cfg, self.valid
        with torch.no_grad():
            if cfg.scale == "cross" and rows is self.global_rows:
                if self._global_raw is None:
                    self._global_raw = raw_pairwise_distances(rows, cfg.metric)
                distances = self._global_raw / out_width
            else:
                distances = target_distances(rows, cfg.metric, cfg.scale, out_width, valid)
            if cfg.target_scale != 1.0:
                distances = distances * cfg.target_scale
            if self.performance is not None:
                distances = guided_target(distances, self.performance, cfg.guidance_strength,
                                          valid)
            if cfg.sparse:
                mask = quantile_mask(distances, cfg.quantile_low, cfg.quantile_high, valid)
            else:
                mask = None if valid is None else pair_mask(valid, rows.shape[-2], rows.device)
        return LayerTarget(distances, mask, rows.shape[-1])


def layer_diagnostics(target: LayerTarget, y: Tensor, losses: Tensor | None,
                      cfg: LocalConfig, d_y: Tensor | None = None,
                      valid: Tensor | None = None) -> list[LayerDiagnostics]:
    """Diagnostics ``[K]`` of a layer output ``y`` ``[K, N, d]`` against its target.

    ``losses`` ``[K]`` and ``d_y`` (the scaled distances of ``y``) when already computed.
    """
    with torch.no_grad():
        if d_y is None:
            d_y = output_distances(raw_pairwise_distances(y.detach(), cfg.metric), cfg.metric,
                                   cfg.scale, y.shape[-1], target.width, valid)
        if losses is None:
            diff = target.distances - d_y
            losses = torch.linalg.vector_norm(diff if target.mask is None else diff * target.mask,
                                              dim=(-2, -1))
        report = []
        for k in range(y.shape[0]):
            rows = slice(None) if valid is None else valid[k]
            member_valid = None if valid is None else valid[k]
            report.append(LayerDiagnostics(
                local_loss=float(losses[k]),
                distance_corr=off_diagonal_correlation(target.distances[k], d_y[k], member_valid),
                saturation=float((y[k][rows].abs() > SATURATION_THRESHOLD).float().mean()),
                distance_entropy=distance_entropy(d_y[k], member_valid)))
        return report


def _per_layer_to_per_member(layers: list[list[LayerDiagnostics]], members: int,
                             active: Tensor | None) -> MemberDiagnostics:
    return [None if active is not None and not bool(active[k])
            else [layer[k] for layer in layers] for k in range(members)]


def observe_trunk(trunk: Trunk, x: Tensor, cfg: LocalConfig, target_rows: Tensor | None = None,
                  valid: Tensor | None = None) -> MemberDiagnostics:
    """Per-member, per-layer diagnostics of a trunk that does not learn locally, on ``x``
    ``[K, N, in]``."""
    with torch.no_grad():
        targets = LayerTargets(cfg, x if target_rows is None else target_rows, valid=valid)
        h, layers = x, []
        for layer in trunk.layers:
            y = torch.tanh(layer(h))
            layers.append(layer_diagnostics(targets(h, y.shape[-1]), y, None, cfg, valid=valid))
            h = y
    return _per_layer_to_per_member(layers, x.shape[0], None)


def closed_form_gradients(cfg: LocalConfig) -> bool:
    """Whether the local update computes its gradients in closed form (l1 with a constant
    scaling: ``dim``, ``none`` or ``cross``)."""
    return cfg.metric == "l1" and cfg.scale in ("dim", "none", "cross")


class LocalTrunkTrainer:
    """Owns the trunk's Adam and applies the local update.

    One Adam over all hidden layers: Adam is elementwise, with a state per parameter, so
    this is exactly one Adam per layer (each layer steps only on its own gradient, at the
    same learning rate), in one optimizer call per update instead of one per layer; and,
    with a step count per member, exactly one Adam per member.
    """

    def __init__(self, trunk: Trunk, cfg: LocalConfig, lr: float, guided: bool) -> None:
        self.trunk = trunk
        self.cfg = cfg
        self.guided = guided
        self.optimizer = MemberAdam([{"params": list(trunk.parameters()), "lr": lr}])
        self.closed_form = closed_form_gradients(cfg)
        self.diverged: dict[int, int] = {}  # member -> first layer whose loss was not finite

    def set_lr_scale(self, fraction: Tensor) -> None:
        """Scale the learning rate of member ``k`` by ``fraction[k]`` (or all by a number)."""
        self.optimizer.set_lr_fraction(fraction)

    def update(self, x: Tensor, performance: Tensor | None = None, diagnostics: bool = False,
               target_rows: Tensor | None = None, valid: Tensor | None = None,
               active: Tensor | None = None) -> tuple[Tensor, MemberDiagnostics]:
        """One local step of every layer on the block ``x`` ``[K, N, in_dim]``.

        ``target_rows`` ``[K, N, *]``: the rows the global target is built from (default
        ``x``); ``valid`` ``[K, N]``: the real rows; ``active`` ``[K]``: the members to step
        (default all). Returns the trunk's output ``[K, N, width]`` computed with the
        pre-update weights (detached), and per-member diagnostics when asked for.
        """
        if self.guided and performance is None:
            raise ValueError("a guided local update needs a performance value per sample")
        h = x.detach()
        targets = LayerTargets(self.cfg, h if target_rows is None else target_rows,
                               performance if self.guided else None, valid)
        if self.closed_form:
            h, layers = self._update_closed_form(h, targets, diagnostics, valid)
        else:
            h, layers = self._update_autograd(h, targets, diagnostics, valid)
        self.optimizer.step(active)
        report = _per_layer_to_per_member(layers, x.shape[0], active) if diagnostics else []
        return h, report

    def _update_closed_form(self, h: Tensor, targets: LayerTargets, diagnostics: bool,
                            valid: Tensor | None) -> tuple[Tensor, list]:
        """Each layer's gradient by hand: ``L = ||T - D(y)||``, ``y = tanh(W h + b)``."""
        cfg = self.cfg
        layers = []
        with torch.no_grad():
            for layer in self.trunk.layers:
                target = targets(h, layer.out_features)
                y = torch.tanh(layer(h))
                divisor = output_scale_divisor(cfg.metric, cfg.scale, y.shape[-1], target.width)
                raw = pairwise_l1(y)
                d_y = raw if divisor == 1.0 else raw / divisor
                diff = target.distances - d_y
                if target.mask is not None:
                    diff = diff * target.mask
                losses = torch.linalg.vector_norm(diff, dim=(-2, -1))  # [K]
                self._check(losses, layer)
                # dL/d(raw distances), in the order autograd computes it: the norm's
                # gradient diff / L (zero at L = 0), negated, divided by the scaling.
                per_member = losses[:, None, None]
                grad_distances = -(diff / per_member).masked_fill_(per_member == 0, 0.0)
                if divisor != 1.0:
                    grad_distances = grad_distances / divisor
                grad_pre = torch.ops.aten.tanh_backward(pairwise_l1_backward(y, grad_distances), y)
                # (h^T g)^T, as autograd computes the gradient of baddbmm's transposed weight
                layer.weight.grad = h.transpose(1, 2).bmm(grad_pre).transpose(1, 2)
                layer.bias.grad = grad_pre.sum(1)
                if diagnostics:
                    layers.append(layer_diagnostics(target, y, losses, cfg, d_y, valid))
                h = y
        return h, layers

    def _update_autograd(self, h: Tensor, targets: LayerTargets, diagnostics: bool,
                         valid: Tensor | None) -> tuple[Tensor, list]:
        cfg = self.cfg
        streaming = cfg.update_mode == "streaming"
        total: list[Tensor] = []
        layers = []
        self.optimizer.zero_grad()
        for layer in self.trunk.layers:
            target = targets(h, layer.out_features)
            y = torch.tanh(layer(h))
            losses = distance_matching_loss(target.distances, y, cfg.metric, cfg.scale,
                                            target.mask, target.width, valid)
            self._check(losses, layer)
            if diagnostics:
                layers.append(layer_diagnostics(target, y, losses.detach(), cfg, valid=valid))
            # members and layers have disjoint parameters: the gradient of the sum is
            # each member's layer's gradient of its own loss
            if streaming:
                losses.sum().backward()
            else:
                total.append(losses.sum())
            h = y.detach()
        if not streaming:
            torch.stack(total).sum().backward()
        return h, layers

    def _check(self, losses: Tensor, layer: torch.nn.Module) -> None:
        """Record the members whose local loss at ``layer`` is not finite."""
        bad = ~torch.isfinite(losses.detach())
        if bool(bad.any()):
            index = list(self.trunk.layers).index(layer)
            for k in bad.nonzero().flatten().tolist():
                self.diverged.setdefault(k, index)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
