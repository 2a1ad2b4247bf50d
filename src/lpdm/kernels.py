"""Pairwise l1 distances: the hot spot of every local update."""

from __future__ import annotations

import torch
from torch import Tensor


def pairwise_l1(z: Tensor) -> Tensor:
    """Raw l1 distances ``[N, N]`` between the rows of ``z`` ``[N, d]``, differentiable."""
    return torch.cdist(z, z, p=1.0)
