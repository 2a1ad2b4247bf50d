"""The local update of a trunk: every hidden layer learns from its own distance-matching loss.

Layer ``l`` sees its input detached, computes ``Y_l = tanh(W_l h_{l-1} + b_l)`` and is
stepped by Adam on its own ``||target - D(Y_l)||_F``; the next layer receives ``Y_l``
detached, as computed before the step. No gradient crosses a layer boundary.

For l1 distances with a constant scaling (``dim``, the default; ``none``; ``cross``), each
layer's gradient is computed in closed form, without autograd: ``dL/dD`` of the Frobenius
norm, the l1 kernel's backward (:func:`lpdm.kernels.pairwise_l1_backward`), ``tanh``'s
derivative and the products of a linear layer, in the order autograd computes them. Dense
matching gives bit for bit the weights of backpropagation; sparse matching the same up to
float rounding (the autograd path sums the masked pairs in another order). Nothing is kept
from one layer to the next, so memory stays flat with depth, and autograd's per-operation
cost is gone.

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
import torch.nn.functional as F
from torch import Tensor

from lpdm.config import LocalConfig
from lpdm.distances import (
    distance_entropy,
    distance_matching_loss,
    guided_target,
    off_diagonal_correlation,
    output_distances,
    output_scale_divisor,
    quantile_mask,
    raw_pairwise_distances,
    sparse_distance_matching_loss,
    target_distances,
)
from lpdm.kernels import pairwise_l1, pairwise_l1_backward
from lpdm.networks import Trunk

SATURATION_THRESHOLD = 0.99


@dataclass
class LayerDiagnostics:
    """Per-layer health of one update: is the layer collapsing or saturating?"""

    local_loss: float
    distance_corr: float
    saturation: float
    distance_entropy: float


@dataclass
class LayerTarget:
    """What one layer is asked to match."""

    distances: Tensor  # [N, N], scaled, guided when the learner is
    mask: Tensor | None  # [N, N] bool pairs to match (sparse matching), else None
    width: int  # of the rows the distances were computed from (``cross`` divides by it)


class LayerTargets:
    """The targets of one block's layers: ``targets(layer_input, out_width)``.

    With the global target every layer matches the distances of ``global_rows`` (the
    network input, or the raw observation under ``target_obs = "raw"``); they are computed
    once per block (once per output width under ``cross``, whose target depends on it).
    With the local target a layer matches the distances of its own input.
    """

    def __init__(self, cfg: LocalConfig, global_rows: Tensor,
                 performance: Tensor | None = None) -> None:
        self.cfg = cfg
        self.global_rows = global_rows.detach()
        self.performance = performance
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
        cfg = self.cfg
        with torch.no_grad():
            if cfg.scale == "cross" and rows is self.global_rows:
                if self._global_raw is None:
                    self._global_raw = raw_pairwise_distances(rows, cfg.metric)
                distances = self._global_raw / out_width
            else:
                distances = target_distances(rows, cfg.metric, cfg.scale, out_width)
            if cfg.target_scale != 1.0:
                distances = distances * cfg.target_scale
            if self.performance is not None:
                distances = guided_target(distances, self.performance, cfg.guidance_strength)
            mask = (quantile_mask(distances, cfg.quantile_low, cfg.quantile_high)
                    if cfg.sparse else None)
        return LayerTarget(distances, mask, rows.shape[1])


def layer_diagnostics(target: LayerTarget, y: Tensor, loss: Tensor | None, cfg: LocalConfig,
                      d_y: Tensor | None = None) -> LayerDiagnostics:
    """Diagnostics of a layer output ``y`` ``[N, d]`` against its target.

    ``d_y``: the scaled distances of ``y`` when already computed.
    """
    with torch.no_grad():
        if d_y is None:
            d_y = output_distances(raw_pairwise_distances(y.detach(), cfg.metric), cfg.metric,
                                   cfg.scale, y.shape[1], target.width)
        if loss is None:
            loss = torch.linalg.vector_norm(target.distances - d_y)
        return LayerDiagnostics(
            local_loss=float(loss),
            distance_corr=off_diagonal_correlation(target.distances, d_y),
            saturation=float((y.detach().abs() > SATURATION_THRESHOLD).float().mean()),
            distance_entropy=distance_entropy(d_y),
        )


def observe_trunk(trunk: Trunk, x: Tensor, cfg: LocalConfig,
                  target_rows: Tensor | None = None) -> list[LayerDiagnostics]:
    """Per-layer diagnostics of a trunk that does not learn locally, on the batch ``x``."""
    with torch.no_grad():
        targets = LayerTargets(cfg, x if target_rows is None else target_rows)
        h, report = x, []
        for layer in trunk.layers:
            y = torch.tanh(layer(h))
            report.append(layer_diagnostics(targets(h, y.shape[1]), y, None, cfg))
            h = y
    return report


def closed_form_gradients(cfg: LocalConfig) -> bool:
    """Whether the local update computes its gradients in closed form (l1 with a constant
    scaling: ``dim``, ``none`` or ``cross``)."""
    return cfg.metric == "l1" and cfg.scale in ("dim", "none", "cross")


class LocalTrunkTrainer:
    """Owns the trunk's Adam and applies the local update.

    One Adam over all hidden layers: Adam is elementwise, with a state per parameter, so
    this is exactly one Adam per layer (each layer steps only on its own gradient, at the
    same learning rate), in one optimizer call per update instead of one per layer.
    """

    def __init__(self, trunk: Trunk, cfg: LocalConfig, lr: float, guided: bool) -> None:
        self.trunk = trunk
        self.cfg = cfg
        self.guided = guided
        self.optimizer = torch.optim.Adam(trunk.parameters(), lr=lr)
        self.base_lr = lr
        self.closed_form = closed_form_gradients(cfg)

    def set_lr_scale(self, fraction: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * fraction

    def update(self, x: Tensor, performance: Tensor | None = None,
               diagnostics: bool = False, target_rows: Tensor | None = None
               ) -> tuple[Tensor, list[LayerDiagnostics]]:
        """One local step of every layer on the batch ``x`` ``[N, in_dim]``.

        ``target_rows`` ``[N, *]``: the rows the global target is built from (default ``x``).
        Returns the trunk's output ``[N, width]`` computed with the pre-update weights
        (detached), and per-layer diagnostics when asked for.
        """
        if self.guided and performance is None:
            raise ValueError("a guided local update needs a performance value per sample")
        h = x.detach()
        targets = LayerTargets(self.cfg, h if target_rows is None else target_rows,
                               performance if self.guided else None)
        if self.closed_form:
            return self._update_closed_form(h, targets, diagnostics)
        return self._update_autograd(h, targets, diagnostics)

    def _update_closed_form(self, h: Tensor, targets: LayerTargets, diagnostics: bool
                            ) -> tuple[Tensor, list[LayerDiagnostics]]:
        """Each layer's gradient by hand: ``L = ||T - D(y)||``, ``y = tanh(W h + b)``."""
        cfg = self.cfg
        report: list[LayerDiagnostics] = []
        with torch.no_grad():
            for layer in self.trunk.layers:
                target = targets(h, layer.out_features)
                y = torch.tanh(F.linear(h, layer.weight, layer.bias))
                divisor = output_scale_divisor(cfg.metric, cfg.scale, y.shape[1], target.width)
                raw = pairwise_l1(y)
                d_y = raw if divisor == 1.0 else raw / divisor
                diff = target.distances - d_y
                if target.mask is not None:
                    diff = diff * target.mask
                loss = torch.linalg.vector_norm(diff)
                # dL/d(raw distances), in the order autograd computes it: the norm's
                # gradient diff / L (zero at L = 0), negated, divided by the scaling.
                grad_distances = -(diff / loss).masked_fill_(loss == 0, 0.0)
                if divisor != 1.0:
                    grad_distances = grad_distances / divisor
                grad_pre = torch.ops.aten.tanh_backward(pairwise_l1_backward(y, grad_distances), y)
                layer.weight.grad = grad_pre.t().mm(h)
                layer.bias.grad = grad_pre.sum(0)
                if diagnostics:
                    report.append(layer_diagnostics(target, y, loss, cfg, d_y))
                h = y
        self.optimizer.step()
        return h, report

    def _loss(self, target: LayerTarget, y: Tensor) -> Tensor:
        cfg = self.cfg
        if target.mask is not None:
            return sparse_distance_matching_loss(target.distances, y, target.mask, cfg.metric,
                                                 cfg.scale, target.width)
        return distance_matching_loss(target.distances, y, cfg.metric, cfg.scale,
                                      target_width=target.width)

    def _update_autograd(self, h: Tensor, targets: LayerTargets, diagnostics: bool
                         ) -> tuple[Tensor, list[LayerDiagnostics]]:
        streaming = self.cfg.update_mode == "streaming"
        losses: list[Tensor] = []
        report: list[LayerDiagnostics] = []
        for layer in self.trunk.layers:
            target = targets(h, layer.out_features)
            y = torch.tanh(layer(h))
            loss = self._loss(target, y)
            if diagnostics:
                report.append(layer_diagnostics(target, y, loss, self.cfg))
            if streaming:  # only this layer has gradients when the optimizer steps
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            else:
                losses.append(loss)
            h = y.detach()
        if not streaming:
            self.optimizer.zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()
            self.optimizer.step()
        return h, report

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
