"""Task-aware distance targets: a local trunk whose layers match distances that carry value
or bisimulation information (``lpdm-metric``, docs/design.md §2.4).

Each layer still matches a target distance matrix locally, with the update of
:class:`~lpdm.local.LocalTrunk`; only the target differs. With ``D̄_X`` the layer's usual
target (global or local, scaled, before the sparse mask) and ``c`` the factor that gives the
gaps the mean of ``D̄_X`` over pairs of real rows (:func:`lpdm.distances.matched_scale`):

- ``value``: ``D̂ = (1 − β)·D̄_X + β·c·|v_i − v_j|``, ``v`` the performance signal;
- ``bisim``: ``D̂ = (1 − β)·D̄_X + β·(c·|r_i − r_j| + γ·D̄′_l(s′_i, s′_j))``, ``D̄′_l`` the
  layer's own output distances on the next observations, computed by a slowly updated
  (Polyak) copy of the trunk. ``β = 1`` is the bisimulation fixed-point target.

The copy is held in buffers (``polyak_l{i}_{weight,bias}``, saved with the trunk's state),
starts as the trunk and moves ``θ′ ← τ·θ + (1 − τ)·θ′`` after each local step of a member.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lpdm.distances import (
    bisimulation_target,
    output_distances,
    raw_pairwise_distances,
    value_target,
)
from lpdm.local import BlockRows, LocalTrunk, TargetShaping, distance_rows

FORMS = ("value", "bisim")


class MetricTrunk(LocalTrunk):
    """A :class:`LocalTrunk` whose layers match task-aware targets (module docstring).

    ``form``: ``value`` (``learn`` needs ``performance``) or ``bisim`` (``learn`` needs
    ``rewards`` ``[K, N]`` and ``next_obs`` ``[K, N, *in_shape]``); ``beta`` in [0, 1] mixes
    the task term into the usual target (0: ``lpdm`` exactly); ``gamma``: the discount of the
    next observations' distances; ``tau`` in (0, 1]: the Polyak copy's rate (``bisim``).
    """

    def __init__(self, in_dim: int | Sequence[int], hidden_sizes: Sequence[int] = (128, 256),
                 *, form: str = "value", beta: float = 0.5, gamma: float = 0.99,
                 tau: float = 0.05, **kwargs: object) -> None:
        if form not in FORMS:
            raise ValueError(f"unknown target form {form!r}; choose one of {', '.join(FORMS)}")
        if not 0.0 <= beta <= 1.0 or not 0.0 <= gamma <= 1.0 or not 0.0 < tau <= 1.0:
            raise ValueError(f"need beta, gamma in [0, 1] and tau in (0, 1], got beta={beta}, "
                             f"gamma={gamma}, tau={tau}")
        super().__init__(in_dim, hidden_sizes, **kwargs)
        self.form, self.beta, self.gamma, self.tau = form, beta, gamma, tau
        if form == "bisim":
            for name, param in self._polyak_pairs():
                self.register_buffer(name, param.detach().clone())

    # ----------------------------------------------------------------- the Polyak copy

    def _polyak_pairs(self) -> list[tuple[str, torch.nn.Parameter]]:
        """``(buffer name, parameter)`` of every parameter of the trunk's layers."""
        return [(f"polyak_l{i}_{name}", param) for i, layer in enumerate(self.layers)
                for name, param in layer.named_parameters()]

    def _copy_weights(self, index: int) -> dict[str, Tensor]:
        layer = self.layers[index]
        return {name: getattr(self, f"polyak_l{index}_{name}")
                for name, _ in layer.named_parameters()}

    @torch.no_grad()
    def reset_copy(self, members: Tensor) -> None:
        """Set the copy of the ``members`` (``[K]`` bool) to the trunk's weights (weights put
        in from outside, ``--init-trunk``)."""
        if self.form != "bisim":
            return
        for name, param in self._polyak_pairs():
            copy = getattr(self, name)
            index = members.to(copy.device)
            copy[index] = param[index]

    @torch.no_grad()
    def _after_step(self, active: Tensor) -> None:
        if self.form != "bisim":
            return
        for name, param in self._polyak_pairs():
            copy = getattr(self, name)
            moved = self.tau * param + (1.0 - self.tau) * copy
            shape = (-1, *([1] * (copy.dim() - 1)))
            copy.copy_(torch.where(active.to(copy.device).reshape(shape), moved, copy))

    @torch.no_grad()
    def copy_outputs(self, x: Tensor) -> list[Tensor]:
        """The Polyak copy's outputs of every layer on ``x`` ``[K, N, *in_shape]``, as the
        local loss compares them (:func:`lpdm.local.distance_rows`)."""
        h = self.prepare(x)
        outputs = []
        for index, layer in enumerate(self.layers):
            h = self.run_layer(layer, h, self._copy_weights(index))
            outputs.append(distance_rows(h, self.cfg))
        return outputs

    # ----------------------------------------------------------------- targets

    def _shaping(self, per_row: BlockRows, valid: Tensor | None) -> TargetShaping:
        if self.form == "value":
            if per_row.performance is None:
                raise ValueError("the value target learns from a performance value per sample: "
                                 "learn(x, performance)")
            performance = per_row.performance

            def value(distances: Tensor, layer: int, target_width: int) -> Tensor:
                return value_target(distances, performance, self.beta, valid)

            return value
        if per_row.rewards is None or per_row.next_obs is None:
            raise ValueError("the bisimulation target learns from each sample's reward and "
                             "next observation: learn(x, rewards=..., next_obs=...)")
        rewards, cfg = per_row.rewards, self.cfg
        next_rows = self.copy_outputs(per_row.next_obs)

        def bisimulation(distances: Tensor, layer: int, target_width: int) -> Tensor:
            rows = next_rows[layer]
            future = output_distances(raw_pairwise_distances(rows, cfg.metric), cfg.metric,
                                      cfg.scale, rows.shape[-1], target_width, valid)
            return bisimulation_target(distances, rewards, future, self.beta, self.gamma, valid)

        return bisimulation
