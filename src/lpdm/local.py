"""The local update of a trunk: every hidden layer learns from its own distance-matching loss.

Layer ``l`` sees its input detached, computes ``Y_l = tanh(W_l h_{l-1} + b_l)`` and is
stepped by Adam on its own ``||target - D(Y_l)||_F``; the next layer receives ``Y_l``
detached, as computed before the step. No gradient crosses a layer boundary.

For the default l1 distances scaled by width (or unscaled), each layer's gradient is
computed in closed form, without autograd: ``dL/dD`` of the Frobenius norm, the l1
kernel's backward (:func:`lpdm.kernels.pairwise_l1_backward`), ``tanh``'s derivative and
the products of a linear layer, in the order autograd computes them. Dense matching gives
bit for bit the weights of backpropagation; sparse matching the same up to float rounding
(the autograd path sums the masked pairs in another order). Nothing is kept from one
layer to the next, so memory stays flat with depth, and autograd's per-operation cost
is gone.

Other metrics and scalings backpropagate, in one of two modes that give identical weights:

- ``fused``: every layer's loss is computed with the pre-update weights, then one
  backward pass over their sum and one optimizer step. Because inputs are detached,
  each layer's gradient is exactly that of its own loss, and Adam is elementwise, so
  this equals stepping layer by layer.
- ``streaming``: layer by layer, each loss backpropagated and its graph freed before
  the next layer runs, so memory stays flat with depth.

With ``target = "global"`` a layer's target (and the sparse mask) depends only on the
batch, so it is computed once per update and shared by all layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lpdm.config import LocalConfig
from lpdm.distances import (
    apply_scale,
    distance_matching_loss,
    guided_target,
    off_diagonal_correlation,
    pairwise_distances,
    quantile_mask,
    sparse_distance_matching_loss,
    width_divisor,
)
from lpdm.kernels import pairwise_l1, pairwise_l1_backward
from lpdm.networks import Trunk

SATURATION_THRESHOLD = 0.99
# A layer's input [N, in] -> its target distances [N, N] and sparse pair mask (or None).
TargetsFn = Callable[[Tensor], tuple[Tensor, Tensor | None]]


@dataclass
class LayerDiagnostics:
    """Per-layer health of one update: is the layer collapsing or saturating?"""

    local_loss: float
    distance_corr: float
    saturation: float


def layer_diagnostics(target: Tensor, y: Tensor, loss: Tensor | None, cfg: LocalConfig,
                      d_y: Tensor | None = None) -> LayerDiagnostics:
    """Diagnostics of a layer output ``y`` ``[N, d]`` against its target distances ``[N, N]``.

    ``d_y``: the scaled distances of ``y`` when already computed.
    """
    with torch.no_grad():
        if d_y is None:
            d_y = pairwise_distances(y.detach(), cfg.metric, cfg.scale)
        if loss is None:
            loss = torch.linalg.vector_norm(target - d_y)
        return LayerDiagnostics(
            local_loss=float(loss),
            distance_corr=off_diagonal_correlation(target, d_y),
            saturation=float((y.detach().abs() > SATURATION_THRESHOLD).float().mean()),
        )


def closed_form_gradients(cfg: LocalConfig) -> bool:
    """Whether the local update computes its gradients in closed form (l1, ``dim``/``none``)."""
    return cfg.metric == "l1" and cfg.scale in ("dim", "none")


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

    def _target(self, global_distances: Tensor, layer_input: Tensor,
                performance: Tensor | None) -> Tensor:
        if self.cfg.target == "global":
            target = global_distances
        else:
            target = pairwise_distances(layer_input, self.cfg.metric, self.cfg.scale)
        if self.guided:
            target = guided_target(target, performance, self.cfg.guidance_strength)
        return target

    def _target_and_mask(self, global_distances: Tensor, layer_input: Tensor,
                         performance: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """A layer's target distances ``[N, N]`` and, for sparse matching, its pair mask."""
        with torch.no_grad():
            target = self._target(global_distances, layer_input, performance)
            mask = (quantile_mask(target, self.cfg.quantile_low, self.cfg.quantile_high)
                    if self.cfg.sparse else None)
        return target, mask

    def update(self, x: Tensor, performance: Tensor | None = None,
               diagnostics: bool = False) -> tuple[Tensor, list[LayerDiagnostics]]:
        """One local step of every layer on the batch ``x`` ``[N, in_dim]``.

        Returns the trunk's output ``[N, width]`` computed with the pre-update weights
        (detached), and per-layer diagnostics when asked for.
        """
        if self.guided and performance is None:
            raise ValueError("a guided local update needs a performance value per sample")
        h = x.detach()
        with torch.no_grad():
            global_distances = pairwise_distances(h, self.cfg.metric, self.cfg.scale)
        shared = (self._target_and_mask(global_distances, h, performance)
                  if self.cfg.target == "global" else None)

        def targets(layer_input: Tensor) -> tuple[Tensor, Tensor | None]:
            if shared is not None:
                return shared
            return self._target_and_mask(global_distances, layer_input, performance)

        if self.closed_form:
            return self._update_closed_form(h, targets, diagnostics)
        return self._update_autograd(h, targets, diagnostics)

    def _update_closed_form(self, h: Tensor, targets: TargetsFn, diagnostics: bool
                            ) -> tuple[Tensor, list[LayerDiagnostics]]:
        """Each layer's gradient by hand: ``L = ||T - D(y)||``, ``y = tanh(W h + b)``."""
        cfg = self.cfg
        report: list[LayerDiagnostics] = []
        with torch.no_grad():
            for layer in self.trunk.layers:
                target, mask = targets(h)
                y = torch.tanh(F.linear(h, layer.weight, layer.bias))
                width = y.shape[1]
                d_y = apply_scale(pairwise_l1(y), cfg.metric, cfg.scale, width)
                diff = target - d_y
                if mask is not None:
                    diff = diff * mask
                loss = torch.linalg.vector_norm(diff)
                # dL/d(raw distances), in the order autograd computes it: the norm's
                # gradient diff / L (zero at L = 0), negated, divided by the scaling.
                grad_distances = -(diff / loss).masked_fill_(loss == 0, 0.0)
                if cfg.scale == "dim":
                    grad_distances = grad_distances / width_divisor(cfg.metric, width)
                grad_pre = torch.ops.aten.tanh_backward(pairwise_l1_backward(y, grad_distances), y)
                layer.weight.grad = grad_pre.t().mm(h)
                layer.bias.grad = grad_pre.sum(0)
                if diagnostics:
                    report.append(layer_diagnostics(target, y, loss, cfg, d_y))
                h = y
        self.optimizer.step()
        return h, report

    def _loss(self, target: Tensor, mask: Tensor | None, y: Tensor) -> Tensor:
        cfg = self.cfg
        if mask is not None:
            return sparse_distance_matching_loss(target, y, mask, cfg.metric, cfg.scale)
        return distance_matching_loss(target, y, cfg.metric, cfg.scale)

    def _update_autograd(self, h: Tensor, targets: TargetsFn, diagnostics: bool
                         ) -> tuple[Tensor, list[LayerDiagnostics]]:
        streaming = self.cfg.update_mode == "streaming"
        losses: list[Tensor] = []
        report: list[LayerDiagnostics] = []
        for layer in self.trunk.layers:
            target, mask = targets(h)
            y = torch.tanh(layer(h))
            loss = self._loss(target, mask, y)
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
