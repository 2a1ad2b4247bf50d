"""Learners: the one axis on which compared agents differ (DESIGN §2).

An algorithm asks its learner for the features of a training batch and trains its
heads on them with the RL loss, through an optimizer over the heads' parameters plus
``learner.rl_parameters()``. It never asks which learner it has:

- ``bp``: features keep their graph, so the RL loss trains the trunk by backpropagation;
- ``lpdm`` / ``lpdm-guided``: computing the features runs the local update (plain or
  reward-guided distance matching) and returns them detached;
- ``frozen``: random, never-trained features, the control for whether trunk learning matters;
- ``linear``: no trunk at all, the heads read the observation: the control for whether any
  hidden layer helps (a trunk that merely re-embeds its input isometrically gives little
  more than this).

Under ``--target-obs raw`` the local targets are built from the observations before
normalisation: algorithms pass them as ``target_rows`` beside the trunk's input.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from lpdm.config import LocalConfig
from lpdm.local import LayerDiagnostics, LocalTrunkTrainer, observe_trunk
from lpdm.networks import Trunk


class Learner(ABC):
    """Decides how ``trunk`` is trained. ``features`` maps ``[B, in_dim] -> [B, width]``."""

    name: str = ""

    def __init__(self, trunk: Trunk, cfg: LocalConfig, lr: float) -> None:
        self.trunk = trunk
        self.cfg = cfg
        self.lr = lr
        self.diagnostics: list[LayerDiagnostics] = []
        self._diagnose = False

    def request_diagnostics(self) -> None:
        """Measure per-layer diagnostics on the next block of features (if enabled)."""
        self._diagnose = self.cfg.diagnostics

    def _take_diagnostics_request(self) -> bool:
        requested, self._diagnose = self._diagnose, False
        return requested

    @abstractmethod
    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None) -> Tensor:
        """Features ``[B, width]`` of a training batch ``obs`` ``[B, in_dim]``.

        ``performance`` ``[B]`` guides ``lpdm-guided``; ``target_rows`` ``[B, *]`` are the
        rows the local targets are built from (default ``obs``).
        """

    def rl_parameters(self) -> list[nn.Parameter]:
        """Trunk parameters that the RL loss trains (none, except under ``bp``)."""
        return []

    def set_lr_scale(self, fraction: float) -> None:  # noqa: B027 - no own optimizers by default
        """Scale the learning rate of the trunk's own optimizers (learning-rate annealing)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state

    def _chunks(self, n: int) -> list[Tensor]:
        """Random, nearly equal index blocks of at most ``distance_batch`` rows."""
        count = -(-n // self.cfg.distance_batch)
        if count == 1:
            return [torch.arange(n)]
        return list(torch.randperm(n).tensor_split(count))

    def _observe(self, obs: Tensor, target_rows: Tensor | None) -> None:
        """Diagnostics for learners whose trunk is not trained locally (one block)."""
        if not self._take_diagnostics_request() or not self.trunk.layers:
            return
        rows = slice(0, self.cfg.distance_batch)
        self.diagnostics = observe_trunk(self.trunk, obs[rows], self.cfg,
                                         None if target_rows is None else target_rows[rows])


class BackpropLearner(Learner):
    name = "bp"

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None) -> Tensor:
        features = self.trunk(obs)
        self._observe(obs, target_rows)
        return features

    def rl_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())


class FrozenLearner(Learner):
    """``frozen`` (random features), and ``linear`` (no hidden layer: the trunk is the identity)."""

    def __init__(self, trunk: Trunk, cfg: LocalConfig, lr: float, name: str = "frozen"
                 ) -> None:
        super().__init__(trunk, cfg, lr)
        self.name = name

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            features = self.trunk(obs)
        self._observe(obs, target_rows)
        return features


class LocalLearner(Learner):
    """``lpdm`` (unsupervised distance matching) or ``lpdm-guided`` (reward-guided)."""

    def __init__(self, trunk: Trunk, cfg: LocalConfig, lr: float, guided: bool) -> None:
        super().__init__(trunk, cfg, lr)
        self.name = "lpdm-guided" if guided else "lpdm"
        self.guided = guided
        self.trainer = LocalTrunkTrainer(trunk, cfg, lr, guided)

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None) -> Tensor:
        if self.guided and performance is None:
            raise ValueError("lpdm-guided needs a performance value per sample")
        blocks = self._chunks(obs.shape[0])
        if len(blocks) == 1:  # the batch in order is the one block: nothing to gather
            h, report = self.trainer.update(obs, performance, self._take_diagnostics_request(),
                                            target_rows)
            if report:
                self.diagnostics = report
            return h
        out = torch.empty(obs.shape[0], self.trunk.out_dim, dtype=obs.dtype, device=obs.device)
        for index in blocks:
            index = index.to(obs.device)
            block_performance = None if performance is None else performance[index]
            block_rows = None if target_rows is None else target_rows[index]
            h, report = self.trainer.update(obs[index], block_performance,
                                            self._take_diagnostics_request(), block_rows)
            out[index] = h
            if report:
                self.diagnostics = report
        return out

    def set_lr_scale(self, fraction: float) -> None:
        self.trainer.set_lr_scale(fraction)

    def state_dict(self) -> dict:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state)


def make_learner(name: str, trunk: Trunk, cfg: LocalConfig, lr: float) -> Learner:
    """The learner called ``name`` for ``trunk``; ``lr`` is the trunk's learning rate."""
    if name == "bp":
        return BackpropLearner(trunk, cfg, lr)
    if name in ("frozen", "linear"):
        return FrozenLearner(trunk, cfg, lr, name)
    if name in ("lpdm", "lpdm-guided"):
        return LocalLearner(trunk, cfg, lr, guided=name == "lpdm-guided")
    raise ValueError(f"unknown learner {name!r}")
