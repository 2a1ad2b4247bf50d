"""``lpdm``: every hidden layer learns locally, by distance matching (L_u, docs/design.md §1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpdm.learners.base import Learner, LearnerContext
from lpdm.learners.spec import LearnerSpec, register

if TYPE_CHECKING:
    from torch import Tensor

    from lpdm.local import LocalTrunk
    from lpdm.optim import MemberAdam


class LocalLearner(Learner):
    """The trunk is a :class:`~lpdm.local.LocalTrunk`, which learns from every batch it is
    asked features of and returns them detached (``lpdm``, and ``lpdm-guided`` with a
    guided trunk)."""

    trunk: LocalTrunk
    name = "lpdm"
    guided = False

    @classmethod
    def build(cls, context: LearnerContext) -> LocalLearner:
        spec = context.trunk
        trunk = cls.trunk_type()(spec.in_shape, spec.hidden, conv=spec.conv,
                                 channels_last=spec.channels_last, lr=context.lr,
                                 guided=cls.guided, generators=context.generators,
                                 config=context.local, **cls.trunk_options(context))
        return cls(trunk, context)

    @classmethod
    def trunk_type(cls) -> type[LocalTrunk]:
        """The class of its trunk (imported when a learner is built: torch)."""
        from lpdm.local import LocalTrunk

        return LocalTrunk

    @classmethod
    def trunk_options(cls, context: LearnerContext) -> dict[str, object]:
        """Options of its :class:`LocalTrunk` beyond the distance-matching section."""
        return {}

    def _take_transitions(self) -> dict[str, Tensor]:
        """What its trunk's ``learn`` takes beside the batch (rewards, next observations)."""
        return {}

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None, valid: Tensor | None = None,
                 learn: bool = True) -> Tensor:
        if not learn:
            return self.trunk(obs)
        diagnose = self._take_diagnostics_request()
        features = self.trunk.learn(obs, performance, target_rows, valid, diagnose,
                                    **self._take_transitions())
        if diagnose:
            self.diagnostics = self.trunk.diagnostics
        return features

    def learn(self, obs: Tensor, performance: Tensor | None = None,
              target_rows: Tensor | None = None, valid: Tensor | None = None) -> None:
        self.features(obs, performance, target_rows, valid)

    def set_lr_scale(self, fraction: Tensor) -> None:
        self.trunk.set_lr_fraction(fraction)

    def optimizers(self) -> list[MemberAdam]:
        return [self.trunk.optimizer]

    def take_divergences(self) -> dict[int, int]:
        return self.trunk.take_divergences()


# What ``lpdm tune`` searches beside the algorithm's options: the readings of the target
# (docs/method.md: which scaling is best depends on the environment) and the block size.
DISTANCE_MATCHING_SPACE = {
    "scale": {"type": "categorical", "choices": ["dim", "none", "max", "mean"]},
    "target_scale": {"type": "float", "low": 0.1, "high": 3.0, "log": True},
    "distance_batch": {"type": "categorical", "choices": [32, 64, 128, 256]},
}

SPEC = register(LearnerSpec(
    name="lpdm", summary="distance matching, locally, per layer", build=LocalLearner.build,
    distance_matching=True, local=True, paper=True, cost_rank=5, color="#ff7f0e",
    search_space=DISTANCE_MATCHING_SPACE))
