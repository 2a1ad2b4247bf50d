"""``layerwise``: every hidden layer learns from the RL loss of a head of its own, on its
detached input (after Artificial Dopamine, Guan et al., NeurIPS 2024, arXiv 2411.03604;
docs/design.md §2.6).

Layer ``l`` has a head of the algorithm's kind reading its output ``h_l``, computed from
``h_{l-1}`` detached; the RL loss is the sum over layers of the algorithm's loss on each
layer's head, so each layer's weights get the gradient of their own head's loss alone. The
agent acts with the last layer's head, or (``--layerwise-readout mean``) with the mean of
the layers' predictions (as ARQ, arXiv 2510.06649).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from lpdm.config import Section, option
from lpdm.learners.base import LearnerContext, RLLoss
from lpdm.learners.bp import BackpropLearner
from lpdm.learners.spec import LearnerSpec, register

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import Tensor, nn

    from lpdm.networks import Generators
    from lpdm.readouts import LayerReadout, LayerwiseTrunk


@dataclass
class LayerwiseConfig(Section):
    section: ClassVar[str] = "layerwise"
    layerwise_readout: str = option(
        "last", "layerwise: what the agent acts with: the last layer's head (last) or the "
        "mean of the layers' predictions (mean: values, Q values, logits, Gaussian means and "
        "log-stds)", ("last", "mean"))


class LayerwiseLearner(BackpropLearner):
    """A :class:`~lpdm.readouts.LayerwiseTrunk` (every layer's output, each from its input
    detached) trained by the RL optimizer through one head per layer; diagnostics as
    ``bp``'s (the gradient norm is that of the layer's own head's loss)."""

    trunk: LayerwiseTrunk
    name = "layerwise"

    def __init__(self, trunk: LayerwiseTrunk, context: LearnerContext) -> None:
        super().__init__(trunk, context)
        self.readout_kind = context.sections["layerwise"].layerwise_readout
        self.readout: LayerReadout | None = None
        self._generators = context.generators

    @classmethod
    def build(cls, context: LearnerContext) -> LayerwiseLearner:
        from lpdm.readouts import LayerwiseTrunk

        return cls(LayerwiseTrunk(context.trunk, generators=context.generators), context)

    def attach_head(self, head: nn.Module,
                    make_head: Callable[[int, Generators], nn.Module]) -> None:
        """``head`` reads the last layer; the layers below get heads of their own, drawn
        from generators forked from the members' (which draw nothing more)."""
        from lpdm.readouts import layer_head_generators, layer_readout

        generators = layer_head_generators(self._generators, self.name)
        self.readout = layer_readout(self.trunk, head, make_head, generators, self.readout_kind)

    def acting_head(self, head: nn.Module) -> nn.Module:
        return self.readout

    def acting_copy(self, make_head: Callable[[int, Generators], nn.Module],
                    generators: Generators) -> tuple[nn.Module, nn.Module]:
        from lpdm.readouts import LayerwiseTrunk, layer_readout

        trunk = LayerwiseTrunk(self.trunk.spec, generators=generators)
        last = make_head(trunk.widths[-1], generators)
        return trunk, layer_readout(trunk, last, make_head, generators, self.readout_kind)

    def rl_loss(self, head: nn.Module, features: Tensor, loss_fn: RLLoss
                ) -> tuple[Tensor, dict[str, Tensor]]:
        """``Σ_l loss_fn(head_l, h_l)``; the statistics of the acting readout (the last
        layer's, or under ``mean`` those of the mean prediction, measured without a
        gradient)."""
        import torch

        total: Tensor | None = None
        for layer_head, part in zip(self.readout.heads, self.readout.split(features),
                                    strict=True):
            loss, stats = loss_fn(layer_head, part)
            total = loss if total is None else total + loss
        if self.readout_kind == "mean":
            with torch.no_grad():
                _, stats = loss_fn(self.readout, features)
        return total, stats


SPEC = register(LearnerSpec(
    name="layerwise", summary="each layer by the RL loss of a head of its own, on its detached "
    "input (after Artificial Dopamine)", build=LayerwiseLearner.build,
    options=(LayerwiseConfig,), local=True, cost_rank=4, color="#17becf",
    search_space={"layerwise_readout": {"type": "categorical", "choices": ["last", "mean"]}}))
