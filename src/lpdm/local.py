"""The local update of a trunk: every hidden layer learns from its own distance-matching loss.

Layer ``l`` sees its input detached, computes ``Y_l = tanh(W_l h_{l-1} + b_l)`` and is
stepped by its own Adam on ``||target - D(Y_l)||_F``; the next layer receives ``Y_l``
detached, as computed before the step. No gradient crosses a layer boundary.

Two modes give identical weights:

- ``fused``: every layer's loss is computed with the pre-update weights, then one
  backward pass over their sum and one step of each optimizer. Because inputs are
  detached, each layer's gradient is exactly that of its own loss, and Adam is
  elementwise, so this equals stepping layer by layer. Fastest.
- ``streaming``: layer by layer, each loss backpropagated and its graph freed before
  the next layer runs, so memory stays flat with depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lpdm.config import LocalConfig
from lpdm.distances import (
    distance_matching_loss,
    guided_target,
    off_diagonal_correlation,
    pairwise_distances,
    quantile_mask,
    sparse_distance_matching_loss,
)
from lpdm.networks import Trunk

SATURATION_THRESHOLD = 0.99


@dataclass
class LayerDiagnostics:
    """Per-layer health of one update: is the layer collapsing or saturating?"""

    local_loss: float
    distance_corr: float
    saturation: float


def layer_diagnostics(target: Tensor, y: Tensor, loss: Tensor | None, cfg: LocalConfig
                      ) -> LayerDiagnostics:
    """Diagnostics of a layer output ``y`` ``[N, d]`` against its target distances ``[N, N]``."""
    with torch.no_grad():
        d_y = pairwise_distances(y.detach(), cfg.metric, cfg.scale)
        if loss is None:
            loss = torch.linalg.vector_norm(target - d_y)
        return LayerDiagnostics(
            local_loss=float(loss),
            distance_corr=off_diagonal_correlation(target, d_y),
            saturation=float((y.detach().abs() > SATURATION_THRESHOLD).float().mean()),
        )


class LocalTrunkTrainer:
    """Owns one Adam per hidden layer of ``trunk`` and applies the local update."""

    def __init__(self, trunk: Trunk, cfg: LocalConfig, lr: float, guided: bool) -> None:
        self.trunk = trunk
        self.cfg = cfg
        self.guided = guided
        self.optimizers = [torch.optim.Adam(layer.parameters(), lr=lr) for layer in trunk.layers]
        self.base_lr = lr

    def set_lr_scale(self, fraction: float) -> None:
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
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

    def _loss(self, target: Tensor, y: Tensor) -> Tensor:
        cfg = self.cfg
        if cfg.sparse:
            mask = quantile_mask(target, cfg.quantile_low, cfg.quantile_high)
            return sparse_distance_matching_loss(target, y, mask, cfg.metric, cfg.scale)
        return distance_matching_loss(target, y, cfg.metric, cfg.scale)

    def update(self, x: Tensor, performance: Tensor | None = None,
               diagnostics: bool = False) -> tuple[Tensor, list[LayerDiagnostics]]:
        """One local step of every layer on the batch ``x`` ``[N, in_dim]``.

        Returns the trunk's output ``[N, width]`` computed with the pre-update weights
        (detached), and per-layer diagnostics when asked for.
        """
        if self.guided and performance is None:
            raise ValueError("a guided local update needs a performance value per sample")
        streaming = self.cfg.update_mode == "streaming"
        h = x.detach()
        with torch.no_grad():
            global_distances = pairwise_distances(h, self.cfg.metric, self.cfg.scale)
        losses: list[Tensor] = []
        report: list[LayerDiagnostics] = []
        for layer, optimizer in zip(self.trunk.layers, self.optimizers, strict=True):
            with torch.no_grad():
                target = self._target(global_distances, h, performance)
            y = torch.tanh(layer(h))
            loss = self._loss(target, y)
            if diagnostics:
                report.append(layer_diagnostics(target, y, loss, self.cfg))
            if streaming:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            else:
                losses.append(loss)
            h = y.detach()
        if not streaming:
            for optimizer in self.optimizers:
                optimizer.zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()
            for optimizer in self.optimizers:
                optimizer.step()
        return h, report

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
