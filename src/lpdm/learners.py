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

from lpdm.config import LocalConfig
from lpdm.local import LocalTrunkTrainer, MemberDiagnostics, observe_trunk
from lpdm.networks import Trunk, member_permutations
from lpdm.optim import MemberAdam


class Learner(ABC):
    """Decides how ``trunk`` is trained. ``features`` maps ``[K, B, in_dim] -> [K, B, width]``.

    ``generators``: one per member, for the random blocks of the local update.
    """

    name: str = ""

    def __init__(self, trunk: Trunk, cfg: LocalConfig, lr: float,
                 generators: Sequence[torch.Generator]) -> None:
        self.trunk = trunk
        self.cfg = cfg
        self.lr = lr
        self.generators = generators
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

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state

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

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        features = self.trunk(obs)
        self._observe(obs, target_rows, valid)
        return features

    def rl_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())


class FrozenLearner(Learner):
    """``frozen`` (random features), and ``linear`` (no hidden layer: the trunk is the identity)."""

    def __init__(self, trunk: Trunk, cfg: LocalConfig, lr: float,
                 generators: Sequence[torch.Generator], name: str = "frozen") -> None:
        super().__init__(trunk, cfg, lr, generators)
        self.name = name

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            features = self.trunk(obs)
        self._observe(obs, target_rows, valid)
        return features


class LocalLearner(Learner):
    """``lpdm`` (unsupervised distance matching) or ``lpdm-guided`` (reward-guided).

    A batch of at most ``distance_batch`` rows is one block, used as it is (its padding
    masked). A longer batch is split per member: its real rows into random, nearly equal
    blocks of at most ``distance_batch`` rows, each one local step of that member. Members
    with more blocks take more steps: the blocks are run in rounds, round ``r`` holding
    every member's ``r``-th block, each padded to ``distance_batch`` rows so that a
    member's arithmetic never depends on its co-members.
    """

    def __init__(self, trunk: Trunk, cfg: LocalConfig, lr: float,
                 generators: Sequence[torch.Generator], guided: bool) -> None:
        super().__init__(trunk, cfg, lr, generators)
        self.name = "lpdm-guided" if guided else "lpdm"
        self.guided = guided
        self.trainer = LocalTrunkTrainer(trunk, cfg, lr, guided)

    def features(self, obs: Tensor, performance: Tensor | None = None,
                 target_rows: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        if self.guided and performance is None:
            raise ValueError("lpdm-guided needs a performance value per sample")
        members, rows = obs.shape[0], obs.shape[1]
        counts = (torch.full((members,), rows) if valid is None
                  else valid.sum(1).cpu())
        if rows <= self.cfg.distance_batch:  # one block each: no gathering
            h, report = self.trainer.update(obs, performance, self._take_diagnostics_request(),
                                            target_rows, valid, counts > 0)
            self._keep(report)
            return h
        out = torch.zeros(members, rows, self.trunk.out_dim, dtype=obs.dtype, device=obs.device)
        for index, block_valid in self._rounds(counts, valid):
            active = block_valid.any(1).cpu()
            index = index.to(obs.device)
            block_valid = block_valid.to(obs.device)

            def gather(x: Tensor | None, index: Tensor = index) -> Tensor | None:
                if x is None:
                    return None
                return x.gather(1, index.reshape(*index.shape, *([1] * (x.dim() - 2)))
                                .expand(-1, -1, *x.shape[2:]))

            h, report = self.trainer.update(gather(obs), gather(performance),
                                            self._take_diagnostics_request(),
                                            gather(target_rows), block_valid, active)
            self._keep(report)
            # scatter the real rows back (padding rows point at row 0 and are dropped)
            h = h * block_valid.unsqueeze(-1)
            out.scatter_add_(1, index.unsqueeze(-1).expand_as(h), h)
        return out

    def _keep(self, report: MemberDiagnostics) -> None:
        if report:
            self.diagnostics = report

    def _rounds(self, counts: Tensor, valid: Tensor | None) -> list[tuple[Tensor, Tensor]]:
        """Rounds of blocks: ``(index [K, S], valid [K, S])`` each, padded with row 0."""
        n = self.cfg.distance_batch
        blocks: list[list[Tensor]] = []
        for k, count in enumerate(counts.tolist()):
            real = (torch.arange(int(count)) if valid is None
                    else valid[k].nonzero().squeeze(1).cpu())
            pieces = -(-int(count) // n)
            if pieces <= 1:
                blocks.append([real] if count else [])
                continue
            order = member_permutations([self.generators[k]], int(count))[0]
            blocks.append(list(real[order].tensor_split(pieces)))
        rounds = []
        for r in range(max(len(b) for b in blocks)):
            size = n  # not the largest block of the round: that depends on the co-members
            index = torch.zeros(len(blocks), size, dtype=torch.long)
            block_valid = torch.zeros(len(blocks), size, dtype=torch.bool)
            for k, member_blocks in enumerate(blocks):
                if len(member_blocks) > r:
                    piece = member_blocks[r]
                    index[k, :len(piece)] = piece
                    block_valid[k, :len(piece)] = True
            rounds.append((index, block_valid))
        return rounds

    def set_lr_scale(self, fraction: Tensor) -> None:
        self.trainer.set_lr_scale(fraction)

    def optimizers(self) -> list[MemberAdam]:
        return [self.trainer.optimizer]

    def take_divergences(self) -> dict[int, int]:
        diverged, self.trainer.diverged = self.trainer.diverged, {}
        return diverged

    def state_dict(self) -> dict:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state)


def make_learner(name: str, trunk: Trunk, cfg: LocalConfig, lr: float,
                 generators: Sequence[torch.Generator]) -> Learner:
    """The learner called ``name`` for ``trunk``; ``lr`` is the trunk's learning rate."""
    if name == "bp":
        return BackpropLearner(trunk, cfg, lr, generators)
    if name in ("frozen", "linear"):
        return FrozenLearner(trunk, cfg, lr, generators, name)
    if name in ("lpdm", "lpdm-guided"):
        return LocalLearner(trunk, cfg, lr, generators, guided=name == "lpdm-guided")
    raise ValueError(f"unknown learner {name!r}")
