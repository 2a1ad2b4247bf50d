"""What every learner is: the one axis on which compared agents differ (docs/design.md §2).

An algorithm asks its learner for the features of a training batch and trains its
heads on them with the RL loss, through an optimizer over the heads' parameters plus
``learner.rl_parameters()``. It never asks which learner it has.

Batches are a population's: ``[K, B, ...]``, with ``valid`` ``[K, B]`` marking real rows
where members have different amounts of data. Under ``--target-obs raw`` the local targets
are built from the observations before normalisation: algorithms pass them as
``target_rows`` beside the trunk's input.

This module and the learners' own modules import no torch at import time (their specs are
read by ``lpdm --help`` and ``lpdm report``); torch comes with the trunks they build.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lpdm.config import LocalConfig
from lpdm.learners.spec import get_spec

if TYPE_CHECKING:
    from torch import Tensor, nn

    from lpdm.local import MemberDiagnostics
    from lpdm.networks import Generators, Trunk, TrunkSpec
    from lpdm.optim import MemberAdam


# an algorithm's RL loss on one readout: (head, features [K, B, width]) -> (loss [K],
# statistics {name: [K]})
RLLoss = Callable[["nn.Module", "Tensor"], tuple["Tensor", dict[str, "Tensor"]]]


@dataclass
class LearnerContext:
    """What a learner is built from, for one network of an algorithm."""

    trunk: TrunkSpec  # the trunk's architecture
    lr: float  # the trunk's learning rate (of its own optimizer, if it has one)
    generators: Generators  # member k's initialisation and draws come from generators[k]
    local: LocalConfig = field(default_factory=LocalConfig)  # distance matching, diagnostics
    sections: dict[str, Any] = field(default_factory=dict)  # the learner's own sections
    diagnostics: bool = True  # measure per-layer diagnostics when asked


class Learner(ABC):
    """Decides how ``trunk`` is trained. ``features`` maps ``[K, B, in_dim] -> [K, B, width]``."""

    name: str = ""
    # per-layer diagnostics it measures beyond every learner's (LayerDiagnostics fields)
    extra_diagnostics: tuple[str, ...] = ()

    def __init__(self, trunk: Trunk, context: LearnerContext) -> None:
        self.trunk = trunk
        self.cfg = context.local
        self.diagnostics_enabled = context.diagnostics
        self.diagnostics: MemberDiagnostics = []
        self._diagnose = False

    def request_diagnostics(self) -> None:
        """Measure per-layer diagnostics on the next block of features (if enabled)."""
        self._diagnose = self.diagnostics_enabled

    def _take_diagnostics_request(self) -> bool:
        requested, self._diagnose = self._diagnose, False
        return requested

    @abstractmethod
    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None, valid: Tensor | None = None,
                 learn: bool = True) -> Tensor:
        """Features ``[K, B, width]`` of a training batch ``obs`` ``[K, B, in_dim]``.

        ``performance`` ``[K, B]`` guides ``lpdm-guided``; ``target_rows`` ``[K, B, *]`` are
        the rows the local targets are built from (default ``obs``); ``valid`` ``[K, B]``
        marks the real rows (default all); ``learn``: run the local update on the batch
        (local learners; False when it is placed elsewhere, :meth:`learn`).
        """

    def learn(self, obs: Tensor, performance: Tensor | None = None,  # noqa: B027 - optional
              target_rows: Tensor | None = None, valid: Tensor | None = None) -> None:
        """Train the trunk on a batch by its own local update, apart from any RL step (an
        algorithm that places the local update elsewhere than in :meth:`features`, e.g.
        PPO's ``--local-update rollout``); nothing for a learner without one."""

    def rl_parameters(self) -> list[nn.Parameter]:
        """Trunk parameters that the RL loss trains (none, except under ``bp``)."""
        return []

    def set_lr_scale(self, fraction: Tensor) -> None:  # noqa: B027 - no own optimizers by default
        """Scale the learning rate of the trunk's own optimizers per member (``[K]``)."""

    def optimizers(self) -> list[MemberAdam]:
        """The trunk's own optimizers (the local learners')."""
        return []

    def take_divergences(self) -> dict[int, int]:
        """Members whose local loss was not finite since the last call -> the first such
        layer (0-based); none for learners without local losses."""
        return {}

    def attach_head(self, head: nn.Module,  # noqa: B027 - most learners ignore the head
                    make_head: Callable[[int, Generators], nn.Module]) -> None:
        """The network's ``head`` was built for this learner's trunk, by ``make_head(width,
        generators)`` (a head of the algorithm's kind for features of ``width``); learners
        that read the head's error or own more heads keep what they need."""

    def set_transitions(self, rewards: Tensor,  # noqa: B027 - most targets need none
                        next_obs: Tensor) -> None:
        """The batch of the next :meth:`features` or :meth:`learn` call has these rewards
        ``[K, B]`` and next observations ``[K, B, *in_shape]`` (an algorithm whose batches
        are transitions: DQN's replay batch); learners whose targets use them keep them."""

    def weights_loaded(self, members: Tensor) -> None:  # noqa: B027 - most keep no copies
        """The trunk weights of the ``members`` (``[K]`` bool) were put in from outside
        (``--init-trunk``): bring any copy of them the learner keeps up to date."""

    def acting_head(self, head: nn.Module) -> nn.Module:
        """The head the network acts, is evaluated and checkpointed with, reading what the
        trunk returns: ``head`` itself, unless the learner reads out more than the last
        layer (``layerwise``). Asked once, after :meth:`attach_head`."""
        return head

    def acting_copy(self, make_head: Callable[[int, Generators], nn.Module],
                    generators: Generators) -> tuple[nn.Module, nn.Module]:
        """An untrained trunk and acting head of the shapes of this learner's, drawn from
        ``generators`` (throw-away ones: a copy to overwrite, DQN's target network); the
        trunk is a plain :class:`~lpdm.networks.Trunk` (no local optimizer), drawn first."""
        from lpdm.networks import Trunk

        trunk = Trunk(self.trunk.spec, generators=generators)
        return trunk, make_head(trunk.out_dim, generators)

    def rl_loss(self, head: nn.Module, features: Tensor, loss_fn: RLLoss
                ) -> tuple[Tensor, dict[str, Tensor]]:
        """The RL loss ``[K]`` the RL optimizer minimises, and its statistics (``[K]``
        each), from the algorithm's ``loss_fn(head, features)`` on the network's ``head``
        and the ``features`` this learner returned: ``loss_fn(head, features)`` itself,
        except for a learner whose layers read out through heads of their own
        (``layerwise``: the sum over its readouts, the statistics of the acting one)."""
        return loss_fn(head, features)

    def after_backward(self, stepping: Tensor) -> None:  # noqa: B027 - bp's, dfa's trunks
        """The RL loss was just backpropagated (before clipping); the members in
        ``stepping`` (``[K]`` bool) take this RL step, the others must not move."""

    def _observe(self, obs: Tensor, target_rows: Tensor | None, valid: Tensor | None) -> None:
        """Diagnostics for learners whose trunk is not trained locally (one block)."""
        if not self._take_diagnostics_request() or not self.trunk.layers:
            return
        from lpdm.local import observe_trunk

        rows = slice(0, self.cfg.distance_batch)
        self.diagnostics = observe_trunk(
            self.trunk, obs[:, rows], self.cfg,
            None if target_rows is None else target_rows[:, rows],
            None if valid is None else valid[:, rows])


def make_learner(name: str, spec: TrunkSpec | int, sizes: Sequence[int] | None,
                 cfg: LocalConfig, lr: float, generators: Generators,
                 sections: dict[str, Any] | None = None) -> Learner:
    """The learner called ``name`` with its trunk (``spec``, or a dense trunk of hidden
    ``sizes`` on ``spec`` input features); ``lr`` is the trunk's learning rate (of its local
    optimizer, if it has one); ``sections``: the learner's own options (default: theirs)."""
    from lpdm.networks import TrunkSpec

    learner_spec = get_spec(name)
    if isinstance(spec, int):
        spec = TrunkSpec((spec,), tuple(sizes or ()))
    own = {cls.section: cls() for cls in learner_spec.options} | (sections or {})
    return learner_spec.build(LearnerContext(spec, lr, generators, cfg, own))
