"""``bp``: the trunk learns from the RL loss, by backpropagation (the baseline)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpdm.learners.base import Learner, LearnerContext
from lpdm.learners.spec import LearnerSpec, register

if TYPE_CHECKING:
    from torch import Tensor, nn


class BackpropLearner(Learner):
    """Features keep their graph, so the RL loss trains the trunk."""

    name = "bp"
    _awaiting_gradients = False  # diagnostics were measured; the RL gradients come next

    @classmethod
    def build(cls, context: LearnerContext) -> BackpropLearner:
        from lpdm.networks import Trunk

        return cls(Trunk(context.trunk, generators=context.generators), context)

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None, valid: Tensor | None = None,
                 learn: bool = True) -> Tensor:
        features = self.trunk(obs)
        diagnostics = self.diagnostics
        self._observe(obs, target_rows, valid)
        self._awaiting_gradients |= self.diagnostics is not diagnostics
        return features

    def rl_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def after_backward(self, stepping: Tensor) -> None:
        """The gradient norm reaching each layer, for the diagnostics just measured."""
        if not self._awaiting_gradients:
            return
        from lpdm.local import record_gradient_norms

        self._awaiting_gradients = False
        for i, layer in enumerate(self.trunk.layers):
            record_gradient_norms([member[i] if member else None for member in self.diagnostics],
                                  layer)


SPEC = register(LearnerSpec(
    name="bp", summary="the RL loss, by backpropagation", build=BackpropLearner.build,
    paper=True, cost_rank=2, color="#1f77b4"))
