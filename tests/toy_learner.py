"""A learner from outside lpdm, registered by a plugin module (``LPDM_PLUGINS=toy_learner``):
``toy`` trains only the last trunk layer by the RL loss, on the detached output of the
layers before it, which keep their random initialisation."""

from dataclasses import dataclass
from typing import ClassVar

import torch

from lpdm.config import Section, option
from lpdm.learners import Learner, LearnerContext, LearnerSpec, register
from lpdm.networks import Trunk


@dataclass
class ToyConfig(Section):
    section: ClassVar[str] = "toy"
    toy_trained_layers: int = option(1, "toy: trunk layers, from the top, that the RL loss "
                                     "trains", check="positive")


class LastLayerLearner(Learner):
    name = "toy"

    @classmethod
    def build(cls, context: LearnerContext) -> "LastLayerLearner":
        learner = cls(Trunk(context.trunk, generators=context.generators), context)
        learner.trained = context.sections["toy"].toy_trained_layers
        return learner

    def features(self, obs, performance=None, target_rows=None, valid=None, learn=True):
        h = self.trunk.prepare(obs)
        layers = list(self.trunk.layers)
        with torch.no_grad():
            for layer in layers[:-self.trained]:
                h = self.trunk.run_layer(layer, h)
        for layer in layers[-self.trained:]:
            h = self.trunk.run_layer(layer, h)
        self._observe(obs, target_rows, valid)
        return h

    def rl_parameters(self):
        return [p for layer in list(self.trunk.layers)[-self.trained:] for p in layer.parameters()]


SPEC = register(LearnerSpec(
    name="toy", summary="the last trunk layer by the RL loss, the others random",
    build=LastLayerLearner.build, options=(ToyConfig,), local=True, cost_rank=10,
    search_space={"toy_trained_layers": {"type": "int", "low": 1, "high": 2}}))
