"""``dfa``: direct feedback alignment (Nøkland 2016; docs/design.md §2.5).

The heads learn from the RL loss as under every learner. Each hidden layer ``l`` receives
the output error ``e = dL/do`` (the gradient of the RL loss with respect to the output of
the head's output layer, ``[K, B, out]``) through a fixed random matrix ``B_l``:
``δ_l = (B_l e) ⊙ tanh'(a_l)``, ``ΔW_l ∝ −δ_l h_{l−1}ᵀ``, stepped by the trunk's own Adam
at ``--hidden-lr`` (:class:`lpdm.feedback.FeedbackTrunk`). Each layer runs on its detached
input and the features handed to the head are detached, so no gradient crosses a layer and
the RL gradient stops at the head.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lpdm.learners.base import Learner, LearnerContext
from lpdm.learners.spec import LearnerSpec, register

if TYPE_CHECKING:
    from torch import Tensor, nn

    from lpdm.feedback import FeedbackTrunk
    from lpdm.networks import Generators, MemberLinear
    from lpdm.optim import MemberAdam


class DFALearner(Learner):
    """Keeps each layer's output on a training batch, records the error reaching the
    head's output layer when the RL loss is backpropagated, then injects ``B_l e`` at each
    layer and steps the trunk's Adam (:meth:`after_backward`).

    ``learn`` is ignored: the update is made with the RL step, so PPO's ``--local-update``
    placement does not act on it (as on ``bp``). Acting (no grad) keeps nothing.
    """

    trunk: FeedbackTrunk
    name = "dfa"
    extra_diagnostics = ("bp_alignment",)

    def __init__(self, trunk: FeedbackTrunk, context: LearnerContext) -> None:
        super().__init__(trunk, context)
        self.generators = context.generators
        self._outputs: list[Tensor] = []  # each layer's output on the batch, with its graph
        self._features: Tensor | None = None  # the detached features handed to the head
        self._error: Tensor | None = None  # dL/do at the head's output layer, [K, B, out]
        # the batch whose diagnostics were just measured: the update completes them
        self._diagnosed: Tensor | None = None
        self._head_layer: MemberLinear | None = None  # the head's output layer

    @classmethod
    def build(cls, context: LearnerContext) -> DFALearner:
        from lpdm.feedback import FeedbackTrunk

        return cls(FeedbackTrunk(context.trunk, context.generators, context.lr), context)

    def attach_head(self, head: nn.Module,
                    make_head: Callable[[int, Generators], nn.Module]) -> None:
        """Draw the feedback matrices for the head's output width (after the head's and the
        trunk's initialisation) and watch the head's output layer."""
        from lpdm.feedback import output_layer

        layer = self._head_layer = output_layer(head)
        self.trunk.draw_feedback(layer.out_features, self.generators)
        layer.register_forward_hook(self._watch_head)

    def _watch_head(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        """The head read this learner's training features: record the error reaching its
        output when the RL loss is backpropagated."""
        if self._outputs and inputs[0] is self._features and output.requires_grad:
            output.register_hook(self._record_error)

    def _record_error(self, grad: Tensor) -> None:
        error = grad.detach().clone()
        self._error = error if self._error is None else self._error + error

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None, valid: Tensor | None = None,
                 learn: bool = True) -> Tensor:
        import torch

        self._forget()
        if torch.is_grad_enabled():
            features, self._outputs = self.trunk.kept_forward(obs)
            self._features = features
        else:
            features = self.trunk(obs)
        diagnostics = self.diagnostics
        self._observe(obs, target_rows, valid)
        self._diagnosed = obs if self.diagnostics is not diagnostics else None
        return features

    def after_backward(self, stepping: Tensor) -> None:
        """The DFA gradients of the batch whose features were last asked for, then one Adam
        step of the ``stepping`` members (nothing when the head's output got no error)."""
        outputs, error, diagnosed = self._outputs, self._error, self._diagnosed
        self._forget()
        if not outputs or error is None:
            return
        self.trunk.inject(outputs, error)
        if diagnosed is not None:
            self._record_diagnostics(diagnosed, error)
        self.trunk.optimizer.step(stepping)

    def _record_diagnostics(self, obs: Tensor, error: Tensor) -> None:
        """Each layer's gradient norm and alignment with backpropagation, on the batch and
        output error of this step, before the trunk moves."""
        from lpdm.feedback import backprop_alignment
        from lpdm.local import record_gradient_norms

        alignment = backprop_alignment(self.trunk, self._head_layer.weight.detach(), obs,
                                       error).tolist()
        for i, layer in enumerate(self.trunk.layers):
            record_gradient_norms([member[i] if member else None
                                   for member in self.diagnostics], layer)
            for member, cosines in zip(self.diagnostics, alignment, strict=True):
                if member:
                    member[i].bp_alignment = cosines[i]

    def _forget(self) -> None:
        self._outputs, self._features, self._error, self._diagnosed = [], None, None, None

    def set_lr_scale(self, fraction: Tensor) -> None:
        self.trunk.optimizer.set_lr_fraction(fraction)

    def optimizers(self) -> list[MemberAdam]:
        return [self.trunk.optimizer]


SPEC = register(LearnerSpec(
    name="dfa", summary="direct feedback alignment: the head's output error through a fixed "
    "random matrix per layer", build=DFALearner.build, local=True, cost_rank=3,
    color="#d62728"))
