"""Every layer read out by a head of its own (the ``layerwise`` learner, docs/design.md §2.6).

:class:`LayerwiseTrunk` returns every layer's output side by side, each layer computed from
its input detached, so that a loss on layer ``l``'s output reaches layer ``l``'s weights and
no other's. :class:`LayerReadout` holds one head per layer, all of the algorithm's kind, and
acts like a single head of that kind on those features: by the last layer's head
(``last``) or by the mean of the layers' predictions (``mean``, as ARQ averages Q values):
mean values and Q values; for a policy the mean logits (a categorical policy) or the mean
means and log-standard-deviations (a Gaussian one), so that the acting distribution stays
in the head's family and samples, log-probabilities and deterministic actions are
computed as any head's.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Normal

from lpdm.networks import Generators, MemberConv2d, Trunk, TrunkSpec, seeded_generators

READOUTS = ("last", "mean")


class LayerwiseTrunk(Trunk):
    """A :class:`Trunk` whose output ``[K, B, out_dim]`` is every layer's flattened output
    side by side (``widths[l]`` features for layer ``l``, ``out_dim = sum(widths)``); each
    layer reads its input detached."""

    def __init__(self, spec: TrunkSpec, generators: Generators = ()) -> None:
        super().__init__(spec, generators=generators)
        shape = self._chw(spec.in_shape) if spec.image else spec.in_shape
        self.widths: list[int] = []
        for layer in self.layers:
            if isinstance(layer, MemberConv2d):
                shape = (layer.out_channels,
                         *((n - layer.kernel) // layer.stride + 1 for n in shape[1:]))
                self.widths.append(math.prod(shape))
            else:
                self.widths.append(layer.out_features)
        self.out_dim = sum(self.widths)

    def forward(self, x: Tensor) -> Tensor:
        h = self.prepare(x)
        outputs = []
        for layer in self.layers:
            h = self.run_layer(layer, h.detach())
            outputs.append(h.flatten(2))
        return torch.cat(outputs, -1)


def mean_distribution(dists: Sequence[Distribution]) -> Distribution:
    """The distribution of the layers' mean prediction: mean logits (categorical), mean
    means and mean log-standard-deviations (diagonal Gaussian)."""
    first = dists[0]
    if isinstance(first, Categorical):
        # log-probabilities differ from the logits by a constant per row: same distribution
        return Categorical(logits=torch.stack([d.logits for d in dists]).mean(0),
                           validate_args=False)
    if isinstance(first, Normal):
        return Normal(torch.stack([d.loc for d in dists]).mean(0),
                      torch.stack([d.scale.log() for d in dists]).mean(0).exp(),
                      validate_args=False)
    raise TypeError(f"no mean readout for {type(first).__name__} distributions")


class LayerReadout(nn.Module):
    """One head per layer (``heads[l]`` reads layer ``l``'s ``widths[l]`` features of a
    :class:`LayerwiseTrunk`'s output), acting as one head of their kind: the last layer's
    (``readout="last"``) or the layers' mean prediction (``"mean"``).

    A policy readout has ``distribution``, ``sample``, ``log_prob``, ``entropy`` and
    ``deterministic``; a value or Q readout is called on the features (``[K, B]`` values,
    ``[K, B, actions]`` Q values) and has ``deterministic`` (the greedy action).
    """

    def __init__(self, heads: Sequence[nn.Module], widths: Sequence[int], readout: str) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, not {readout!r}")
        self.heads = nn.ModuleList(heads)
        self.widths = list(widths)
        self.readout = readout
        self.is_policy = hasattr(self.heads[-1], "distribution")

    def split(self, features: Tensor) -> tuple[Tensor, ...]:
        """Each layer's features ``[K, B, widths[l]]`` of ``features`` ``[K, B, sum(widths)]``."""
        return features.split(self.widths, dim=-1)

    def forward(self, features: Tensor) -> Tensor:
        parts = self.split(features)
        if self.readout == "last":
            return self.heads[-1](parts[-1])
        return torch.stack([head(x) for head, x in zip(self.heads, parts, strict=True)]).mean(0)

    def distribution(self, features: Tensor) -> Distribution:
        parts = self.split(features)
        if self.readout == "last":
            return self.heads[-1].distribution(parts[-1])
        return mean_distribution([head.distribution(x)
                                  for head, x in zip(self.heads, parts, strict=True)])

    def deterministic(self, features: Tensor) -> Tensor:
        """The argmax action or the mean action of the readout."""
        if self.readout == "last":
            return self.heads[-1].deterministic(self.split(features)[-1])
        if self.is_policy:
            return self.distribution(features).mode
        return self(features).argmax(dim=-1)

    def sample(self, dist: Distribution, generators: Generators,
               active: Sequence[bool] | None = None) -> Tensor:
        return self.heads[-1].sample(dist, generators, active)

    def log_prob(self, dist: Distribution, actions: Tensor) -> Tensor:
        return self.heads[-1].log_prob(dist, actions)

    def entropy(self, dist: Distribution) -> Tensor:
        return self.heads[-1].entropy(dist)


def layer_head_generators(generators: Generators, tag: str) -> list[torch.Generator]:
    """One generator per member for the heads of the layers below the last, seeded from a
    hash of the member's generator state and ``tag`` without drawing from it, so that every
    other draw of the member (trunk, acting head, other networks, actions) stays as under
    the other learners."""
    seeds = []
    for generator in generators:
        digest = hashlib.sha256(generator.get_state().numpy().tobytes() + tag.encode())
        seeds.append(int.from_bytes(digest.digest()[:8], "little"))
    return seeded_generators(seeds)


def layer_readout(trunk: LayerwiseTrunk, last_head: nn.Module,
                  make_head: Callable[[int, Generators], nn.Module], generators: Generators,
                  readout: str) -> LayerReadout:
    """The readout of ``trunk``'s layers: ``last_head`` on the last layer and a head made by
    ``make_head(width, generators)`` on each layer below, in order."""
    heads = [make_head(width, generators) for width in trunk.widths[:-1]]
    return LayerReadout([*heads, last_head], trunk.widths, readout)
