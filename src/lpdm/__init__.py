"""lpdm: backpropagation-free reinforcement learning with Local Pairwise Distance Matching.

The public functions and :class:`LocalTrunk` are imported on first use (they need torch),
so that ``lpdm --help`` and ``lpdm report`` never import torch (docs/design.md §3).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "LocalTrunk": "lpdm.local",
    "distance_matching_loss": "lpdm.distances",
    "guided_target": "lpdm.distances",
    "pairwise_distances": "lpdm.distances",
    "quantile_mask": "lpdm.distances",
    "sparse_distance_matching_loss": "lpdm.distances",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lpdm' has no attribute {name!r}")
