"""``linear``: no trunk at all, the heads read the observation: the control for whether any
hidden layer helps (a trunk that merely re-embeds its input isometrically gives little more
than this)."""

from __future__ import annotations

from lpdm.learners.frozen import FrozenLearner
from lpdm.learners.spec import LearnerSpec, register


class LinearLearner(FrozenLearner):
    """A trunk without layers: the identity on the flattened observation."""

    name = "linear"


SPEC = register(LearnerSpec(
    name="linear", summary="there is no trunk: the heads read the observation (the control "
    "for any hidden layer)", build=LinearLearner.build, control=True, has_trunk=False,
    cost_rank=0, color="#9467bd"))
