"""Networks: a trunk of tanh hidden layers and the heads that sit on its features.

``h_0 = x``, ``h_l = tanh(W_l h_{l-1} + b_l)``; heads read ``h_L``. How the trunk is
trained is the learner's business (``lpdm.learners``), never the network's. Policy
distributions skip torch's argument validation: it costs a third of a step's inference
and the heads produce valid parameters by construction.
"""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Normal


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class Trunk(nn.Module):
    """Hidden layers ``[B, in_dim] -> [B, sizes[-1]]``, each ``Linear`` then ``tanh``.

    With no sizes the trunk is the identity (``out_dim = in_dim``): heads read the input.
    """

    def __init__(self, in_dim: int, sizes: tuple[int, ...]) -> None:
        super().__init__()
        widths = (in_dim, *sizes)
        self.layers = nn.ModuleList(
            _orthogonal(nn.Linear(a, b), math.sqrt(2)) for a, b in itertools.pairwise(widths)
        )
        self.out_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


class CategoricalHead(nn.Module):
    """Logits for a ``Discrete(n)`` action space; features ``[B, F]`` -> ``Categorical``."""

    def __init__(self, in_dim: int, n_actions: int) -> None:
        super().__init__()
        self.logits = _orthogonal(nn.Linear(in_dim, n_actions), 0.01)

    def distribution(self, features: Tensor) -> Distribution:
        return Categorical(logits=self.logits(features), validate_args=False)

    def log_prob(self, dist: Distribution, actions: Tensor) -> Tensor:
        return dist.log_prob(actions.long())

    def entropy(self, dist: Distribution) -> Tensor:
        return dist.entropy()

    def deterministic(self, features: Tensor) -> Tensor:
        return self.logits(features).argmax(dim=-1)


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent log-std for a ``Box`` action space."""

    def __init__(self, in_dim: int, action_dim: int) -> None:
        super().__init__()
        self.mean = _orthogonal(nn.Linear(in_dim, action_dim), 0.01)
        self.log_std = nn.Parameter(torch.zeros(action_dim))

    def distribution(self, features: Tensor) -> Distribution:
        mean = self.mean(features)
        return Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False)

    def log_prob(self, dist: Distribution, actions: Tensor) -> Tensor:
        return dist.log_prob(actions).sum(dim=-1)

    def entropy(self, dist: Distribution) -> Tensor:
        return dist.entropy().sum(dim=-1)

    def deterministic(self, features: Tensor) -> Tensor:
        return self.mean(features)


PolicyHead = CategoricalHead | GaussianHead


class ValueHead(nn.Module):
    """State value; features ``[B, F]`` -> ``[B]``."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.value = _orthogonal(nn.Linear(in_dim, 1), 1.0)

    def forward(self, features: Tensor) -> Tensor:
        return self.value(features).squeeze(-1)


def make_policy_head(action_space: gym.Space, in_dim: int) -> PolicyHead:
    """The head for a ``Discrete`` or ``Box`` action space."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(in_dim, int(action_space.n))
    if isinstance(action_space, gym.spaces.Box):
        return GaussianHead(in_dim, int(np.prod(action_space.shape)))
    raise ValueError(f"unsupported action space {action_space}")
