"""``frozen``: random, never-trained features, the control for whether trunk learning matters."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpdm.learners.base import Learner, LearnerContext
from lpdm.learners.spec import LearnerSpec, register

if TYPE_CHECKING:
    from torch import Tensor


class FrozenLearner(Learner):
    """The trunk keeps its random initialisation; the heads read its features."""

    name = "frozen"

    @classmethod
    def build(cls, context: LearnerContext) -> FrozenLearner:
        from lpdm.networks import Trunk

        trunk = Trunk(context.trunk, generators=context.generators)
        trunk.requires_grad_(False)  # no graph is built through it
        return cls(trunk, context)

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None, valid: Tensor | None = None,
                 learn: bool = True) -> Tensor:
        features = self.trunk(obs)
        self._observe(obs, target_rows, valid)
        return features


SPEC = register(LearnerSpec(
    name="frozen", summary="nothing (random features: the control)", build=FrozenLearner.build,
    control=True, paper=True, cost_rank=1, color="#7f7f7f"))
