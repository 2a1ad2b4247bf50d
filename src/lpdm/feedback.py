"""Direct feedback alignment's trunk: fixed random feedback matrices, one per hidden layer,
that carry the head's output error to every layer (docs/design.md §2.5).

A layer ``l`` of output size ``size_l`` (``C·H·W`` for a convolution) has ``B_l``
``[K, size_l, out]``; for an output error ``e`` ``[K, B, out]`` its feedback is ``B_l e``
per row, which is injected as the gradient of the layer's output, computed on its detached
input: autograd multiplies it by ``tanh'(a_l)`` and forms ``δ_l h_{l−1}ᵀ``, and no gradient
crosses a layer. Nothing here mixes members.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpdm.errors import ConfigError
from lpdm.networks import Generators, MemberLinear, Trunk, TrunkSpec, member_noise
from lpdm.optim import MemberAdam


def output_layer(head: nn.Module) -> MemberLinear:
    """The head's output layer: its one :class:`~lpdm.networks.MemberLinear`."""
    layers = [m for m in head.modules() if isinstance(m, MemberLinear)]
    if len(layers) != 1:
        raise ConfigError(f"dfa reads the error of a head with one output layer; "
                          f"{type(head).__name__} has {len(layers)}")
    return layers[0]


def feedback_signal(feedback: Tensor, error: Tensor) -> Tensor:
    """``B e`` for every row: ``feedback`` ``[K, size, out]``, ``error`` ``[K, B, out]`` ->
    ``[K, B, size]``."""
    return torch.bmm(error, feedback.transpose(1, 2))


class FeedbackTrunk(Trunk):
    """A trunk with one fixed feedback matrix per layer (buffers ``feedback_{l}``, drawn by
    :meth:`draw_feedback` once the head's output width is known) and the Adam that steps
    its layers (its state is the trunk's extra state, so checkpoints hold it)."""

    def __init__(self, spec: TrunkSpec, generators: Generators, lr: float) -> None:
        super().__init__(spec, generators=generators)
        self.optimizer = MemberAdam([{"params": list(self.parameters()), "lr": lr}])

    def draw_feedback(self, out_features: int, generators: Generators) -> None:
        """``B_l ~ N(0, 1/out)`` elementwise for every layer, member ``k``'s drawn from
        ``generators[k]``, layer by layer."""
        for i, shape in enumerate(self.layer_shapes):
            size = int(torch.Size(shape).numel())
            draw = member_noise(generators, (size, out_features), normal=True)
            self.register_buffer(f"feedback_{i}", draw / out_features ** 0.5)

    @property
    def feedback(self) -> list[Tensor]:
        """``B_l`` ``[K, size_l, out]`` per layer."""
        return [getattr(self, f"feedback_{i}") for i in range(len(self.layers))]

    def kept_forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The features of ``x`` ``[K, B, width]``, detached, and every layer's output, each
        with a graph to its own layer's parameters only (each layer reads its input
        detached)."""
        h = self.prepare(x)
        outputs = []
        for layer in self.layers:
            h = self.run_layer(layer, h.detach())
            outputs.append(h)
        return (h.flatten(2) if h.dim() > 3 else h).detach(), outputs

    def inject(self, outputs: list[Tensor], error: Tensor) -> None:
        """Set every layer's gradient to its DFA gradient: ``B_l e`` injected at the kept
        layer ``outputs`` (:meth:`kept_forward`) for the output error ``error``
        ``[K, B, out]``."""
        self.optimizer.zero_grad()
        signals = [feedback_signal(b, error).reshape(h.shape)
                   for b, h in zip(self.feedback, outputs, strict=True)]
        torch.autograd.backward(outputs, signals)

    def get_extra_state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])


def backprop_alignment(trunk: FeedbackTrunk, head_weight: Tensor, obs: Tensor, error: Tensor
                       ) -> Tensor:
    """Cosine similarity ``[K, L]`` between each layer's DFA weight gradient and its
    backpropagation gradient on ``obs``, for the output error ``error`` ``[K, B, out]`` of a
    head of weight ``head_weight`` ``[K, out, width]`` (1: DFA moves the layer as
    backpropagation would; about 0: unrelated directions)."""
    with torch.enable_grad():
        h = trunk.prepare(obs)
        outputs = []
        for layer in trunk.layers:
            h = trunk.run_layer(layer, h)
            outputs.append(h)
        features = h.flatten(2) if h.dim() > 3 else h
        weights = [layer.weight for layer in trunk.layers]
        backprop = torch.autograd.grad(features, weights, torch.bmm(error, head_weight),
                                       retain_graph=True)
        aligned = []
        for b, h_l, w, g in zip(trunk.feedback, outputs, weights, backprop, strict=True):
            # the gradient of h_l with respect to its own weight only: the DFA gradient
            (dfa,) = torch.autograd.grad(h_l, w, feedback_signal(b, error).reshape(h_l.shape),
                                         retain_graph=True)
            aligned.append(F.cosine_similarity(dfa.flatten(1), g.flatten(1), dim=1))
    return torch.stack(aligned, dim=1)
