"""Learners: the one axis on which compared agents differ (DESIGN §2).

An algorithm asks its learner for the features of a training batch and trains its
heads on them with the RL loss, through an optimizer over the heads' parameters plus
``learner.rl_parameters()``. It never asks which learner it has:

- ``bp``: features keep their graph, so the RL loss trains the trunk by backpropagation;
- ``lpdm`` / ``lpdm-guided``: the trunk is a :class:`~lpdm.local.LocalTrunk`; computing the
  features runs its local update (plain or reward-guided distance matching) and returns
  them detached;
- ``frozen``: random, never-trained features, the control for whether trunk learning matters;
- ``linear``: no trunk at all, the heads read the observation: the control for whether any
  hidden layer helps (a trunk that merely re-embeds its input isometrically gives little
  more than this).

Batches are a population's: ``[K, B, ...]``, with ``valid`` ``[K, B]`` marking real rows
where members have different amounts of data. Under ``--target-obs raw`` the local targets
are built from the observations before normalisation: algorithms pass them as
``target_rows`` beside the trunk's input.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lpdm.config import LOCAL_LEARNERS, LocalConfig
from lpdm.local import LocalTrunk, MemberDiagnostics, observe_trunk, record_gradient_norms
from lpdm.networks import Generators, Trunk, TrunkSpec
from lpdm.optim import MemberAdam


class Learner(ABC):
    """Decides how ``trunk`` is trained. ``features`` maps ``[K, B, in_dim] -> [K, B, width]``."""

    name: str = ""

    def __init__(self, trunk: Trunk, cfg: LocalConfig) -> None:
        self.trunk = trunk
        self.cfg = cfg
        self.diagnostics: MemberDiagnostics = []
        self._diagnose = False

    def request_diagnostics(self) -> None:
        """Measure per-layer diagnostics on the next block of features (if enabled)."""
        self._diagnose = self.cfg.diagnostics

    def _take_diagnostics_request(self) -> bool:
        requested, self._diagnose = self._diagnose, False
        return requested

    @abstractmethod
    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        """Features ``[K, B, width]`` of a training batch ``obs`` ``[K, B, in_dim]``.

        ``performance`` ``[K, B]`` guides ``lpdm-guided``; ``target_rows`` ``[K, B, *]`` are
        the rows the local targets are built from (default ``obs``); ``valid`` ``[K, B]``
        marks the real rows (default all).
        """

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

    def after_backward(self) -> None:  # noqa: B027 - only bp's trunk gets RL gradients
        """The RL loss was just backpropagated (before clipping)."""

    def _observe(self, obs: Tensor, target_rows: Tensor | None, valid: Tensor | None) -> None:
        """Diagnostics for learners whose trunk is not trained locally (one block)."""
        if not self._take_diagnostics_request() or not self.trunk.layers:
            return
        rows = slice(0, self.cfg.distance_batch)
        self.diagnostics = observe_trunk(
            self.trunk, obs[:, rows], self.cfg,
            None if target_rows is None else target_rows[:, rows],
            None if valid is None else valid[:, rows])


class BackpropLearner(Learner):
    name = "bp"
    _awaiting_gradients = False  # diagnostics were measured; the RL gradients come next

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        features = self.trunk(obs)
        diagnostics = self.diagnostics
        self._observe(obs, target_rows, valid)
        self._awaiting_gradients |= self.diagnostics is not diagnostics
        return features

    def rl_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def after_backward(self) -> None:
        """The gradient norm reaching each layer, for the diagnostics just measured."""
        if not self._awaiting_gradients:
            return
        self._awaiting_gradients = False
        for i, layer in enumerate(self.trunk.layers):
            record_gradient_norms([member[i] if member else None for member in self.diagnostics],
                                  layer)


class FrozenLearner(Learner):
    """``frozen`` (random features), and ``linear`` (no hidden layer: the trunk is the identity)."""

    def __init__(self, trunk: Trunk, cfg: LocalConfig, name: str = "frozen") -> None:
        super().__init__(trunk, cfg)
        self.name = name

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            features = self.trunk(obs)
        self._observe(obs, target_rows, valid)
        return features


class LocalLearner(Learner):
    """``lpdm`` (unsupervised distance matching) or ``lpdm-guided`` (reward-guided): the
    trunk is a :class:`LocalTrunk`, which learns from every batch it is asked features of."""

    trunk: LocalTrunk

    def __init__(self, trunk: LocalTrunk) -> None:
        super().__init__(trunk, trunk.cfg)
        self.name = "lpdm-guided" if trunk.guided else "lpdm"

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        diagnose = self._take_diagnostics_request()
        features = self.trunk.learn(obs, performance, target_rows, valid, diagnose)
        if diagnose:
            self.diagnostics = self.trunk.diagnostics
        return features

    def set_lr_scale(self, fraction: Tensor) -> None:
        self.trunk.set_lr_fraction(fraction)

    def optimizers(self) -> list[MemberAdam]:
        return [self.trunk.optimizer]

    def take_divergences(self) -> dict[int, int]:
        return self.trunk.take_divergences()


def make_learner(name: str, spec: TrunkSpec | int, sizes: Sequence[int] | None, cfg: LocalConfig,
                 lr: float, generators: Generators) -> Learner:
    """The learner called ``name`` with its trunk (``spec``, or a dense trunk of hidden
    ``sizes`` on ``spec`` input features); ``lr`` is the trunk's learning rate (of its local
    optimizer, if it has one)."""
    if isinstance(spec, int):
        spec = TrunkSpec((spec,), tuple(sizes or ()))
    if name in LOCAL_LEARNERS:
        return LocalLearner(LocalTrunk(spec.in_shape, spec.hidden, conv=spec.conv,
                                       channels_last=spec.channels_last, lr=lr,
                                       guided=name == "lpdm-guided", generators=generators,
                                       config=cfg))
    trunk = Trunk(spec, generators=generators)
    if name == "bp":
        return BackpropLearner(trunk, cfg)
    if name in ("frozen", "linear"):
        return FrozenLearner(trunk, cfg, name)
    raise ValueError(f"unknown learner {name!r}")
