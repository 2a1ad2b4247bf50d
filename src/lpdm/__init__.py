"""lpdm: backpropagation-free reinforcement learning with Local Pairwise Distance Matching."""

from lpdm.distances import (
    distance_matching_loss,
    guided_target,
    pairwise_distances,
    quantile_mask,
    sparse_distance_matching_loss,
)
from lpdm.local import LocalTrunk

__version__ = "0.1.0"

__all__ = [
    "LocalTrunk",
    "__version__",
    "distance_matching_loss",
    "guided_target",
    "pairwise_distances",
    "quantile_mask",
    "sparse_distance_matching_loss",
]
