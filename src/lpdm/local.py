"""The local update of a trunk: every hidden layer learns from its own distance-matching loss.

Layer ``l`` sees its input detached, computes ``Y_l = tanh(W_l h_{l-1} + b_l)`` and is
stepped by Adam on its own ``||target - D(Y_l)||_F``; the next layer receives ``Y_l``
detached, as computed before the step. No gradient crosses a layer boundary.

Everything is batched over the members of a population: a block is ``[K, N, in]`` (one
distance matrix per member), losses are ``[K]``, and each member's Adam steps only on its
own loss. Rows may be padding (``valid`` ``[K, N]``): pairs with a padded row take no part
in targets, losses or gradients, and a member with no real row in a block (``active``)
is not stepped at all.

For l1 distances with a constant scaling (``dim``, the default; ``none``; ``cross``), each
layer's gradient is computed in closed form, without autograd: ``dL/dD`` of the Frobenius
norm, the l1 kernel's backward (:func:`lpdm.kernels.pairwise_l1_backward`), ``tanh``'s
derivative and the products of an affine layer, in the order autograd computes them.
Dense matching gives bit for bit the weights of backpropagation; sparse matching the
same up to float rounding. Nothing is kept from one layer to the next, so memory stays
flat with depth, and autograd's per-operation cost is gone.

Other metrics and scalings backpropagate, in one of two modes that give identical weights:

- ``fused``: every layer's loss is computed with the pre-update weights, then one
  backward pass over their sum and one optimizer step. Because inputs are detached,
  each layer's gradient is exactly that of its own loss, and Adam is elementwise, so
  this equals stepping layer by layer.
- ``streaming``: layer by layer, each loss backpropagated and its graph freed before
  the next layer runs, so memory stays flat with depth.

With ``target = "global"`` a layer's target (and the sparse mask) depends only on the
batch (and, under ``cross``, on the layer's width), so it is computed once per update and
shared by the layers (:class:`LayerTargets`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from lpdm.config import GUIDANCE_STRENGTH, LocalConfig, check_target_options
from lpdm.distances import (
    apply_scale,
    distance_entropy,
    distance_matching_loss,
    guided_target,
    off_diagonal_correlation,
    output_distances,
    output_scale_divisor,
    pair_mask,
    quantile_mask,
    raw_pairwise_distances,
    target_distances,
)
from lpdm.kernels import kernel_applies, l1_layer_loss, pairwise_l1, pairwise_l1_backward
from lpdm.networks import (
    Generators,
    Trunk,
    TrunkSpec,
    member_permutations,
    seeded_generators,
)
from lpdm.optim import MemberAdam

SATURATION_THRESHOLD = 0.99


@dataclass
class LayerDiagnostics:
    """Per-layer health of one update of one member: is the layer collapsing or saturating?"""

    local_loss: float
    distance_corr: float
    saturation: float
    distance_entropy: float
    # norm of the gradient reaching the layer's weights: the local loss's under the local
    # learners, the RL loss's under bp (before clipping), NaN where none reaches it
    grad_norm: float = float("nan")
    # dfa: cosine between the layer's DFA weight gradient and backpropagation's (a column of
    # metrics.csv only for the learners that list it in ``extra_diagnostics``)
    bp_alignment: float = float("nan")


# Per member (None for a member that had no data), the diagnostics of each layer.
MemberDiagnostics = list[list[LayerDiagnostics] | None]


@dataclass
class LayerTarget:
    """What one layer is asked to match, per member."""

    distances: Tensor  # [K, N, N], scaled, guided when the learner is
    mask: Tensor | None  # [K, N, N] bool pairs to match (sparse, or real rows), None: all
    width: int  # of the rows the distances were computed from (``cross`` divides by it)


# How a learner reshapes a layer's target: ``(distances [K, N, N], layer index, width of
# the target's rows) -> target [K, N, N]``, applied after the target's scaling, before the
# sparse mask (lpdm-metric's value and bisimulation targets).
TargetShaping = Callable[[Tensor, int, int], Tensor]


class LayerTargets:
    """The targets of one block's layers: ``targets(layer_input, out_width, layer)``.

    With the global target every layer matches the distances of ``global_rows`` (the
    network input, or the raw observation under ``target_obs = "raw"``); they are computed
    once per block (once per output width under ``cross``, whose target depends on it).
    With the local target a layer matches the distances of its own input. ``performance``
    guides the target (``lpdm-guided``); ``shaping`` reshapes each layer's own
    (:data:`TargetShaping`).
    """

    def __init__(self, cfg: LocalConfig, global_rows: Tensor,
                 performance: Tensor | None = None, valid: Tensor | None = None,
                 guidance_strength: float = GUIDANCE_STRENGTH,
                 shaping: TargetShaping | None = None) -> None:
        self.cfg = cfg
        self.guidance_strength = guidance_strength
        self.global_rows = global_rows.detach()
        self.performance = performance
        self.valid = valid
        self.shaping = shaping
        self._global: dict[int | None, LayerTarget] = {}
        self._global_raw: Tensor | None = None

    def __call__(self, layer_input: Tensor, out_width: int, layer: int = 0) -> LayerTarget:
        if self.cfg.target != "global":
            return self._make(layer_input.detach(), out_width, layer)
        key = out_width if self.cfg.scale == "cross" else None
        if self.shaping is not None:  # shaped per layer: only the scaled distances are shared
            if key not in self._global:
                self._global[key] = self._make(self.global_rows, out_width, None)
            base = self._global[key]
            return self._finish(base.distances, self.global_rows, layer)
        if key not in self._global:
            self._global[key] = self._make(self.global_rows, out_width, layer)
        return self._global[key]

    def _make(self, rows: Tensor, out_width: int, layer: int | None) -> LayerTarget:
        """The target of ``layer`` from ``rows``; ``layer = None``: its scaled distances only,
        before any shaping (no mask)."""
        cfg, valid = self.cfg, self.valid
        with torch.no_grad():
            if cfg.scale == "cross" and rows is self.global_rows:
                if self._global_raw is None:
                    self._global_raw = raw_pairwise_distances(rows, cfg.metric)
                distances = self._global_raw / out_width
            else:
                distances = target_distances(rows, cfg.metric, cfg.scale, out_width, valid)
            if cfg.target_mean is not None:
                distances = apply_scale(distances, cfg.metric, "mean", 0, valid) * cfg.target_mean
            elif cfg.target_scale != 1.0:
                distances = distances * cfg.target_scale
        if layer is None:
            return LayerTarget(distances, None, rows.shape[-1])
        return self._finish(distances, rows, layer)

    def _finish(self, distances: Tensor, rows: Tensor, layer: int) -> LayerTarget:
        """Guidance or shaping, then the pairs to match."""
        cfg, valid = self.cfg, self.valid
        with torch.no_grad():
            if self.shaping is not None:
                distances = self.shaping(distances, layer, rows.shape[-1])
            elif self.performance is not None:
                distances = guided_target(distances, self.performance, self.guidance_strength,
                                          valid)
            if cfg.sparse:
                mask = quantile_mask(distances, cfg.quantile_low, cfg.quantile_high, valid)
            else:
                mask = None if valid is None else pair_mask(valid, rows.shape[-2], rows.device)
        return LayerTarget(distances, mask, rows.shape[-1])


def layer_diagnostics(target: LayerTarget, y: Tensor, losses: Tensor | None,
                      cfg: LocalConfig, d_y: Tensor | None = None,
                      valid: Tensor | None = None) -> list[LayerDiagnostics]:
    """Diagnostics ``[K]`` of a layer output ``y`` ``[K, N, d]`` against its target.

    ``losses`` ``[K]`` and ``d_y`` (the scaled distances of ``y``) when already computed.
    """
    with torch.no_grad():
        if d_y is None:
            d_y = output_distances(raw_pairwise_distances(y.detach(), cfg.metric), cfg.metric,
                                   cfg.scale, y.shape[-1], target.width, valid)
        if losses is None:
            diff = target.distances - d_y
            losses = torch.linalg.vector_norm(diff if target.mask is None else diff * target.mask,
                                              dim=(-2, -1))
        report = []
        for k in range(y.shape[0]):
            rows = slice(None) if valid is None else valid[k]
            member_valid = None if valid is None else valid[k]
            report.append(LayerDiagnostics(
                local_loss=float(losses[k]),
                distance_corr=off_diagonal_correlation(target.distances[k], d_y[k], member_valid),
                saturation=float((y[k][rows].abs() > SATURATION_THRESHOLD).float().mean()),
                distance_entropy=distance_entropy(d_y[k], member_valid)))
        return report


def record_gradient_norms(report: list[LayerDiagnostics | None], layer: torch.nn.Module
                          ) -> None:
    """Set each member's ``grad_norm`` from the gradient now held by ``layer``'s weight
    (members without diagnostics, None, are skipped)."""
    grad = layer.weight.grad
    if grad is None:
        return
    norms = torch.linalg.vector_norm(grad.reshape(grad.shape[0], -1), dim=1).tolist()
    for diagnostics, norm in zip(report, norms, strict=True):
        if diagnostics is not None:
            diagnostics.grad_norm = float(norm)


def _per_layer_to_per_member(layers: list[list[LayerDiagnostics]], members: int,
                             active: Tensor | None) -> MemberDiagnostics:
    return [None if active is not None and not bool(active[k])
            else [layer[k] for layer in layers] for k in range(members)]


def distance_rows(y: Tensor, cfg: LocalConfig) -> Tensor:
    """The rows a layer output ``y`` is compared by: ``[K, N, d]`` as it is; a convolution's
    ``[K, N, C, H, W]`` flattened (``conv_distance = "flat"``: the l1 distance of the whole
    feature maps, scaled by their size) or averaged over positions (``"pooled"``: distances
    of the per-channel means, blind to where a feature is)."""
    if y.dim() <= 3:
        return y
    return y.mean(dim=(-2, -1)) if cfg.conv_distance == "pooled" else y.flatten(2)


def observe_trunk(trunk: Trunk, x: Tensor, cfg: LocalConfig, target_rows: Tensor | None = None,
                  valid: Tensor | None = None) -> MemberDiagnostics:
    """Per-member, per-layer diagnostics of a trunk that does not learn locally, on ``x``
    ``[K, N, *in_shape]``."""
    with torch.no_grad():
        h = trunk.prepare(x)
        rows = trunk.prepare(target_rows).flatten(2) if target_rows is not None else h.flatten(2)
        targets = LayerTargets(cfg, rows, valid=valid)
        layers = []
        for index, layer in enumerate(trunk.layers):
            y = trunk.run_layer(layer, h)
            out = distance_rows(y, cfg)
            target = targets(distance_rows(h, cfg), out.shape[-1], index)
            layers.append(layer_diagnostics(target, out, None, cfg, valid=valid))
            h = y
    return _per_layer_to_per_member(layers, x.shape[0], None)


class BlockRows(NamedTuple):
    """Per-sample tensors ``[K, N, ...]`` that travel with the observations into blocks."""

    performance: Tensor | None = None  # [K, N] (guided targets, value targets)
    target_rows: Tensor | None = None  # [K, N, *] the global target's rows (default: obs)
    rewards: Tensor | None = None  # [K, N] (bisimulation targets)
    next_obs: Tensor | None = None  # [K, N, *in_shape] (bisimulation targets)


def closed_form_gradients(cfg: LocalConfig, conv: bool = False) -> bool:
    """Whether the local update computes its gradients in closed form (dense layers, l1 with
    a constant scaling: ``dim``, ``none`` or ``cross``)."""
    return not conv and cfg.metric == "l1" and cfg.scale in ("dim", "none", "cross")


class LocalTrunk(Trunk):
    """A trunk of tanh layers that learns locally, by distance matching, with its own Adam.

    ``trunk.learn(x, performance=None)`` runs the local update (docs/design.md §1) on the batch
    ``x`` and returns the trunk's output computed before the update, detached: hand it to
    your heads, whose loss can then never reach the trunk. ``trunk(x)`` computes features
    without learning (rollouts, evaluation), also detached. ``x`` is ``[N, in_dim]`` for
    one agent or ``[K, N, in_dim]`` for a population of ``K`` members (``seeds``); the
    output has the same leading shape and ``width = hidden_sizes[-1]`` features.

    Options are those of :class:`lpdm.config.LocalConfig` (``metric``, ``scale``,
    ``target``, ``sparse``, ``distance_batch``, …), given as keyword arguments or as
    ``config``; ``guided=True`` makes it ``lpdm-guided`` (at ``guidance_strength``), whose
    ``learn`` needs a performance value per sample (returns, advantages). One Adam over all layers:
    Adam is elementwise, so this is exactly one Adam per layer (each steps only on its own
    gradient) and, with a step count per member, one per member. ``state_dict`` holds the
    optimizer's state too, so a saved trunk resumes exactly.

    A batch of at most ``distance_batch`` rows is one block. A longer one is split per
    member: its real rows (``valid``) into random, nearly equal blocks of at most
    ``distance_batch`` rows, each one local step; the blocks run in rounds, each padded to
    ``distance_batch`` rows, so that a member's arithmetic never depends on its co-members.
    """

    def __init__(self, in_dim: int | Sequence[int], hidden_sizes: Sequence[int] = (128, 256),
                 *, lr: float = 1e-3, guided: bool = False,
                 guidance_strength: float = GUIDANCE_STRENGTH, seeds: Sequence[int] = (0,),
                 conv: Sequence[tuple[int, int, int]] = (), channels_last: bool = True,
                 generators: Generators | None = None, config: LocalConfig | None = None,
                 **options: object) -> None:
        if not hidden_sizes and not conv:
            raise ValueError("a local trunk needs at least one hidden layer")
        generators = list(generators) if generators is not None else seeded_generators(seeds)
        shape = (in_dim,) if isinstance(in_dim, int) else tuple(in_dim)
        super().__init__(TrunkSpec(shape, tuple(hidden_sizes), tuple(conv), channels_last),
                         generators=generators)
        try:
            self.cfg = dataclasses.replace(config or LocalConfig(), **options)
        except TypeError as error:
            raise ValueError(f"unknown local trunk option: {error}") from None
        check_target_options(self.cfg)
        self.in_shape = shape
        self.members = len(generators)
        self.generators = generators
        self.guided = guided
        self.guidance_strength = guidance_strength
        self.optimizer = MemberAdam([{"params": list(self.parameters()), "lr": lr}])
        self.closed_form = closed_form_gradients(self.cfg, bool(conv))
        self.diagnostics: MemberDiagnostics = []  # of the last learn(..., diagnostics=True)
        self.diverged: dict[int, int] = {}  # member -> first layer whose loss was not finite

    # ----------------------------------------------------------------- public

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """Features of ``x`` without learning, detached."""
        batch, single = self._as_population(x)
        out = super().forward(batch)
        return out[0] if single else out

    def learn(self, x: Tensor, performance: Tensor | None = None,
              target_rows: Tensor | None = None, valid: Tensor | None = None,
              diagnostics: bool = False, *, rewards: Tensor | None = None,
              next_obs: Tensor | None = None) -> Tensor:
        """One local step per block of ``x``; returns the pre-update features, detached.

        ``performance`` ``[N]`` (``[K, N]``) guides a guided trunk; ``target_rows`` are the
        rows the global target is built from (default ``x``); ``valid`` marks the real
        rows (default all); ``diagnostics`` measures per-layer diagnostics on the first
        block (:attr:`diagnostics`). ``rewards`` and ``next_obs`` (each sample's reward and
        next observation) are for trunks whose targets use them
        (:class:`lpdm.metric.MetricTrunk`).
        """
        if self.guided and performance is None:
            raise ValueError("a guided local trunk learns from a performance value per "
                             "sample: learn(x, performance)")
        obs, single = self._as_population(x)
        rows = BlockRows(performance, target_rows, rewards, next_obs)
        if single:
            rows = BlockRows(*(None if t is None else t.unsqueeze(0) for t in rows))
            valid = None if valid is None else valid.unsqueeze(0)
        out = self._learn(obs, rows, valid, diagnostics)
        return out[0] if single else out

    def set_lr_fraction(self, fraction: Tensor | float) -> None:
        """Scale the learning rate of member ``k`` by ``fraction[k]`` (or all by a number)."""
        self.optimizer.set_lr_fraction(fraction)

    def take_divergences(self) -> dict[int, int]:
        """Members whose local loss was not finite since the last call -> first such layer."""
        diverged, self.diverged = self.diverged, {}
        return diverged

    def get_extra_state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "generators": torch.stack([g.get_state() for g in self.generators])}

    def set_extra_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        for generator, saved in zip(self.generators, state["generators"], strict=True):
            generator.set_state(saved.clone())

    # ----------------------------------------------------------------- blocks

    def _as_population(self, x: Tensor) -> tuple[Tensor, bool]:
        rank = len(self.in_shape)
        shape = ", ".join(map(str, self.in_shape))
        if x.dim() == rank + 1 and self.members == 1:
            batch, single = x.unsqueeze(0), True
        elif x.dim() == rank + 2 and x.shape[0] == self.members:
            batch, single = x, False
        else:
            raise ValueError(f"a local trunk of {self.members} member(s) takes [N, {shape}] "
                             f"(one member) or [{self.members}, N, {shape}] batches, got "
                             f"{list(x.shape)}")
        if tuple(batch.shape[2:]) != self.in_shape:
            what = "width" if rank == 1 else "shape"
            raise ValueError(f"this local trunk takes inputs of {what} {shape}, got "
                             f"{', '.join(map(str, batch.shape[2:]))}")
        return batch, single

    def _learn(self, obs: Tensor, per_row: BlockRows, valid: Tensor | None,
               diagnostics: bool) -> Tensor:
        members, rows = obs.shape[0], obs.shape[1]
        counts = torch.full((members,), rows) if valid is None else valid.sum(1).cpu()
        if rows <= self.cfg.distance_batch:  # one block each: no gathering
            return self._step(obs, per_row, valid, counts > 0, diagnostics)
        out = torch.zeros(members, rows, self.out_dim, dtype=obs.dtype, device=obs.device)
        for index, block_valid in self._rounds(counts, valid):
            active = block_valid.any(1).cpu()
            index = index.to(obs.device)
            block_valid = block_valid.to(obs.device)

            def gather(x: Tensor | None, index: Tensor = index) -> Tensor | None:
                if x is None:
                    return None
                return x.gather(1, index.reshape(*index.shape, *([1] * (x.dim() - 2)))
                                .expand(-1, -1, *x.shape[2:]))

            h = self._step(gather(obs), BlockRows(*map(gather, per_row)), block_valid, active,
                           diagnostics)
            diagnostics = False  # on the first block only
            # scatter the real rows back (padding rows point at row 0 and add zeros)
            h = h * block_valid.unsqueeze(-1)
            out.scatter_add_(1, index.unsqueeze(-1).expand_as(h), h)
        return out

    def _rounds(self, counts: Tensor, valid: Tensor | None) -> list[tuple[Tensor, Tensor]]:
        """Rounds of blocks: ``(index [K, N], valid [K, N])`` each, padded with row 0."""
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
            index = torch.zeros(len(blocks), n, dtype=torch.long)
            block_valid = torch.zeros(len(blocks), n, dtype=torch.bool)
            for k, member_blocks in enumerate(blocks):
                if len(member_blocks) > r:
                    piece = member_blocks[r]
                    index[k, :len(piece)] = piece
                    block_valid[k, :len(piece)] = True
            rounds.append((index, block_valid))
        return rounds

    def _step(self, x: Tensor, per_row: BlockRows, valid: Tensor | None, active: Tensor,
              diagnostics: bool) -> Tensor:
        """One local step of every layer on the block ``x`` ``[K, N, in_dim]``, for the
        ``active`` members; returns the pre-update output ``[K, N, width]``."""
        h = self.prepare(x.detach())
        target_rows = per_row.target_rows
        rows = h.flatten(2) if target_rows is None else self.prepare(target_rows).flatten(2)
        targets = LayerTargets(self.cfg, rows, per_row.performance if self.guided else None,
                               valid, self.guidance_strength, self._shaping(per_row, valid))
        if self.closed_form:
            h, layers = self._update_closed_form(h, targets, diagnostics, valid)
        else:
            h, layers = self._update_autograd(h, targets, diagnostics, valid)
        self.optimizer.step(active)
        self._after_step(active)
        if diagnostics:
            self.diagnostics = _per_layer_to_per_member(layers, x.shape[0], active)
        return h.flatten(2) if h.dim() > 3 else h

    def _shaping(self, per_row: BlockRows, valid: Tensor | None) -> TargetShaping | None:
        """How this trunk reshapes its layers' targets on a block (none: distance
        preserving, or guided)."""
        return None

    def _after_step(self, active: Tensor) -> None:
        """After the optimizer stepped the ``active`` members (``[K]`` bool) on a block."""

    def _update_closed_form(self, h: Tensor, targets: LayerTargets, diagnostics: bool,
                            valid: Tensor | None) -> tuple[Tensor, list]:
        """Each layer's gradient by hand: ``L = ||T - D(y)||``, ``y = tanh(W h + b)``.

        Where the C kernel applies (CPU float32), the loss and ``dL/dy`` of a block without
        diagnostics come from one kernel call (:func:`lpdm.kernels.l1_layer_loss`), equal to
        backpropagation up to float rounding; otherwise (and for diagnostics, which need
        the distances) from the distances in torch, bit for bit backpropagation.
        """
        cfg = self.cfg
        layers = []
        with torch.no_grad():
            for index, layer in enumerate(self.layers):
                target = targets(h, layer.out_features, index)
                y = torch.tanh(layer(h))
                divisor = output_scale_divisor(cfg.metric, cfg.scale, y.shape[-1], target.width)
                if not diagnostics and kernel_applies(y):
                    losses, grad_y = l1_layer_loss(y, target.distances, target.mask, divisor)
                    self._check(losses, layer)
                else:
                    raw = pairwise_l1(y)
                    d_y = raw if divisor == 1.0 else raw / divisor
                    diff = target.distances - d_y
                    if target.mask is not None:
                        diff = diff * target.mask
                    losses = torch.linalg.vector_norm(diff, dim=(-2, -1))  # [K]
                    self._check(losses, layer)
                    # dL/d(raw distances), in the order autograd computes it: the norm's
                    # gradient diff / L (zero at L = 0), negated, divided by the scaling.
                    per_member = losses[:, None, None]
                    grad_distances = -(diff / per_member).masked_fill_(per_member == 0, 0.0)
                    if divisor != 1.0:
                        grad_distances = grad_distances / divisor
                    grad_y = pairwise_l1_backward(y, grad_distances)
                grad_pre = torch.ops.aten.tanh_backward(grad_y, y)
                # (h^T g)^T, as autograd computes the gradient of baddbmm's transposed weight
                layer.weight.grad = h.transpose(1, 2).bmm(grad_pre).transpose(1, 2)
                layer.bias.grad = grad_pre.sum(1)
                if diagnostics:
                    layers.append(layer_diagnostics(target, y, losses, cfg, d_y, valid))
                    record_gradient_norms(layers[-1], layer)
                h = y
        return h, layers

    def _update_autograd(self, h: Tensor, targets: LayerTargets, diagnostics: bool,
                         valid: Tensor | None) -> tuple[Tensor, list]:
        cfg = self.cfg
        streaming = cfg.update_mode == "streaming"
        total: list[Tensor] = []
        layers = []
        self.optimizer.zero_grad()
        for index, layer in enumerate(self.layers):
            y = self.run_layer(layer, h)
            out = distance_rows(y, cfg)
            target = targets(distance_rows(h, cfg), out.shape[-1], index)
            losses = distance_matching_loss(target.distances, out, cfg.metric, cfg.scale,
                                            target.mask, target.width, valid)
            self._check(losses, layer)
            if diagnostics:
                layers.append(layer_diagnostics(target, out, losses.detach(), cfg, valid=valid))
            # members and layers have disjoint parameters: the gradient of the sum is
            # each member's layer's gradient of its own loss
            if streaming:
                losses.sum().backward()
            else:
                total.append(losses.sum())
            h = y.detach()
        if not streaming:
            torch.stack(total).sum().backward()
        for report, layer in zip(layers, self.layers, strict=False):
            record_gradient_norms(report, layer)
        return h, layers

    def _check(self, losses: Tensor, layer: torch.nn.Module) -> None:
        """Record the members whose local loss at ``layer`` is not finite."""
        bad = ~torch.isfinite(losses.detach())
        if bool(bad.any()):
            index = list(self.layers).index(layer)
            for k in bad.nonzero().flatten().tolist():
                self.diverged.setdefault(k, index)
