"""Networks of a population: trunks of tanh hidden layers and the heads on their features.

A population is K members that differ only in their seed (docs/design.md §2). Every parameter has
a leading member dimension ``[K, ...]`` and every batch is ``[K, B, ...]``, so one batched
product (``torch.baddbmm``) runs all members' layers at once; no operation mixes members.
A solo run is a population of one.

``h_0 = x``, ``h_l = tanh(W_l h_{l-1} + b_l)``; heads read ``h_L``. How the trunk is
trained is the learner's business (``lpdm.learners``), never the network's. Each member's
weights are initialised from its own generator (orthogonal, as CleanRL), and its actions
are sampled from it, so a member's numbers never depend on the other members.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Normal

Generators = Sequence[torch.Generator]


def seeded_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per member, seeded with its seed."""
    return [torch.Generator().manual_seed(int(seed)) for seed in seeds]


def member_noise(generators: Generators, shape: tuple[int, ...], normal: bool,
                 device: torch.device | str = "cpu", active: Sequence[bool] | None = None
                 ) -> Tensor:
    """``[K, *shape]`` noise, member ``k``'s drawn from ``generators[k]``: standard normal
    when ``normal``, else uniform on [0, 1). Members not ``active`` get zeros and draw
    nothing, so that how long one member waits never shifts another's random stream."""
    draw = torch.randn if normal else torch.rand
    return torch.stack([draw(shape, generator=g) if active is None or active[k]
                        else torch.zeros(shape) for k, g in enumerate(generators)]).to(device)


def member_permutations(generators: Generators, n: int, device: torch.device | str = "cpu"
                        ) -> Tensor:
    """``[K, n]``: a random permutation of ``0..n-1`` per member, from its generator."""
    return torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)


class MemberLinear(nn.Module):
    """K independent affine maps ``[K, B, in] -> [K, B, out]``, orthogonally initialised."""

    def __init__(self, in_features: int, out_features: int, gain: float,
                 generators: Generators) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(len(generators), out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(len(generators), out_features))
        with torch.no_grad():
            for k, generator in enumerate(generators):
                nn.init.orthogonal_(self.weight[k], gain, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        if self.out_features == 1:
            # a batched matrix-vector product rounds differently with the number of
            # members; a product and a sum over features do not (members stay bit-exact)
            return (x * self.weight).sum(-1, keepdim=True) + self.bias.unsqueeze(1)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class MemberConv2d(nn.Module):
    """K independent 2-D convolutions ``[K, B, C, H, W] -> [K, B, out, H', W']`` (one grouped
    convolution: the members are the groups), orthogonally initialised."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 gain: float, generators: Generators) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.out_features = out_channels  # the width a local loss sees per position
        self.kernel, self.stride = kernel, stride
        members = len(generators)
        self.weight = nn.Parameter(torch.empty(members, out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(members, out_channels))
        with torch.no_grad():
            for k, generator in enumerate(generators):
                nn.init.orthogonal_(self.weight[k].view(out_channels, -1), gain,
                                    generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        members, batch, channels, height, width = x.shape
        grouped = x.transpose(0, 1).reshape(batch, members * channels, height, width)
        y = F.conv2d(grouped, self.weight.reshape(-1, channels, self.kernel, self.kernel),
                     self.bias.reshape(-1), stride=self.stride, groups=members)
        return y.reshape(batch, members, self.out_channels, *y.shape[-2:]).transpose(0, 1)


@dataclass(frozen=True)
class TrunkSpec:
    """A trunk's architecture: optional convolutions, then dense tanh layers.

    ``in_shape``: one observation's shape, ``(d,)`` or an image ``(H, W, C)`` /
    ``(C, H, W)`` (``channels_last`` tells which); ``conv``: ``(channels, kernel, stride)``
    per convolution; ``hidden``: the dense widths after them.
    """

    in_shape: tuple[int, ...]
    hidden: tuple[int, ...] = ()
    conv: tuple[tuple[int, int, int], ...] = ()
    channels_last: bool = True

    @property
    def image(self) -> bool:
        return len(self.in_shape) == 3

    @property
    def in_dim(self) -> int:
        """The width of a flattened observation."""
        return math.prod(self.in_shape)


class Trunk(nn.Module):
    """Hidden layers ``[K, B, *in_shape] -> [K, B, width]``: convolutions (image inputs),
    then dense layers, each followed by ``tanh``.

    With no layers the trunk is the identity on the flattened input: heads read the input.
    ``layer_shapes``: one sample's output shape per layer (``(C, H', W')``, ``(width,)``).
    Images are read as floats, channels first; a convolution's output is flattened before
    the first dense layer.
    """

    def __init__(self, spec: TrunkSpec | int, sizes: tuple[int, ...] | None = None,
                 generators: Generators = ()) -> None:
        super().__init__()
        if isinstance(spec, int):  # Trunk(in_dim, sizes, generators): a dense trunk
            spec = TrunkSpec((spec,), tuple(sizes or ()))
        if spec.conv and not spec.image:
            raise ValueError(f"convolutions need image observations, not shape {spec.in_shape}")
        self.spec = spec
        layers: list[nn.Module] = []
        shapes: list[tuple[int, ...]] = []  # one sample's output shape, per layer
        shape = self._chw(spec.in_shape) if spec.image else spec.in_shape
        for channels, kernel, stride in spec.conv:
            layers.append(MemberConv2d(shape[0], channels, kernel, stride, math.sqrt(2),
                                       generators))
            size = [(n - kernel) // stride + 1 for n in shape[1:]]
            if min(size) < 1:
                raise ValueError(f"a {kernel}x{kernel} convolution with stride {stride} does "
                                 f"not fit a {shape[1]}x{shape[2]} input")
            shape = (channels, *size)
            shapes.append(shape)
        width = math.prod(shape)
        for size in spec.hidden:
            layers.append(MemberLinear(width, size, math.sqrt(2), generators))
            shapes.append((size,))
            width = size
        self.layers = nn.ModuleList(layers)
        self.layer_shapes = tuple(shapes)
        self.out_dim = width

    def _chw(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[2], shape[0], shape[1]) if self.spec.channels_last else shape

    def prepare(self, x: Tensor) -> Tensor:
        """An input batch ``[K, B, *in_shape]`` as the first layer takes it (float; images
        channels first, flattened when no convolution reads them)."""
        x = x.float()
        if self.spec.image and self.spec.channels_last:
            x = x.permute(0, 1, 4, 2, 3)
        if not self.spec.conv:
            x = x.flatten(2)
        return x

    def run_layer(self, layer: nn.Module, h: Tensor,
                  weights: dict[str, Tensor] | None = None) -> Tensor:
        """One layer and its ``tanh`` (flattening a convolution's output for a dense layer);
        ``weights``: its ``weight`` and ``bias`` in place of its own (a copy's)."""
        if isinstance(layer, MemberLinear) and h.dim() > 3:
            h = h.flatten(2)
        if weights is not None:
            return torch.tanh(torch.func.functional_call(layer, weights, (h,)))
        return torch.tanh(layer(h))

    def forward(self, x: Tensor) -> Tensor:
        h = self.prepare(x)
        for layer in self.layers:
            h = self.run_layer(layer, h)
        return h.flatten(2) if h.dim() > 3 else h


class CategoricalHead(nn.Module):
    """Logits for a ``Discrete(n)`` action space; features ``[K, B, F]`` -> ``Categorical``."""

    def __init__(self, in_dim: int, n_actions: int, generators: Generators) -> None:
        super().__init__()
        self.logits = MemberLinear(in_dim, n_actions, 0.01, generators)

    def distribution(self, features: Tensor) -> Distribution:
        return Categorical(logits=self.logits(features), validate_args=False)

    def sample(self, dist: Distribution, generators: Generators,
               active: Sequence[bool] | None = None) -> Tensor:
        """Actions ``[K, B]``, member ``k``'s drawn with ``generators[k]`` (inverse CDF);
        only the ``active`` members draw."""
        probs = dist.probs
        u = member_noise(generators, probs.shape[1:-1], False, probs.device, active)
        index = torch.searchsorted(probs.cumsum(-1), u.unsqueeze(-1), right=True)
        return index.squeeze(-1).clamp_max(probs.shape[-1] - 1)

    def log_prob(self, dist: Distribution, actions: Tensor) -> Tensor:
        return dist.log_prob(actions.long())

    def entropy(self, dist: Distribution) -> Tensor:
        return dist.entropy()

    def deterministic(self, features: Tensor) -> Tensor:
        return self.logits(features).argmax(dim=-1)


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent log-std for a ``Box`` action space."""

    def __init__(self, in_dim: int, action_dim: int, generators: Generators) -> None:
        super().__init__()
        self.mean = MemberLinear(in_dim, action_dim, 0.01, generators)
        self.log_std = nn.Parameter(torch.zeros(len(generators), action_dim))

    def distribution(self, features: Tensor) -> Distribution:
        mean = self.mean(features)
        std = self.log_std.exp().unsqueeze(1).expand_as(mean)
        return Normal(mean, std, validate_args=False)

    def sample(self, dist: Distribution, generators: Generators,
               active: Sequence[bool] | None = None) -> Tensor:
        """Actions ``[K, B, A]``, member ``k``'s noise drawn with ``generators[k]``; only
        the ``active`` members draw."""
        mean = dist.mean
        noise = member_noise(generators, mean.shape[1:], True, mean.device, active)
        with torch.no_grad():
            return mean + dist.stddev * noise

    def log_prob(self, dist: Distribution, actions: Tensor) -> Tensor:
        return dist.log_prob(actions).sum(dim=-1)

    def entropy(self, dist: Distribution) -> Tensor:
        return dist.entropy().sum(dim=-1)

    def deterministic(self, features: Tensor) -> Tensor:
        return self.mean(features)


PolicyHead = CategoricalHead | GaussianHead


class ValueHead(nn.Module):
    """State value; features ``[K, B, F]`` -> ``[K, B]``."""

    def __init__(self, in_dim: int, generators: Generators) -> None:
        super().__init__()
        self.value = MemberLinear(in_dim, 1, 1.0, generators)

    def forward(self, features: Tensor) -> Tensor:
        return self.value(features).squeeze(-1)


def make_policy_head(action_space: gym.Space, in_dim: int, generators: Generators
                     ) -> PolicyHead:
    """The head for a ``Discrete`` or ``Box`` action space."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(in_dim, int(action_space.n), generators)
    if isinstance(action_space, gym.spaces.Box):
        return GaussianHead(in_dim, int(np.prod(action_space.shape)), generators)
    raise ValueError(f"unsupported action space {action_space}")
